"""Reads the payments settings into validated config objects: loud failure, never half a config."""

from __future__ import annotations

import logging
import math
from urllib.parse import urlsplit

from django.conf import settings

from payments.errors import ConfigurationError
from payments.services.providers.nowpayments.config import DEFAULT_API_URL, NowPaymentsConfig

logger = logging.getLogger(__name__)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def get_nowpayments_config() -> NowPaymentsConfig:
    """Build the NowPayments client config from Django settings.

    Raises ``ConfigurationError`` naming the setting when payments are enabled but the
    settings cannot work (no API key, an API URL that is not http/https, a bad timeout).
    With ``PAYMENTS_ENABLED`` off the config is returned with ``enabled=False`` and the
    provider refuses every call.
    """
    enabled = _setting_bool("PAYMENTS_ENABLED", default=True)
    api_key = _setting_str("NOWPAYMENTS_API_KEY")
    api_url = _setting_str("NOWPAYMENTS_API_URL") or DEFAULT_API_URL
    timeout = _setting_timeout("NOWPAYMENTS_TIMEOUT", default=10.0)

    if enabled:
        if not api_key:
            raise ConfigurationError(
                "NOWPAYMENTS_API_KEY is empty: set it to the API key from the NowPayments "
                "dashboard, or set PAYMENTS_ENABLED=False."
            )
        if not _is_http_url(api_url):
            raise ConfigurationError(
                f"NOWPAYMENTS_API_URL must be an http:// or https:// URL; got {api_url!r}."
            )

    return NowPaymentsConfig(
        api_key=api_key,
        api_url=api_url.rstrip("/"),
        ipn_secret=_setting_str("NOWPAYMENTS_IPN_SECRET"),
        email=_setting_str("NOWPAYMENTS_EMAIL"),
        password=_setting_str("NOWPAYMENTS_PASSWORD", strip=False),
        totp_secret=_setting_str("NOWPAYMENTS_TOTP_SECRET").replace(" ", ""),
        timeout=timeout,
        enabled=enabled,
    )


def get_register_timeout() -> float:
    """Seconds a payment made through the ORM waits for NowPayments before a worker takes over
    (``PAYMENTS_REGISTER_TIMEOUT``, 5 by default)."""
    return _setting_timeout("PAYMENTS_REGISTER_TIMEOUT", default=5.0)


def require_configuration() -> None:
    """Raise ConfigurationError unless the payments settings can work (web and worker start-up).

    In debug it only logs, so a local run without NowPayments still starts.
    """
    try:
        get_nowpayments_config()
        get_public_base_url()
    except ConfigurationError as exc:
        if settings.DEBUG:
            logger.warning("payments are not fully configured: %s", exc.message)
            return
        raise


def get_public_base_url() -> str | None:
    """The public https base of this site (for IPN callback URLs), or None when unset."""
    value = _setting_str("PAYMENTS_PUBLIC_BASE_URL")
    if not value:
        return None
    if not _is_http_url(value):
        raise ConfigurationError(
            f"PAYMENTS_PUBLIC_BASE_URL must be an http:// or https:// URL; got {value!r}."
        )
    return value.rstrip("/")


def _setting_str(name: str, *, strip: bool = True) -> str:
    value = getattr(settings, name, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ConfigurationError(f"{name} must be a string; got {type(value).__name__}.")
    return value.strip() if strip else value


def _setting_bool(name: str, *, default: bool) -> bool:
    value = getattr(settings, name, default)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ConfigurationError(f"{name} must be True or False; got {value!r}.")


def _setting_timeout(name: str, *, default: float) -> float:
    value = getattr(settings, name, default)
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{name} must be a number of seconds; got {value!r}.") from None
    if isinstance(value, bool) or not math.isfinite(seconds) or seconds <= 0:
        raise ConfigurationError(f"{name} must be a positive number of seconds; got {value!r}.")
    return seconds


def _is_http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in {"http", "https"} and bool(parts.netloc)
