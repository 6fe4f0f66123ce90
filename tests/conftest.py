"""Test set-up shared by every test: real PostgreSQL, and the NowPayments sandbox over HTTP."""

from __future__ import annotations

import decimal
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.db.backends.postgresql.operations import DatabaseOperations

from sandbox.server import SandboxServer
from tests.factories import CurrencyFactory

# The ledger rejects TRUNCATE unless the session says it is a maintenance reset; Django's test
# flush between transactional tests is one, so it says so (in the same transaction).
_original_sql_flush = DatabaseOperations.sql_flush


def _sql_flush_allowing_ledger_reset(self, style, tables, **kwargs):  # type: ignore[no-untyped-def]
    statements = _original_sql_flush(self, style, tables, **kwargs)
    if statements:
        return ["SET LOCAL payments.allow_truncate = on", *statements]
    return statements


DatabaseOperations.sql_flush = _sql_flush_allowing_ledger_reset  # type: ignore[method-assign]


# Any float that meets a Decimal is a bug: make it raise, in every thread the tests start.
decimal.DefaultContext.traps[decimal.FloatOperation] = True


@pytest.fixture(autouse=True)
def _trap_float_in_money() -> None:
    decimal.getcontext().traps[decimal.FloatOperation] = True


API_KEY = "payments-test-key"
IPN_SECRET = "payments-test-ipn-secret"
TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


@pytest.fixture(scope="module")
def sandbox_server() -> Iterator[SandboxServer]:
    with SandboxServer(
        port=0,
        api_key=API_KEY,
        ipn_secret=IPN_SECRET,
        totp_secret=TOTP_SECRET,
        ipn_retry_interval=0.2,
    ) as server:
        yield server


@pytest.fixture
def sandbox(sandbox_server: SandboxServer, settings: Any) -> Iterator[SandboxServer]:
    """A reset sandbox, and Django settings pointing the provider client at it."""
    sandbox_server.control.reset()
    settings.PAYMENTS_ENABLED = True
    settings.NOWPAYMENTS_API_URL = sandbox_server.api_url
    settings.NOWPAYMENTS_API_KEY = API_KEY
    settings.NOWPAYMENTS_IPN_SECRET = IPN_SECRET
    settings.NOWPAYMENTS_EMAIL = "merchant@sandbox.local"
    settings.NOWPAYMENTS_PASSWORD = "sandbox-password"
    settings.NOWPAYMENTS_TOTP_SECRET = TOTP_SECRET
    settings.NOWPAYMENTS_TIMEOUT = 3.0
    settings.PAYMENTS_PUBLIC_BASE_URL = ""
    yield sandbox_server
    sandbox_server.control.clear_faults()


@pytest.fixture
def usdt(db: Any) -> Any:
    return CurrencyFactory(
        code="USDTTRC20",
        token="USDT",
        network="TRC20",
        decimal_places=6,
        min_amount_usd=Decimal("1.00"),
    )


@pytest.fixture
def btc(db: Any) -> Any:
    return CurrencyFactory(code="BTC", name="Bitcoin", token="BTC", network="BTC", decimal_places=8)


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker: Any) -> None:
    """Each test database, once created (one per xdist worker), gets the application role.

    pytest-django's own ``django_db_setup`` (requested here) creates and migrates the database;
    this override then runs ``db_roles``' core function on it, so the worker, beat and web
    processes of the end-to-end tests (tests/workers/processes.py) and the guard tests log in
    as the least-privileged role, as in production. It runs for every session that uses the
    database, without making database-free runs (the sandbox tests) create one.
    """
    from django.db import connections

    from payments.management.commands.db_roles import ensure_app_role

    with django_db_blocker.unblock():
        for alias in connections:
            if connections[alias].vendor == "postgresql":
                ensure_app_role(using=alias)


_SESSION_STARTED = pytest.StashKey[float]()

# Browser tests save their screenshots here (tests/browser/console.py). The summary is printed
# from this conftest because, under xdist, the controlling process loads only this one.
SCREENSHOTS = Path(__file__).resolve().parents[1] / "var" / "artifacts" / "browser"


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_SESSION_STARTED] = time.time()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """Say where this run's screenshots are, when it took some."""
    started = config.stash.get(_SESSION_STARTED, None)
    if started is None or not SCREENSHOTS.is_dir():
        return
    shots = [p for p in SCREENSHOTS.rglob("*.png") if p.stat().st_mtime >= started]
    if shots:
        terminalreporter.write_sep("-", "browser screenshots")
        terminalreporter.write_line(f"{len(shots)} screenshots under {SCREENSHOTS}")
