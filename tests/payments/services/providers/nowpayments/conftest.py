"""Fixtures for the NowPayments client tests: a real sandbox over HTTP and its control API."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from payments.services.providers.nowpayments.config import NowPaymentsConfig
from payments.services.providers.nowpayments.provider import NowPaymentsProvider

API_KEY = "test-api-key"
IPN_SECRET = "test-ipn-secret"
EMAIL = "merchant@sandbox.local"
PASSWORD = "sandbox-password"
# 160 bits: pyotp >= 2.10 (which the sandbox uses as is) refuses the 80-bit documented default.
TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


@pytest.fixture(scope="module")
def sandbox_server() -> Iterator[Any]:
    server = pytest.importorskip("sandbox.server")
    with server.SandboxServer(
        port=0, api_key=API_KEY, ipn_secret=IPN_SECRET, totp_secret=TOTP_SECRET
    ) as sb:
        yield sb


@pytest.fixture
def sandbox(sandbox_server: Any) -> Iterator[Any]:
    """The module's sandbox, reset: no records, quirks, faults or request counts."""
    sandbox_server.control.reset()
    yield sandbox_server
    sandbox_server.control.clear_faults()


@pytest.fixture
def control(sandbox: Any) -> Any:
    return sandbox.control


def calls(control: Any, key: str) -> int:
    """How many API calls the sandbox served for a route, e.g. ``"GET /v1/payment/{id}"``."""
    return int(control.requests().get(key, 0))


def make_config(sandbox: Any, **overrides: Any) -> NowPaymentsConfig:
    values: dict[str, Any] = {
        "api_key": API_KEY,
        "api_url": sandbox.api_url,
        "ipn_secret": IPN_SECRET,
        "email": EMAIL,
        "password": PASSWORD,
        "totp_secret": TOTP_SECRET,
        "timeout": 5.0,
        "connect_timeout": 2.0,
        "max_retries": 2,
        "backoff": 0.01,
    }
    values.update(overrides)
    return NowPaymentsConfig(**values)


@pytest.fixture
def provider(sandbox: Any) -> Iterator[NowPaymentsProvider]:
    with NowPaymentsProvider(make_config(sandbox)) as client:
        yield client
