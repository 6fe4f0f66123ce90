"""Sending the outbox: claim a delivery, POST it signed, log the attempt, retry with backoff.

At least once: a delivery is POSTed until the endpoint answers 2xx, and may reach it more than
once (a sender that dies after the host answered, an operator's redeliver). The host dedupes
by ``X-Payments-Delivery`` (or the event's ``id``).
"""

from __future__ import annotations

import enum
import logging
import secrets
import time
from datetime import datetime, timedelta
from typing import Any

import requests
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from payments.errors import InvalidTransition, PermissionDenied
from payments.models import WebhookAttempt, WebhookDelivery
from payments.models.webhook import DeliveryStatus
from payments.services.host_webhooks.signing import webhook_body, webhook_headers

logger = logging.getLogger(__name__)

REDELIVER_PERMISSION = "payments.change_webhookdelivery"
MAX_BACKOFF_SECONDS = 3600.0
EXCERPT_BYTES = 500
_jitter = secrets.SystemRandom()


class SendOutcome(enum.StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"  # failed; tried again at next_attempt_at
    GAVE_UP = "gave_up"  # failed for the last time
    SKIPPED = "skipped"  # not pending, not due, or held by another sender
    ENDPOINT_INACTIVE = "endpoint_inactive"


def _setting(name: str, default: float) -> float:
    return float(getattr(settings, name, default))


def webhook_retry_delay(*, attempts: int) -> float:
    """Seconds until the next try after ``attempts`` failed ones: the first retry delay
    (``PAYMENTS_WEBHOOK_RETRY_SECONDS``, 10 s) three times longer each time (10 s, 30 s,
    1.5 min, 4.5 min, ...), capped at an hour, give or take 20% so retries spread out."""
    base = _setting("PAYMENTS_WEBHOOK_RETRY_SECONDS", 10.0)
    delay = min(MAX_BACKOFF_SECONDS, base * 3 ** max(0, attempts - 1))
    return delay * _jitter.uniform(0.8, 1.2)


def webhook_deliveries_due(*, limit: int) -> list[int]:
    """Pending deliveries whose next attempt is due and that no live sender holds (a sender
    that died lets go when its claim expires), oldest first: what the dispatch sweep sends."""
    now = timezone.now()
    return list(
        WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING, endpoint__is_active=True)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .order_by("next_attempt_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )


def webhook_delivery_send(*, delivery_id: int) -> SendOutcome:
    """Try one delivery once, if it is pending, due and free; never raises for the endpoint's
    failure (any answer but 2xx, a network error, a timeout): it is logged and retried later.

    The row is claimed for twice the timeout with one UPDATE; the POST runs outside any
    database transaction; the result is written in a short transaction after it.
    """
    if transaction.get_connection().in_atomic_block:
        raise RuntimeError("webhook_delivery_send() POSTs outside any database transaction.")
    timeout = _setting("PAYMENTS_WEBHOOK_TIMEOUT", 5.0)
    now = timezone.now()
    claim = now + timedelta(seconds=timeout * 2)
    claimed = (
        WebhookDelivery.objects.filter(pk=delivery_id, status=DeliveryStatus.PENDING)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .update(claimed_until=claim)
    )
    if not claimed:
        return SendOutcome.SKIPPED
    delivery = WebhookDelivery.objects.select_related("event", "endpoint").get(pk=delivery_id)
    endpoint, event = delivery.endpoint, delivery.event
    if not endpoint.is_active:
        WebhookDelivery.objects.filter(pk=delivery_id, claimed_until=claim).update(
            claimed_until=None
        )
        return SendOutcome.ENDPOINT_INACTIVE
    body = webhook_body(event.payload)
    headers = webhook_headers(
        secret=endpoint.secret,
        timestamp=int(time.time()),
        body=body,
        event_type=event.event_type,
        delivery_id=delivery.pk,
    )
    result = _post(endpoint.url, body, headers, timeout)
    return _finish(delivery, claim, result)


class _Result:
    def __init__(self, *, status_code: int | None, error: str, excerpt: str, ms: int) -> None:
        self.status_code, self.error, self.excerpt, self.ms = status_code, error, excerpt, ms

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> _Result:
    started = time.monotonic()
    status_code, error, excerpt = None, "", ""
    try:
        with requests.post(
            url, data=body, headers=headers, timeout=timeout, allow_redirects=False, stream=True
        ) as response:
            status_code = response.status_code
            raw = response.raw.read(EXCERPT_BYTES, decode_content=True) or b""
            excerpt = raw.decode("utf-8", errors="replace")
            if not 200 <= status_code < 300:
                error = f"HTTP {status_code}"
    except Exception as exc:  # noqa: BLE001 - whatever the endpoint does is logged, never raised
        error = f"{type(exc).__name__}: {exc}"
    ms = int((time.monotonic() - started) * 1000)
    return _Result(status_code=status_code, error=_clean(error), excerpt=_clean(excerpt), ms=ms)


def _clean(text: str) -> str:
    """Fit a log column: no NUL (PostgreSQL text refuses it), at most 500 characters."""
    return text.replace("\x00", "")[:500]


def _finish(delivery: WebhookDelivery, claim: datetime, result: _Result) -> SendOutcome:
    now = timezone.now()
    attempts = delivery.attempts + 1
    max_attempts = int(_setting("PAYMENTS_WEBHOOK_MAX_ATTEMPTS", 12))
    last: dict[str, Any] = {
        "attempts": F("attempts") + 1,
        "last_attempt_at": now,
        "last_status_code": result.status_code,
        "last_error": result.error,
        "claimed_until": None,
    }
    with transaction.atomic():
        WebhookAttempt.objects.create(
            delivery_id=delivery.pk,
            status_code=result.status_code,
            error=result.error,
            duration_ms=result.ms,
            response_excerpt=result.excerpt,
        )
        pending = WebhookDelivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.PENDING)
        if result.ok:
            pending.update(
                **last, status=DeliveryStatus.DELIVERED, delivered_at=now, next_attempt_at=None
            )
            outcome = SendOutcome.DELIVERED
        elif attempts >= max_attempts:
            pending.filter(claimed_until=claim).update(
                **last, status=DeliveryStatus.FAILED, next_attempt_at=None
            )
            outcome = SendOutcome.GAVE_UP
        else:
            delay = webhook_retry_delay(attempts=attempts)
            pending.filter(claimed_until=claim).update(
                **last, next_attempt_at=now + timedelta(seconds=delay)
            )
            outcome = SendOutcome.RETRY
    log = logger.info if result.ok else logger.warning
    log(
        "webhook delivery id=%s event=%s attempt %s: %s (%s ms) -> %s",
        delivery.pk,
        delivery.event_id,
        attempts,
        result.status_code or result.error,
        result.ms,
        outcome.value,
    )
    return outcome


def webhook_delivery_redeliver(*, delivery_id: int, user: Any) -> WebhookDelivery:
    """An operator sends a delivery again: delivered or given up, it is pending again with a
    fresh count of attempts; pending, it is tried now instead of at its backoff time."""
    if not user.has_perm(REDELIVER_PERMISSION):
        raise PermissionDenied(f"{user} may not redeliver webhooks.")
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update(of=("self",))
            .select_related("endpoint")
            .get(pk=delivery_id)
        )
        if not delivery.endpoint.is_active:
            raise InvalidTransition(
                f"The endpoint {delivery.endpoint.url} is switched off: switch it on first."
            )
        previous = delivery.status
        if previous != DeliveryStatus.PENDING:
            delivery.attempts = 0
        delivery.status = DeliveryStatus.PENDING
        delivery.next_attempt_at = timezone.now()
        delivery.claimed_until = None
        delivery.save(update_fields=["status", "attempts", "next_attempt_at", "claimed_until"])
    logger.info(
        "webhook delivery id=%s redelivered by user=%s (was %s)", delivery.pk, user.pk, previous
    )
    return delivery
