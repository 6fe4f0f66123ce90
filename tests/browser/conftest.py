"""Fixtures of the browser tests: the real web process on the test database, one headless
Chromium per module, and the screenshots folder printed at the end of the session.

The web process is gunicorn as in the Procfile, outside debug (static files collected into a
temporary folder and served by whitenoise, as in production), logged in to the test database
as the application role, with the NowPayments sandbox as its provider.

What a test writes is committed at once (no test transaction), so the web process sees it. The
database is flushed once, after the module, not after each test: a flush recreates the content
types under new ids, which the running web process has cached (its next admin log entry would
point at a missing one). So each test makes users and rows of its own and judges only those.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from django.core.management import call_command

from tests.workers.processes import (
    Processes,
    flush_broker,
    free_port,
    process_env,
    set_intervals,
    start_web,
)

if TYPE_CHECKING:
    from tests.browser.console import Console

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROME_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
)


@dataclass(frozen=True)
class Web:
    """The running web process: where it answers, and its logs."""

    base_url: str
    procs: Processes


def _missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed (pip install -e '.[dev]')"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} is missing (apt-get install -y chromium chromium-driver)"
    return None


@pytest.fixture(scope="session")
def browser_available() -> None:
    """Skip without Chromium, except in CI (CI=true), where a missing browser is a failure."""
    reason = _missing_browser()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI needs the browser tests to run: {reason}")
    pytest.skip(f"browser tests need Chromium: {reason}")


@pytest.fixture(scope="session")
def static_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The admin's static files, collected as the release step does, into a folder of ours."""
    root = tmp_path_factory.mktemp("static")
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
        cwd=ROOT,
        env={**os.environ, "DJANGO_STATIC_ROOT": str(root)},
        check=True,
        timeout=120,
    )
    return root


@pytest.fixture(autouse=True)
def _django_db_marker() -> None:
    """Overrides pytest-django's: no per-test transaction or flush here (``live_database``)."""


@pytest.fixture(scope="module")
def live_database(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """The test database, open to the module's tests and flushed once after them."""
    with django_db_blocker.unblock():
        try:
            yield
        finally:
            call_command("flush", interactive=False, verbosity=0)


def web_env(sandbox_server: Any, static_root: Path, **extra: str) -> dict[str, str]:
    """The environment of the web process (and of any worker beside it), outside debug."""
    return process_env(
        sandbox_server,
        DJANGO_DEBUG="0",
        DJANGO_SECURE="0",  # plain http on 127.0.0.1: no secure-only cookies
        DJANGO_SECRET_KEY=secrets.token_urlsafe(32),
        DJANGO_STATIC_ROOT=str(static_root),
        **extra,
    )


@pytest.fixture(scope="module")
def web(
    browser_available: None, live_database: None, sandbox_server: Any, static_root: Path
) -> Iterator[Web]:
    """gunicorn serving the admin on a free port, as the application role."""
    procs = Processes(web_env(sandbox_server, static_root))
    try:
        port = free_port()
        start_web(procs, port)
        yield Web(base_url=f"http://127.0.0.1:{port}", procs=procs)
    finally:
        procs.stop_all()


# Beat's intervals while ``web_and_workers`` runs: a paid deposit is seen within a second or two.
FAST_SCHEDULES = {
    "workers.payments_register_sweep": 1,
    "workers.payments_poll": 1,
    "workers.payments_settle_sweep": 1,
}


@pytest.fixture(scope="module")
def web_and_workers(
    browser_available: None, live_database: None, sandbox_server: Any, static_root: Path
) -> Iterator[Web]:
    """The web process as ``web`` gives it, plus a Celery worker and beat on this run's Redis
    database, as in production: the sandbox's IPNs go to the web process (its public base URL)
    and beat polls NowPayments every second. A module that needs them overrides ``web`` with
    this fixture."""
    flush_broker()
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    procs = Processes(web_env(sandbox_server, static_root, PAYMENTS_PUBLIC_BASE_URL=base_url))
    try:
        set_intervals(FAST_SCHEDULES)
        start_web(procs, port)
        procs.worker()
        procs.beat()
        yield Web(base_url=base_url, procs=procs)
    finally:
        procs.stop_all()
        flush_broker()


@pytest.fixture(scope="module")
def browser(web: Web, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """One headless Chromium for the module, downloading into a folder of its own."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    from tests.browser.console import Console

    downloads = tmp_path_factory.mktemp("downloads")
    options = Options()
    options.binary_location = str(CHROMIUM)
    for arg in CHROME_ARGS:
        options.add_argument(arg)
    options.add_experimental_option(
        "prefs",
        {
            "download.default_directory": str(downloads),
            "download.prompt_for_download": False,
            "download.directory_upgrade": True,
            "safebrowsing.enabled": False,
        },
    )
    # The system chromedriver: Selenium Manager must not try to download one.
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.execute_cdp_cmd(
            "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
        )
        yield Console(
            driver,
            base_url=web.base_url,
            downloads=downloads,
            server_log=web.procs.log_tail,
        )
    finally:
        driver.quit()


@pytest.fixture
def console(browser: Console, request: pytest.FixtureRequest) -> Console:
    """The module's browser, signed out, with this test's screenshot folder."""
    browser.start(request.node.name)
    return browser
