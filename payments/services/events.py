"""ProviderEvent, the one writer of raw NowPayments IPNs: store them committed, then apply them.

The webhook view works in two steps, as dj-stripe does with its webhook triggers:

1. ``event_receive`` (``event_store``) commits the verified raw body on its own, deduplicated by
   a hash of its canonical form (the key-sorted, compact JSON NowPayments signs), so whitespace
   and key-order variants of one IPN are one event and nothing that happens later can lose it;
2. ``event_apply`` applies it through the deposits service and records what it did in the same
   transaction as the apply. A domain error (``PaymentsError``) is recorded as the outcome. An
   unexpected exception rolls the apply back, is recorded on the event in a transaction of its
   own, and is re-raised so the caller sees it (the view answers 500 and NowPayments retries).
   Workers apply stored events in batches instead (``events_drain``, the default for the
   webhook), with the same outcomes.

``events_reprocess`` applies stored events again (failed ones by default). Applying is safe to
repeat: a processed event is not applied twice unless forced, and even then the deposits
service only moves forward and settles a payment exactly once.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.db import DatabaseError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from payments.errors import EventNotFound, InvalidEventBody, PaymentsError
from payments.models import ProviderEvent
from payments.models.event import EventOutcome
from payments.services.deposits import payment_apply_report
from payments.services.providers.nowpayments.signature import canonical_ipn_body
from payments.services.providers.nowpayments.types import ProviderPayment

logger = logging.getLogger(__name__)

KIND_PAYMENT = "payment"
KIND_PAYOUT = "payout"
# Outcomes of an event that is not done yet: applying it (again) is the normal path.
UNFINISHED_OUTCOMES = frozenset({EventOutcome.RECEIVED, EventOutcome.ERROR})
# An event still ``received`` after this long was stored by a request that never applied it.
STUCK_AFTER = timedelta(minutes=1)
PAYOUT_DETAIL = "payout IPNs are applied by the payout poller"
# The keys of what events_reprocess returns, besides every outcome but "received".
REPROCESS_COUNTS = ("selected", "skipped", "missing", "unexpected_error")

_DETAIL_MAX = 500  # ProviderEvent.detail's max_length


@dataclass(frozen=True)
class EventResult:
    """What one ``event_apply`` call found or did.

    ``repeated`` means the event had been processed before and nothing was done this time;
    ``code`` is the domain error's code when ``outcome`` is error.
    """

    event_id: int
    outcome: str
    detail: str = ""
    code: str = ""
    repeated: bool = False


def event_parse(*, body: bytes | str) -> dict[str, Any]:
    """The IPN body as a JSON object: UTF-8, non-integer numbers as Decimal, no NaN/Infinity."""
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidEventBody("The IPN body is not UTF-8 text.") from exc
    try:
        payload = json.loads(body, parse_float=Decimal, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise InvalidEventBody("The IPN body is not valid JSON.") from exc
    if not isinstance(payload, dict):
        raise InvalidEventBody("The IPN body is not a JSON object.")
    return payload


def event_dedupe_key(*, payload: dict[str, Any], canonical: str | None = None) -> str:
    """SHA-256 of the canonical body: the very string NowPayments signs for this payload.

    Two bodies with the same canonical form carry the same signature, so they are one IPN
    however they are spaced or ordered. ``canonical``, when the caller has it already (the
    webhook, from verifying the signature), saves computing it again.
    """
    if canonical is None:
        try:
            canonical = canonical_ipn_body(payload)
        except (TypeError, ValueError) as exc:
            raise InvalidEventBody("The IPN body holds a value no IPN signature covers.") from exc
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class StoredEvent:
    """What ``event_receive`` found: the event, whether this delivery created it, its outcome."""

    event_id: int
    created: bool
    outcome: str


def event_store(
    *, kind: str, object_id: str, status: str, body: bytes, signature: str
) -> tuple[int, bool]:
    """Commit a verified IPN as received unless it is stored already; return (id, created)."""
    stored = event_receive(
        kind=kind, object_id=object_id, status=status, body=body, signature=signature
    )
    return stored.event_id, stored.created


def event_receive(
    *,
    kind: str,
    object_id: str,
    status: str,
    body: bytes,
    signature: str,
    dedupe_key: str | None = None,
) -> StoredEvent:
    """Commit a verified IPN as received unless it is stored already.

    Each statement commits on its own (autocommit), so this refuses to run inside a
    transaction: a rollback of the caller's work must never take the raw event with it. A
    duplicate delivery, however spaced or ordered, counts one more delivery of the stored
    event. Concurrent duplicates meet at the unique dedupe key (``INSERT ... ON CONFLICT DO
    NOTHING``): one inserts, the others wait for its commit and count a delivery.
    ``dedupe_key`` is ``event_dedupe_key`` of the body when the caller has computed it.
    """
    if connection.in_atomic_block:
        raise RuntimeError(
            "A provider event is committed on its own (a durable store): not inside another "
            "atomic block."
        )
    if dedupe_key is None:
        dedupe_key = event_dedupe_key(payload=event_parse(body=body))
    text = body.decode("utf-8")
    with connection.cursor() as cursor:
        for _attempt in range(2):
            cursor.execute(
                "INSERT INTO payments_providerevent (provider, kind, dedupe_key, "
                "provider_object_id, provider_status, body, signature, outcome, detail, "
                "deliveries, received_at) "
                "VALUES ('nowpayments', %s, %s, %s, %s, %s, %s, %s, '', 1, %s) "
                "ON CONFLICT (dedupe_key) DO NOTHING RETURNING id",
                [
                    kind,
                    dedupe_key,
                    object_id[:64],
                    status[:32],
                    text,
                    signature[:256],
                    EventOutcome.RECEIVED,
                    timezone.now(),
                ],
            )
            row = cursor.fetchone()
            if row is not None:
                logger.debug("IPN event id=%s stored: %s %s %s", row[0], kind, object_id, status)
                return StoredEvent(int(row[0]), True, EventOutcome.RECEIVED)
            cursor.execute(
                "UPDATE payments_providerevent SET deliveries = deliveries + 1 "
                "WHERE dedupe_key = %s RETURNING id, deliveries, outcome",
                [dedupe_key],
            )
            row = cursor.fetchone()
            if row is not None:
                logger.info("IPN event id=%s delivered again (delivery %s)", row[0], row[1])
                return StoredEvent(int(row[0]), False, str(row[2]))
            # Events are never deleted, so the conflicting row is there; try once more anyway.
    raise DatabaseError(f"IPN event with dedupe key {dedupe_key} could not be stored")


def event_apply(*, event_id: int, force: bool = False) -> EventResult:
    """Apply a stored event once, recording its outcome in the same transaction as the apply.

    An event already processed (applied, unchanged, stale, ignored, unknown payment) is left
    as it is unless ``force``; a forced apply goes through the deposits service again, which
    only moves forward and settles exactly once. A ``PaymentsError`` is recorded as outcome
    error with ``code: message``. Any other exception is recorded as outcome error naming it,
    in a transaction of its own after the failed one rolled back, and is then re-raised.
    """
    seen: str | None = None
    try:
        with transaction.atomic(durable=True):
            try:
                event = ProviderEvent.objects.select_for_update().get(pk=event_id)
            except ProviderEvent.DoesNotExist:
                raise EventNotFound(f"No stored provider event has id {event_id}.") from None
            seen = event.outcome
            if seen not in UNFINISHED_OUTCOMES and not force:
                return EventResult(event_id, seen, event.detail, repeated=True)
            return _apply_locked(event)
    except Exception as exc:
        if seen is not None:
            _record_unexpected(event_id, seen, exc)
        raise


def events_reprocess(
    *,
    event_ids: Iterable[int] | None = None,
    outcome: str | None = None,
    force: bool | None = None,
    stuck_after: timedelta = STUCK_AFTER,
) -> dict[str, int]:
    """Apply stored events again, oldest first, each in its own transaction; return counts.

    With ``event_ids``, exactly those events, forced by default (an operator chose them; the
    deposits service keeps a forced apply idempotent). Otherwise the failed ones: outcome
    ``error``, or still ``received`` after ``stuck_after`` (their request died before applying
    them); ``outcome`` narrows that to one of the two. An unexpected exception in one event is
    recorded on it, logged and counted, and the others carry on.

    The counts: ``selected``, one per outcome reached, ``skipped`` (already processed, not
    forced), ``missing`` (ids with no event) and ``unexpected_error``.
    """
    counts = dict.fromkeys(REPROCESS_COUNTS, 0)
    counts.update(dict.fromkeys((o.value for o in EventOutcome if o != EventOutcome.RECEIVED), 0))
    if event_ids is not None:
        wanted = sorted({int(pk) for pk in event_ids})
        ids = list(
            ProviderEvent.objects.filter(pk__in=wanted).order_by("pk").values_list("pk", flat=True)
        )
        counts["missing"] = len(wanted) - len(ids)
        forced = True if force is None else force
    else:
        ids = list(
            ProviderEvent.objects.filter(_failed(outcome, stuck_after))
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        forced = bool(force)
    counts["selected"] = len(ids)
    for event_id in ids:
        try:
            result = event_apply(event_id=event_id, force=forced)
        except Exception:
            logger.exception("IPN event id=%s: reprocessing failed unexpectedly", event_id)
            counts["unexpected_error"] += 1
            continue
        counts["skipped" if result.repeated else result.outcome] += 1
    logger.info("IPN events reprocessed: %s", {k: v for k, v in counts.items() if v})
    return counts


def reprocess_summary(counts: dict[str, int]) -> str:
    """``events_reprocess``'s counts as a sentence for a person (command output, admin)."""
    reached = ", ".join(f"{k} {v}" for k, v in counts.items() if v and k != "selected")
    return f"{counts['selected']} event(s) reprocessed" + (f": {reached}." if reached else ".")


def _failed(outcome: str | None, stuck_after: timedelta) -> Q:
    stuck = Q(outcome=EventOutcome.RECEIVED, received_at__lt=timezone.now() - stuck_after)
    if outcome is None:
        return Q(outcome=EventOutcome.ERROR) | stuck
    if outcome == EventOutcome.ERROR:
        return Q(outcome=EventOutcome.ERROR)
    if outcome == EventOutcome.RECEIVED:
        return stuck
    raise ValueError(f"outcome must be error, received or None, not {outcome!r}")


def _apply_locked(event: ProviderEvent) -> EventResult:
    """Apply the locked event and record the outcome, inside the caller's transaction."""
    code = ""
    payment_id = event.payment_id
    try:
        with transaction.atomic():  # a savepoint: a domain error undoes the apply, not the lock
            outcome, applied_to, detail = _apply_body(event)
    except PaymentsError as exc:
        outcome, applied_to, code = EventOutcome.ERROR, None, exc.code
        detail = f"{exc.code}: {exc.message}"
        logger.warning(
            "IPN event id=%s (%s %s) not applied: %s",
            event.pk,
            event.kind,
            event.provider_object_id,
            exc.code,
        )
    if event.outcome not in UNFINISHED_OUTCOMES:
        detail = f"reprocessed (was {event.outcome}). {detail}".strip()
    ProviderEvent.objects.filter(pk=event.pk).update(
        outcome=outcome,
        detail=detail[:_DETAIL_MAX],
        processed_at=timezone.now(),
        payment_id=applied_to or payment_id,
    )
    return EventResult(event.pk, str(outcome), detail[:_DETAIL_MAX], code)


def _apply_body(event: ProviderEvent) -> tuple[str, Any, str]:
    """(outcome, payment id, detail) of applying the stored body through the deposits service."""
    if event.kind != KIND_PAYMENT:
        return EventOutcome.IGNORED, None, PAYOUT_DETAIL
    report = ProviderPayment.from_dict(event_parse(body=event.body))
    result = payment_apply_report(report=report, source="ipn")
    return result.outcome, result.payment_id, ""


def _record_unexpected(event_id: int, seen: str, exc: Exception) -> None:
    """Record an unexpected failure on the event, unless someone processed it meanwhile."""
    detail = f"unexpected {type(exc).__name__}: {exc}"
    logger.error("IPN event id=%s failed: %s; it stays stored for reprocessing", event_id, detail)
    try:
        ProviderEvent.objects.filter(pk=event_id, outcome=seen).update(
            outcome=EventOutcome.ERROR, detail=detail[:_DETAIL_MAX], processed_at=timezone.now()
        )
    except DatabaseError:
        logger.exception("IPN event id=%s: the failure could not be recorded", event_id)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")
