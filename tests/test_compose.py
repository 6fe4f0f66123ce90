"""docker-compose.yml and the Dockerfile: the services, their order, health and secrets.

Parsed with PyYAML here; ``docker compose config`` checks it too where Compose is installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[1]
APP_SERVICES = ("release", "web", "worker", "settlement", "beat", "flower")
LONG_RUNNING = ("web", "worker", "settlement", "beat", "flower")
REQUIRED_SECRETS = ("DJANGO_SECRET_KEY", "FLOWER_BASIC_AUTH", "NOWPAYMENTS_API_KEY")
SECRET_NAME = re.compile(r"SECRET|PASSWORD|_KEY|AUTH|DATABASE_URL")
DUMMY_ENV = {
    "DJANGO_SECRET_KEY": "x" * 50,
    "POSTGRES_PASSWORD": "pw",
    "PAYMENTS_DB_APP_PASSWORD": "app-pw",
    "NOWPAYMENTS_API_KEY": "key",
    "FLOWER_BASIC_AUTH": "ops:pw",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def _command(service: dict[str, Any]) -> str:
    command = service.get("command", "")
    return " ".join(command) if isinstance(command, list) else command


def test_every_service_is_there(services: dict[str, Any]) -> None:
    assert set(services) == {"postgres", "redis", "sandbox", *APP_SERVICES}
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")


def test_one_image_built_from_the_dockerfile_runs_every_process(services: dict[str, Any]) -> None:
    images = {services[name]["image"] for name in (*APP_SERVICES, "sandbox")}
    assert len(images) == 1
    for name in (*APP_SERVICES, "sandbox"):
        assert services[name]["build"] in (".", {"context": "."}), name


def test_the_sandbox_runs_only_in_the_dev_profile(services: dict[str, Any]) -> None:
    assert services["sandbox"]["profiles"] == ["dev"]
    assert "python -m sandbox" in _command(services["sandbox"])
    others = [name for name, service in services.items() if name != "sandbox"]
    assert all("profiles" not in services[name] for name in others)
    # Nothing always-on may wait for a service that only exists in a profile.
    for name in others:
        assert "sandbox" not in services[name].get("depends_on", {}), name


def test_healthchecks(services: dict[str, Any]) -> None:
    for name in ("postgres", "redis", "web", "sandbox", "flower"):
        assert services[name]["healthcheck"]["test"], name
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert "ping" in services["redis"]["healthcheck"]["test"]


def test_release_runs_first_and_once(services: dict[str, Any]) -> None:
    release = services["release"]
    assert "migrate" in _command(release)
    assert "install_schedules" in _command(release)
    assert release["restart"] == "no"
    assert release["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }
    for name in ("web", "worker", "settlement", "beat"):
        depends = services[name]["depends_on"]
        assert depends["release"] == {"condition": "service_completed_successfully"}, name
        assert depends["postgres"] == {"condition": "service_healthy"}, name
        assert depends["redis"] == {"condition": "service_healthy"}, name
    assert services["flower"]["depends_on"]["redis"] == {"condition": "service_healthy"}


def test_processes_match_the_procfile_roles(services: dict[str, Any]) -> None:
    assert _command(services["web"]).startswith("gunicorn project.wsgi")
    assert "--bind=0.0.0.0:8000" in _command(services["web"])
    beat = _command(services["beat"])
    assert "beat" in beat
    assert "django_celery_beat.schedulers:DatabaseScheduler" in beat
    assert "deploy" not in services["beat"]  # exactly one: never replicated
    assert "python -m workers.flower" in _command(services["flower"])
    assert "--queues=settlement" in _command(services["settlement"])


def test_every_queue_in_use_has_a_worker(services: dict[str, Any]) -> None:
    from tests.test_run_command import _queues_in_use

    served: set[str] = set()
    for name in ("worker", "settlement"):
        found = re.search(r"--queues=(\S+)", _command(services[name]))
        assert found, name
        served |= set(found.group(1).split(","))
    assert _queues_in_use() <= served


def test_no_secret_is_committed(services: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        environment = services[name]["environment"]
        for required in REQUIRED_SECRETS:
            if required == "FLOWER_BASIC_AUTH" and name != "flower":
                continue
            assert environment[required].startswith(f"${{{required}:?"), (name, required)
        for key, value in environment.items():
            if SECRET_NAME.search(key):
                # Either required (:?) or empty unless set (:-}), never a literal value.
                assert re.search(r"\$\{\w+:(\?|-\})", str(value)), (name, key, value)
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith(
        "${POSTGRES_PASSWORD:?"
    )
    assert "FLOWER_BASIC_AUTH" not in services["web"]["environment"]


def _database_user(service: dict[str, Any]) -> str:
    # user[:password]@..., where either may be a ${NAME:-default} interpolation.
    part = r"(?:\$\{[^}]*\}|[^:@$])+"
    found = re.match(rf"postgres://({part})(?::{part})?@", service["environment"]["DATABASE_URL"])
    assert found, service["environment"]["DATABASE_URL"]
    return found.group(1)


def test_only_the_release_step_connects_as_the_owner(services: dict[str, Any]) -> None:
    owner = services["postgres"]["environment"]["POSTGRES_USER"]
    release = services["release"]
    assert _database_user(release) == owner
    # migrate, then the application role's grants (new tables need them), both as the owner.
    command = _command(release)
    assert command.index("manage.py migrate") < command.index("manage.py db_roles")
    assert release["environment"]["PAYMENTS_DB_APP_PASSWORD"].startswith(
        "${PAYMENTS_DB_APP_PASSWORD:?"
    )
    for name in LONG_RUNNING:
        environment = services[name]["environment"]
        assert _database_user(services[name]) == "${PAYMENTS_DB_APP_ROLE:-payments_app}", name
        assert "${PAYMENTS_DB_APP_PASSWORD:?" in environment["DATABASE_URL"], name
        assert environment["PAYMENTS_DB_APP_ROLE"] == "${PAYMENTS_DB_APP_ROLE:-payments_app}"
        assert "POSTGRES_PASSWORD" not in environment["DATABASE_URL"], name
        assert "PAYMENTS_DB_APP_PASSWORD" not in environment, name


def test_every_interpolation_is_well_formed() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    variable = r"\$\{[A-Z_][A-Z0-9_]*(?::?[-?][^}$]*)?\}"
    stray = re.sub(variable, "", text).replace("$$", "")
    assert "$" not in stray
    required = set(re.findall(r"\$\{(\w+):\?", text))
    assert required == {*REQUIRED_SECRETS, "POSTGRES_PASSWORD", "PAYMENTS_DB_APP_PASSWORD"}
    assert required == set(DUMMY_ENV)


def test_the_dockerfile_builds_a_non_root_image_with_pip_install() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", dockerfile, re.MULTILINE)
    assert re.search(r"pip install (--no-deps )?\.", dockerfile)
    users = re.findall(r"^USER (\S+)", dockerfile, re.MULTILINE)
    assert users
    assert users[-1] not in {"root", "0"}
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".env", ".venv", "var", ".git"} <= set(ignored)


def _docker_compose_works() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        result = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


@pytest.mark.parametrize("profile", [None, "dev"])
def test_docker_compose_accepts_the_file(profile: str | None) -> None:
    if not _docker_compose_works():
        pytest.skip("docker compose is not installed here")
    args = ["docker", "compose", "-f", str(ROOT / "docker-compose.yml")]
    if profile:
        args += ["--profile", profile]
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", **DUMMY_ENV}
    result = subprocess.run(
        [*args, "config", "-q"], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    # And without the required secrets it refuses, naming the missing one.
    missing = {k: v for k, v in env.items() if k != "DJANGO_SECRET_KEY"}
    result = subprocess.run(
        [*args, "config", "-q"],
        capture_output=True,
        text=True,
        env=missing,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr
