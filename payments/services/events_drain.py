"""The IPN drain: workers apply the stored, not yet applied provider events in batches.

The webhook only verifies and commits each IPN (``events.event_receive``) and asks for a drain.
A drain claims the oldest ``received`` events with ``FOR UPDATE SKIP LOCKED`` (so concurrent
drains on several workers or hosts take disjoint batches, and an event ``event_apply`` is busy
with is left to it), applies the payment reports among them through the deposits service's
batch path (one transaction: the payments locked in id order, one ``ledger.post_many``), and
records each event's outcome in that same transaction. 200 IPNs arriving back to back are
thus a few transactions, not 200.

A drain is requested by the webhook after each commit, but only when no request is pending
(``drain_wanted``: a flag in the shared cache, set with ``add`` and cleared as a drain starts,
before it claims; a pending drain therefore sees every event committed before the flag was
found set). So a burst of IPNs sends a handful of tasks, not one each. A lost request only
delays: the flag expires within seconds, and the settle sweep drains on every beat tick.

Anything out of the ordinary -- a report that names no payment of ours (re-deposits), a status
we do not know, a body that does not parse, a batch the deposits service refuses as a whole
-- is applied one event at a time through ``events.event_apply`` afterwards, with exactly its
outcomes and error recording. A lost connection leaves the events ``received``: the next drain
(the settle sweep runs one on every beat tick) takes them again.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from django.core.cache import cache
from django.db import InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from payments.bulk import update_rows
from payments.errors import PaymentsError
from payments.models import Payment, ProviderEvent
from payments.models.event import EventOutcome
from payments.models.payment import PaymentStatus
from payments.services.deposits import payments_apply_reports
from payments.services.deposits.statuses import our_status
from payments.services.events import KIND_PAYMENT, PAYOUT_DETAIL, event_apply, event_parse
from payments.services.providers.nowpayments.types import ProviderPayment

logger = logging.getLogger(__name__)

DRAIN_BATCH = 200
DRAIN_ROUNDS = 10  # batches per drain call, at most: a backlog is left to the next drain
# Statuses in which no transaction to the pay address exists yet (or ever will): no hash to fetch.
_NO_MONEY_YET = (
    PaymentStatus.PENDING,
    PaymentStatus.EXPIRED,
    PaymentStatus.CANCELLED,
    PaymentStatus.FAILED,
)
DRAIN_REQUESTED_KEY = "ipn-drain-requested"
DRAIN_REQUEST_TTL = 2  # seconds: how long a lost request can hold back the next one
# A lost or broken connection: the claimed events stay received for the next drain.
_CONNECTION_ERRORS = (OperationalError, InterfaceError)
# What a batch records of one event: (event id, outcome, detail, payment id).
_Row = tuple[int, str, str, "uuid.UUID | None"]


@dataclass
class DrainResult:
    """What ``events_drain`` did: events by outcome, and the payments whose hash to fetch.

    NowPayments' IPN carries no payin hash: once money is seen on a payment that has no
    transaction hash yet, a worker reads its status, which has one (the explorer link).
    """

    counts: Counter[str] = field(default_factory=Counter)
    touched: set[uuid.UUID] = field(default_factory=set)
    missing_hash: list[uuid.UUID] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {**dict(self.counts), "hash_lookups": len(self.missing_hash)}


def drain_wanted() -> bool:
    """Whether the caller, having committed an event, must request a drain: False while one
    requested earlier has not started yet (it will claim the caller's event too)."""
    try:
        return bool(cache.add(DRAIN_REQUESTED_KEY, 1, timeout=DRAIN_REQUEST_TTL))
    except Exception:  # no shared cache: request one each time, as without the flag
        logger.debug("IPN drain: the cache is unavailable; requesting a drain", exc_info=True)
        return True


def events_drain(*, batch: int = DRAIN_BATCH, rounds: int = DRAIN_ROUNDS) -> DrainResult:
    """Apply received events, oldest first, ``batch`` per transaction, until none is left (or
    ``rounds`` batches are done); events another drain holds are skipped, not waited for."""
    try:
        cache.delete(DRAIN_REQUESTED_KEY)  # before claiming: later commits request a new drain
    except Exception:  # the flag then expires on its own
        logger.debug("IPN drain: the cache is unavailable", exc_info=True)
    result = DrainResult()
    for _round in range(rounds):
        claimed = _drain_batch(batch, result)
        if claimed < batch:
            break
    if result.touched:
        result.missing_hash = list(
            Payment.objects.filter(pk__in=result.touched, transaction_hash="")
            .exclude(status__in=_NO_MONEY_YET)
            .values_list("pk", flat=True)
        )
    if result.counts:
        logger.info("IPN drain: %s", dict(result.counts))
    return result


def _drain_batch(limit: int, result: DrainResult) -> int:
    """Claim and apply one batch; return how many events it claimed."""
    events: list[ProviderEvent] = []
    rows: list[_Row] = []
    one_by_one: list[int] = []
    try:
        with transaction.atomic(durable=True):
            events = list(
                ProviderEvent.objects.select_for_update(skip_locked=True)
                .filter(outcome=EventOutcome.RECEIVED)
                .order_by("pk")
                .only("pk", "kind", "body", "payment_id")[:limit]
            )
            if not events:
                return 0
            rows, one_by_one = _apply_claimed(events)
            _record(rows)
    except _CONNECTION_ERRORS:
        raise
    except Exception as exc:  # noqa: BLE001 - each event on its own records what failed
        # The batch failed as a whole (a report the deposits service or the ledger refuses):
        # each event on its own instead, so one poisoned report never holds up the others,
        # and each failure is recorded on its own event.
        logger.warning(
            "IPN drain: a batch of %s fell back to one by one (%s)", len(events), repr(exc)
        )
        one_by_one = [event.pk for event in events]
        rows = []
    for _event_id, outcome, _detail, payment_id in rows:
        result.counts[str(outcome)] += 1
        if payment_id is not None:
            result.touched.add(payment_id)
    for event_id in one_by_one:
        _apply_one(event_id, result)
    return len(events)


def _apply_claimed(events: list[ProviderEvent]) -> tuple[list[_Row], list[int]]:
    """Apply the claimed events' reports in rounds, each payment once per round, in event order.

    Returns the (event id, outcome, detail, payment id) to record, and the events left to the
    one-by-one path (unknown payments, unknown statuses, unreadable bodies).
    """
    rows: list[_Row] = []
    one_by_one: list[int] = []
    rounds: list[list[tuple[ProviderEvent, ProviderPayment]]] = []
    depth: dict[str, int] = {}
    for event in events:
        if event.kind != KIND_PAYMENT:
            rows.append((event.pk, EventOutcome.IGNORED, PAYOUT_DETAIL, event.payment_id))
            continue
        try:
            report = ProviderPayment.from_dict(event_parse(body=event.body))
            our_status(report.payment_status)
        except (PaymentsError, ValueError, TypeError, KeyError):
            one_by_one.append(event.pk)
            continue
        level = depth.get(report.payment_id, 0)
        depth[report.payment_id] = level + 1
        if level == len(rounds):
            rounds.append([])
        rounds[level].append((event, report))
    for round_ in rounds:
        outcomes: dict[str, tuple[str, uuid.UUID]] = {}
        payments_apply_reports(reports=[r for _, r in round_], source="ipn", outcomes=outcomes)
        for event, report in round_:
            if report.payment_id in outcomes:
                outcome, payment_id = outcomes[report.payment_id]
                rows.append((event.pk, outcome, "", payment_id))
            else:
                one_by_one.append(event.pk)  # not one of ours: a re-deposit, or unknown
    return rows, one_by_one


def _record(rows: list[_Row]) -> None:
    """Record the outcomes of a batch in one statement, in the batch's transaction."""
    now = timezone.now()
    if connection.vendor != "postgresql":  # the embedded demo's SQLite: one update a row
        for event_id, outcome, detail, payment_id in rows:
            ProviderEvent._base_manager.filter(pk=event_id).update(
                outcome=outcome, detail=detail, processed_at=now, payment_id=payment_id
            )
        return
    update_rows(
        table="payments_providerevent",
        key=("id", "bigint"),
        columns=[
            ("outcome", "varchar"),
            ("detail", "varchar"),
            ("processed_at", "timestamptz"),
            ("payment_id", "uuid"),
        ],
        rows=[
            (event_id, str(outcome), detail, now, payment_id)
            for event_id, outcome, detail, payment_id in rows
        ],
    )


def _apply_one(event_id: int, result: DrainResult) -> None:
    try:
        applied = event_apply(event_id=event_id)
    except _CONNECTION_ERRORS:
        raise
    except Exception:
        logger.exception("IPN event id=%s: applying it failed unexpectedly", event_id)
        result.counts["unexpected_error"] += 1
        return
    result.counts["skipped" if applied.repeated else str(applied.outcome)] += 1
