"""The package in a Django project that is not this one: built as a wheel, installed, and the
seed's views and DRF code (tests/host_project/) run against it with the NowPayments sandbox."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.server import SandboxServer
from tests.conftest import API_KEY

ROOT = Path(__file__).resolve().parents[1]
HOST = ROOT / "tests" / "host_project"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project built as a wheel and installed, without its dependencies, into a folder."""
    work = tmp_path_factory.mktemp("host")
    wheels, site = work / "wheels", work / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(wheels), str(ROOT)], check=True)
    (wheel,) = wheels.glob("*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True)
    return site


def test_the_seeds_views_and_drf_code_run_in_a_host_project(
    installed: Path, sandbox_server: SandboxServer, tmp_path: Path
) -> None:
    sandbox_server.control.reset()
    host = tmp_path / "host"
    shutil.copytree(HOST, host)
    env = {
        **os.environ,
        "PYTHONPATH": f"{installed}{os.pathsep}{host}",
        "HOST_VAR_DIR": str(tmp_path),
        "HOST_NOWPAYMENTS_API_URL": sandbox_server.api_url,
        "HOST_NOWPAYMENTS_API_KEY": API_KEY,
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    done = subprocess.run(
        [sys.executable, str(host / "run_seed.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout)

    # The installed package ran, not the repository's source tree.
    assert seen["payments_file"].startswith(str(installed))
    assert seen["form_status"] == 200
    assert seen["form_has_currency"]
    assert seen["created_status"] == 302
    # Registered with NowPayments before Payment.objects.create returned: the address is there.
    assert seen["detail_status"] == 200
    assert seen["pay_address"]
    assert seen["address_on_page"]
    assert seen["qr_data"].startswith("bitcoin:")
    assert seen["qr_status"] == 200
    assert seen["qr_type"] == "image/png"
    assert seen["api_status"] == 200
    # The host sets no REST_FRAMEWORK pagination: the seed's viewset answers a plain list.
    assert [row["pay_address"] for row in seen["api_body"]] == [seen["pay_address"]]
