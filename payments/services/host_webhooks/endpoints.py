"""The host application's endpoints: checked and saved here (the admin's one writer of them)."""

from __future__ import annotations

import logging
import secrets
from urllib.parse import urlsplit

from payments.errors import InvalidWebhookEndpoint
from payments.models import WebhookEndpoint
from payments.models.webhook import WebhookEventType

logger = logging.getLogger(__name__)

MIN_SECRET_LENGTH = 16
GENERATED_PREFIX = "whsec_"


def webhook_secret_generate() -> str:
    """A new random signing secret (256 bits)."""
    return GENERATED_PREFIX + secrets.token_urlsafe(32)


def webhook_secret_hint(secret: str) -> str:
    """What the admin shows of a secret: never more than its last four characters."""
    return f"…{secret[-4:]}" if len(secret) >= MIN_SECRET_LENGTH else "(not set)"


def webhook_endpoint_check(*, url: str, events: list[str], secret: str) -> None:
    """Refuse what would never deliver: a URL that is not http(s) with a host, an unknown event
    type, a secret too short to sign with."""
    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidWebhookEndpoint("A webhook endpoint needs an http:// or https:// URL.")
    unknown = sorted(set(events or []) - set(WebhookEventType.values))
    if unknown:
        raise InvalidWebhookEndpoint(f"Unknown event type(s): {', '.join(unknown)}.")
    if len(secret or "") < MIN_SECRET_LENGTH:
        raise InvalidWebhookEndpoint(
            f"A webhook secret has at least {MIN_SECRET_LENGTH} characters."
        )


def webhook_endpoint_save(*, endpoint: WebhookEndpoint, new_secret: str = "") -> str:
    """Check and save an endpoint; ``new_secret`` replaces its secret when given. A new
    endpoint given none gets a generated one. Returns the secret generated now ("" if none),
    for the operator to copy once: it is never shown again."""
    generated = ""
    if new_secret:
        endpoint.secret = new_secret.strip()
    elif not endpoint.secret:
        endpoint.secret = generated = webhook_secret_generate()
    endpoint.events = sorted(set(endpoint.events or []))
    webhook_endpoint_check(url=endpoint.url, events=endpoint.events, secret=endpoint.secret)
    endpoint.save()
    logger.info("webhook endpoint id=%s saved (active=%s)", endpoint.pk, endpoint.is_active)
    return generated
