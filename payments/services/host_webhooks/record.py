"""The outbox: events written in the database transaction of the money change they report."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from payments.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from payments.models.webhook import WebhookEventType
from payments.models.withdrawal import WithdrawalStatus
from payments.services.host_webhooks.payloads import payments_data, withdrawal_data

logger = logging.getLogger(__name__)

# The withdrawal moves the host is told of, and what each is called.
WITHDRAWAL_EVENTS: dict[str, str] = {
    WithdrawalStatus.APPROVED: WebhookEventType.WITHDRAWAL_APPROVED,
    WithdrawalStatus.COMPLETED: WebhookEventType.WITHDRAWAL_COMPLETED,
    WithdrawalStatus.FAILED: WebhookEventType.WITHDRAWAL_FAILED,
    WithdrawalStatus.REJECTED: WebhookEventType.WITHDRAWAL_REJECTED,
}
_EVENT_TYPES = frozenset(WebhookEventType.values)
# The suffix of each payment event's dedupe key (``payment:<id>:<suffix>``).
_PAYMENT_KEYS = {
    WebhookEventType.PAYMENT_CREDITED: "credited",
    WebhookEventType.PAYMENT_IN_REVIEW: "in_review",
    WebhookEventType.PAYMENT_REVERSED: "reversed",
}


@dataclass(frozen=True)
class NewEvent:
    """One event to record: its type, its cause (the dedupe key) and the ``data`` it carries."""

    event_type: str
    dedupe_key: str
    data: dict[str, Any]


def webhook_event_record(
    *, event_type: str, dedupe_key: str, payload: dict[str, Any]
) -> WebhookEvent | None:
    """Record one event and its deliveries, inside the caller's transaction.

    ``payload`` is the event's ``data``; the stored payload is the envelope
    ``{id, type, created_at, data}`` the host receives. Returns the new event, or None when the
    cause is already recorded (a replay writes nothing) or no active endpoint wants the type.
    """
    created = webhook_events_record(
        events=[NewEvent(event_type=event_type, dedupe_key=dedupe_key, data=payload)]
    )
    return created[0] if created else None


def webhook_events_record(*, events: Sequence[NewEvent]) -> list[WebhookEvent]:
    """Record many events in a few statements whatever their number (the settlement batch's
    path): one INSERT ... ON CONFLICT DO NOTHING for the events, one INSERT for their
    deliveries (one per active endpoint that wants the type, due now).

    Must run inside the database transaction of the change the events report, so that a change
    that rolls back leaves no event behind. An event no active endpoint wants is not stored.
    Returns the events recorded now.
    """
    return _record(events, _active_endpoints())


def _active_endpoints() -> list[WebhookEndpoint]:
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError(
            "webhook events are recorded inside the transaction of the change they report."
        )
    # Most calls find no endpoint: a fixed statement says so for a fraction of what building
    # the ORM query costs (a fifth of a single settlement's Python), then the ORM reads them.
    with connection.cursor() as cursor:
        cursor.execute(_ANY_ACTIVE)
        if cursor.fetchone() is None:
            return []
    return list(WebhookEndpoint.objects.filter(is_active=True))


_ANY_ACTIVE = f"SELECT 1 FROM {WebhookEndpoint._meta.db_table} WHERE is_active LIMIT 1"  # noqa: S608
# The same question as a column of a caller's own statement (a lock it takes anyway), which
# saves the one-payment paths a round trip: passed back as ``endpoints_active``.
ANY_ACTIVE_COLUMN = f"EXISTS ({_ANY_ACTIVE})"


def _wanted_by(endpoints: list[WebhookEndpoint], event_type: str) -> list[WebhookEndpoint]:
    return [endpoint for endpoint in endpoints if endpoint.wants(event_type)]


def _record(events: Sequence[NewEvent], endpoints: list[WebhookEndpoint]) -> list[WebhookEvent]:
    for event in events:
        if event.event_type not in _EVENT_TYPES:
            raise ValueError(f"{event.event_type!r} is not a webhook event type.")
    wanted = [e for e in events if _wanted_by(endpoints, e.event_type)]
    if not wanted:
        return []
    now = timezone.now()
    rows = []
    for event in wanted:
        event_id = uuid.uuid4()
        envelope = {
            "id": str(event_id),
            "type": event.event_type,
            "created_at": now.isoformat(),
            "data": event.data,
        }
        rows.append(
            WebhookEvent(
                id=event_id,
                event_type=event.event_type,
                dedupe_key=event.dedupe_key,
                payload=envelope,
                created_at=now,
            )
        )
    # A cause already recorded (by an earlier or a concurrent transaction) keeps its row: ours
    # is not inserted, and only the rows that went in under our ids get deliveries.
    WebhookEvent.objects.bulk_create(rows, ignore_conflicts=True)
    inserted = set(
        WebhookEvent.objects.filter(pk__in=[r.pk for r in rows]).values_list("pk", flat=True)
    )
    created = [r for r in rows if r.pk in inserted]
    WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(event=row, endpoint=endpoint, next_attempt_at=now)
            for row in created
            for endpoint in _wanted_by(endpoints, row.event_type)
        ]
    )
    for row in created:
        logger.info("webhook event id=%s %s %s", row.pk, row.event_type, row.dedupe_key)
    return created


def webhook_payments_record(
    *,
    event_type: str,
    extras: Mapping[uuid.UUID, dict[str, Any]],
    endpoints_active: bool | None = None,
) -> list[WebhookEvent]:
    """Record a payment event for each payment of ``extras`` (payment id: what the event adds
    to the payment's fields), in the caller's transaction, in a few statements for any number.
    ``endpoints_active`` False: the caller's statement in this transaction found no active
    endpoint (``ANY_ACTIVE_COLUMN``), so nothing is asked or written.

    Dedupe keys: ``payment:<id>:credited`` and ``payment:<id>:reversed`` (each happens once to a
    payment), ``payment:<id>:in_review:<when it moved>`` (a payment may come back to review).
    """
    if not extras or endpoints_active is False:
        return []
    endpoints = _active_endpoints()
    if not _wanted_by(endpoints, event_type):
        return []  # nobody listens: not even the payments' fields are read
    data = payments_data(payment_ids=list(extras))
    kind = _PAYMENT_KEYS[WebhookEventType(event_type)]
    events = []
    for payment_id, extra in extras.items():
        if payment_id not in data:
            continue
        fields = {**data[payment_id], **extra}
        key = f"payment:{payment_id}:{kind}"
        if event_type == WebhookEventType.PAYMENT_IN_REVIEW:
            key += f":{fields['status_changed_at']}"
        events.append(NewEvent(event_type=event_type, dedupe_key=key, data=fields))
    return _record(events, endpoints)


def webhook_withdrawal_record(*, withdrawal_id: uuid.UUID, status: str) -> WebhookEvent | None:
    """Record the event of a withdrawal's move to ``status`` (none for a move the host is not
    told of: processing, cancelled), in the caller's transaction; dedupe key
    ``withdrawal:<id>:<status>``: a withdrawal reaches each status once."""
    event_type = WITHDRAWAL_EVENTS.get(status)
    if event_type is None:
        return None
    endpoints = _active_endpoints()
    if not _wanted_by(endpoints, event_type):
        return None
    event = NewEvent(
        event_type=event_type,
        dedupe_key=f"withdrawal:{withdrawal_id}:{status}",
        data=withdrawal_data(withdrawal_id=withdrawal_id),
    )
    created = _record([event], endpoints)
    return created[0] if created else None
