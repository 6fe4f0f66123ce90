"""System checks of the payments app, run by `manage.py check --deploy`.

The same rules stop the web and worker processes at start-up (``payments.config
.require_configuration``), so a half-configured deploy never serves.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register

from payments.config import get_nowpayments_config, get_public_base_url
from payments.errors import ConfigurationError


@register(deploy=True)
def nowpayments_configured(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """An enabled payments app needs a usable NowPayments config; outside debug it is an error."""
    level = Warning if settings.DEBUG else Error
    problems: list[CheckMessage] = []
    try:
        config = get_nowpayments_config()
        get_public_base_url()
    except ConfigurationError as exc:
        return [level(exc.message, id="payments.E001")]
    if config.enabled and not config.ipn_secret:
        problems.append(
            Warning(
                "NOWPAYMENTS_IPN_SECRET is empty: every IPN will be refused and payments will "
                "be settled by polling alone.",
                id="payments.W002",
            )
        )
    if getattr(settings, "PAYMENTS_PAYOUTS_ENABLED", False) and not config.has_jwt_credentials:
        problems.append(
            level(
                "PAYMENTS_PAYOUTS_ENABLED is on but NOWPAYMENTS_EMAIL / NOWPAYMENTS_PASSWORD are "
                "empty: payouts need them (and NOWPAYMENTS_TOTP_SECRET for 2FA).",
                id="payments.E003",
            )
        )
    return problems


@register(deploy=True)
def secret_key_set(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Outside debug the site signs sessions and CSRF tokens with DJANGO_SECRET_KEY."""
    if getattr(settings, "SECRET_KEY_MISSING", False):
        return [
            Error(
                "DJANGO_SECRET_KEY is not set: the web process will refuse to start.",
                id="payments.E004",
            )
        ]
    return []
