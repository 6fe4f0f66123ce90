"""payments.config: settings in, a whole NowPayments config out, or a ConfigurationError."""

from __future__ import annotations

from typing import Any

import pytest

from payments.config import get_nowpayments_config, get_public_base_url
from payments.errors import ConfigurationError
from payments.services.providers.nowpayments.config import NowPaymentsConfig


@pytest.fixture
def configured(settings: Any) -> Any:
    settings.PAYMENTS_ENABLED = True
    settings.NOWPAYMENTS_API_KEY = "KEY-123"
    settings.NOWPAYMENTS_API_URL = "https://api-sandbox.nowpayments.io/v1/"
    settings.NOWPAYMENTS_IPN_SECRET = "ipn-secret"
    settings.NOWPAYMENTS_EMAIL = "ops@example.com"
    settings.NOWPAYMENTS_PASSWORD = "pw"
    settings.NOWPAYMENTS_TOTP_SECRET = "JBSW Y3DP EHPK 3PXP"
    settings.NOWPAYMENTS_TIMEOUT = 7.5
    return settings


def test_reads_every_setting(configured: Any) -> None:
    config = get_nowpayments_config()
    assert config == NowPaymentsConfig(
        api_key="KEY-123",
        api_url="https://api-sandbox.nowpayments.io/v1",
        ipn_secret="ipn-secret",
        email="ops@example.com",
        password="pw",
        totp_secret="JBSWY3DPEHPK3PXP",
        timeout=7.5,
        enabled=True,
    )
    assert "KEY-123" not in repr(config)
    assert "ipn-secret" not in repr(config)


def test_defaults_when_settings_are_absent(settings: Any) -> None:
    for name in (
        "PAYMENTS_ENABLED",
        "NOWPAYMENTS_API_URL",
        "NOWPAYMENTS_IPN_SECRET",
        "NOWPAYMENTS_EMAIL",
        "NOWPAYMENTS_PASSWORD",
        "NOWPAYMENTS_TOTP_SECRET",
        "NOWPAYMENTS_TIMEOUT",
    ):
        if hasattr(settings, name):
            delattr(settings, name)
    settings.NOWPAYMENTS_API_KEY = "k"
    config = get_nowpayments_config()
    assert config.api_url == "https://api.nowpayments.io/v1"
    assert config.timeout == 10.0
    assert config.enabled is True
    assert config.ipn_secret == ""


@pytest.mark.parametrize("key", ["", "   ", None])
def test_missing_api_key_names_the_setting(configured: Any, key: str | None) -> None:
    configured.NOWPAYMENTS_API_KEY = key
    with pytest.raises(ConfigurationError, match="NOWPAYMENTS_API_KEY"):
        get_nowpayments_config()


@pytest.mark.parametrize("url", ["ftp://api.nowpayments.io/v1", "api.nowpayments.io", "https://"])
def test_non_http_url_names_the_setting(configured: Any, url: str) -> None:
    configured.NOWPAYMENTS_API_URL = url
    with pytest.raises(ConfigurationError, match="NOWPAYMENTS_API_URL"):
        get_nowpayments_config()


@pytest.mark.parametrize("timeout", [0, -1, "soon", True])
def test_bad_timeout_names_the_setting(configured: Any, timeout: object) -> None:
    configured.NOWPAYMENTS_TIMEOUT = timeout
    with pytest.raises(ConfigurationError, match="NOWPAYMENTS_TIMEOUT"):
        get_nowpayments_config()


def test_disabled_payments_need_no_key(configured: Any) -> None:
    configured.PAYMENTS_ENABLED = False
    configured.NOWPAYMENTS_API_KEY = ""
    config = get_nowpayments_config()
    assert config.enabled is False


@pytest.mark.parametrize(("raw", "enabled"), [("true", True), ("0", False), ("off", False)])
def test_enabled_flag_accepts_strings(configured: Any, raw: str, enabled: bool) -> None:
    configured.PAYMENTS_ENABLED = raw
    assert get_nowpayments_config().enabled is enabled


def test_nonsense_enabled_flag_is_refused(configured: Any) -> None:
    configured.PAYMENTS_ENABLED = "maybe"
    with pytest.raises(ConfigurationError, match="PAYMENTS_ENABLED"):
        get_nowpayments_config()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", None),
        (None, None),
        ("https://pay.example.com/", "https://pay.example.com"),
        ("http://localhost:8000", "http://localhost:8000"),
    ],
)
def test_public_base_url(settings: Any, value: str | None, expected: str | None) -> None:
    settings.PAYMENTS_PUBLIC_BASE_URL = value
    assert get_public_base_url() == expected


def test_public_base_url_absent(settings: Any) -> None:
    if hasattr(settings, "PAYMENTS_PUBLIC_BASE_URL"):
        del settings.PAYMENTS_PUBLIC_BASE_URL
    assert get_public_base_url() is None


def test_public_base_url_must_be_http(settings: Any) -> None:
    settings.PAYMENTS_PUBLIC_BASE_URL = "pay.example.com"
    with pytest.raises(ConfigurationError, match="PAYMENTS_PUBLIC_BASE_URL"):
        get_public_base_url()
