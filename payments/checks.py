"""System checks of the payments app, run by `manage.py check --deploy`.

The configuration rules also stop the web and worker processes at start-up (``payments.config
.require_configuration``), so a half-configured deploy never serves. Outside debug, `check
--deploy` refuses besides: payouts switched on without everything a payout needs (it would be
created at NowPayments, then never verified, and wait forever), the sandbox's well-known
secrets, and plain-http NowPayments or callback URLs (the API key and the IPNs would cross the
network in clear).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register

from payments.config import get_nowpayments_config, get_public_base_url
from payments.errors import ConfigurationError
from payments.services.providers.nowpayments.config import NowPaymentsConfig
from payments.services.providers.nowpayments.provider import current_totp

# The secrets the sandbox (sandbox/config.py) and the compose file's dev profile use by
# default: public knowledge, so never a production value (tests/payments/test_checks.py keeps
# this list in step with the sandbox's defaults).
SANDBOX_SECRETS: dict[str, frozenset[str]] = {
    "NOWPAYMENTS_API_KEY": frozenset({"sandbox-api-key"}),
    "NOWPAYMENTS_PASSWORD": frozenset({"sandbox-password"}),
    "NOWPAYMENTS_IPN_SECRET": frozenset({"sandbox-ipn-secret"}),
    "NOWPAYMENTS_TOTP_SECRET": frozenset({"JBSWY3DPEHPK3PXP", "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"}),
}


@register(deploy=True)
def nowpayments_configured(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """An enabled payments app needs a usable NowPayments config; outside debug it is an error."""
    level = Warning if settings.DEBUG else Error
    problems: list[CheckMessage] = []
    try:
        config = get_nowpayments_config()
        public_url = get_public_base_url()
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
    payouts_problem = _payouts_problem(config)
    if payouts_problem:
        problems.append(level(payouts_problem, id="payments.E003"))
    if config.enabled and not settings.DEBUG:
        problems.extend(_sandbox_secrets(config))
        problems.extend(_plain_http(config.api_url, public_url))
    return problems


def _payouts_problem(config: NowPaymentsConfig) -> str:
    """Why payouts cannot work with these settings ("" if they can)."""
    if not getattr(settings, "PAYMENTS_PAYOUTS_ENABLED", False):
        return ""
    missing = [
        name
        for name, value in (
            ("NOWPAYMENTS_EMAIL", config.email),
            ("NOWPAYMENTS_PASSWORD", config.password),
            ("NOWPAYMENTS_TOTP_SECRET", config.totp_secret),
        )
        if not value
    ]
    if missing:
        return (
            f"PAYMENTS_PAYOUTS_ENABLED is on but {' / '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} empty: payouts need the e-mail and "
            "password of the NowPayments account and its 2FA (TOTP) secret to be created and "
            "verified."
        )
    try:
        current_totp(config.totp_secret)
    except ConfigurationError as exc:
        return f"PAYMENTS_PAYOUTS_ENABLED is on but {exc.message}"
    return ""


def _sandbox_secrets(config: NowPaymentsConfig) -> list[CheckMessage]:
    values = {
        "NOWPAYMENTS_API_KEY": config.api_key,
        "NOWPAYMENTS_PASSWORD": config.password,
        "NOWPAYMENTS_IPN_SECRET": config.ipn_secret,
        "NOWPAYMENTS_TOTP_SECRET": config.totp_secret,
    }
    return [
        Error(
            f"{name} is the NowPayments sandbox's default value, which anyone can read: set "
            "the real one from the NowPayments dashboard (or DJANGO_DEBUG=1 against the "
            "sandbox).",
            id="payments.E005",
        )
        for name, value in values.items()
        if value and value in SANDBOX_SECRETS[name]
    ]


def _plain_http(api_url: str, public_url: str | None) -> list[CheckMessage]:
    problems: list[CheckMessage] = []
    for name, url, why in (
        ("NOWPAYMENTS_API_URL", api_url, "the API key and the payout credentials"),
        ("PAYMENTS_PUBLIC_BASE_URL", public_url, "the IPN callbacks and their signatures"),
    ):
        if url and urlsplit(url).scheme == "http":
            problems.append(
                Error(
                    f"{name} is a plain-http URL ({url}): {why} would cross the network "
                    "unencrypted. Use https:// (plain http is for DJANGO_DEBUG=1 only).",
                    id="payments.E006",
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
