"""Polling NowPayments: bulk status sync through the list endpoint, and one-payment refresh.

One payment never holds up the others: the payments read one by one are taken least recently
asked first, and every one asked is stamped (``provider_checked_at``), so a payment whose status
call keeps failing goes to the back of the queue instead of taking a slot every cycle; a page
of reports the database refuses as a whole is applied report by report, so only the poisoned
one is left out (and logged).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DataError, IntegrityError, transaction
from django.utils import timezone

from payments.errors import PaymentsError, ProviderError
from payments.logs import CycleWarnings, RepeatLimiter
from payments.models import Payment
from payments.models.event import EventOutcome
from payments.models.payment import ACTIVE_STATUSES, PaymentStatus
from payments.services.deposits.progress import (
    ApplyResult,
    payment_apply_report,
    payments_apply_reports,
)
from payments.services.deposits.statuses import our_status
from payments.services.providers.nowpayments.gateway import get_provider, refuse_inside_transaction
from payments.services.providers.nowpayments.types import ProviderPayment

logger = logging.getLogger(__name__)
# The same payment refused on every poll is logged once an hour (payments/logs.py).
REPEATS = RepeatLimiter()

PAGE_SIZE = 500
# How long after a credit the poller keeps an eye on a payment for a refund (each one at most
# every PAYMENTS_REFUND_RECHECK_SECONDS), and how many such payments it reads per cycle.
REFUND_WATCH = timedelta(days=7)
MAX_CREDITED_CHECKS = 20
# Payments the list did not return are checked one by one, at most this many per cycle.
MAX_STATUS_CALLS = 50


@dataclass
class PollResult:
    active: int = 0
    listed: int = 0
    applied: int = 0
    status_calls: int = 0
    errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def payments_poll(*, max_status_calls: int = MAX_STATUS_CALLS) -> PollResult:
    """Bring every active payment up to date with NowPayments in as few requests as possible.

    Pages of 500 from the list endpoint; each page's changes are applied in one database
    transaction. Payments the list did not return get one status call each, up to a cap.
    Payments completed within REFUND_WATCH are read too, so that a refund NowPayments makes
    after the credit reverses it even when no IPN arrives.
    """
    result = PollResult()
    fields = ("provider_payment_id", "status", "actual_amount", "created_at")
    asked: dict[str, Any] = {}
    local = {}
    for pid, status, paid, created, checked in Payment.objects.filter(
        status__in=ACTIVE_STATUSES, provider_payment_id__isnull=False
    ).values_list(*fields, "provider_checked_at"):
        local[str(pid)] = (status, paid, created)
        asked[str(pid)] = checked
    result.active = len(local)
    # Recently credited payments not checked for a while, least recently checked first (a
    # check stamps them): a refund NowPayments makes after the credit must reverse it.
    now = timezone.now()
    recheck = timedelta(seconds=float(getattr(settings, "PAYMENTS_REFUND_RECHECK_SECONDS", 300)))
    credited = {
        str(pid): (status, paid, created)
        for pid, status, paid, created in Payment.objects.filter(
            status=PaymentStatus.COMPLETED,
            provider_payment_id__isnull=False,
            completed_at__gte=now - REFUND_WATCH,
            provider_checked_at__lt=now - recheck,
        )
        .order_by("provider_checked_at")
        .values_list(*fields)[:MAX_CREDITED_CHECKS]
    }
    active = set(local)
    local.update(credited)
    if not local:
        return result
    provider = get_provider()
    seen: set[str] = set()
    changed: list[ProviderPayment] = []
    if provider.config.has_jwt_credentials and active:
        # The list is read from the oldest active payment on; credited payments it returns
        # on the way are checked too, the others one by one below.
        oldest = min(local[pid][2] for pid in active)
        date_from = (oldest - timedelta(days=1)).date().isoformat()
        for report in provider.iter_payments(
            limit=PAGE_SIZE, date_from=date_from, sort_by="created_at", order_by="asc"
        ):
            if report.payment_id not in local:
                if report.parent_payment_id:
                    _apply_one(report, result)  # a re-deposit: recorded for an operator
                continue
            seen.add(report.payment_id)
            result.listed += 1
            # A credited payment is applied even unchanged: that stamps it as checked.
            if _changed(report, local[report.payment_id], result) or report.payment_id in credited:
                changed.append(report)
            if len(changed) >= PAGE_SIZE:
                _apply_batch(changed, result)
                changed = []
    unread = CycleWarnings(
        logger,
        REPEATS,
        "provider payment status not read",
        "status of provider payment %s not read: %s",
    )
    for pid in seen:
        unread.recovered(pid)
    unseen = [pid for pid in local if pid not in seen]
    # Active payments first: they wait for money; credited ones only for a possible refund.
    # Among them the least recently asked first, so the cap rotates through all of them and a
    # payment whose call keeps failing does not keep its slot.
    unseen.sort(key=lambda pid: (pid in credited, asked.get(pid) is not None, asked.get(pid)))
    missing = unseen[:max_status_calls]
    _stamp_asked(missing, now=timezone.now())
    for pid in missing:
        try:
            report = provider.get_payment_status(pid)
        except ProviderError as exc:
            result.errors += 1
            unread.refused(pid, exc.code)
            continue
        unread.recovered(pid)
        result.status_calls += 1
        # A credited payment read on its own is applied even unchanged: that stamps it as
        # checked, so the next cycle reads the next ones.
        if _changed(report, local[pid], result) or pid in credited:
            changed.append(report)
    _apply_batch(changed, result)
    unread.flush()
    logger.info("poll: %s", result.as_dict())
    return result


def _changed(report: ProviderPayment, known: tuple[str, Any, Any], result: PollResult) -> bool:
    """Whether the report says something the local row does not (0 paid == nothing paid)."""
    status, paid, _ = known
    try:
        ours = our_status(report.payment_status)
    except ProviderError:
        _apply_one(report, result)  # records the unknown status as an error, alone
        return False
    return ours != status or (report.actually_paid or 0) != (paid or 0)


# What one report can make the database or a service refuse, as opposed to the database
# being unreachable (which stops the cycle, as it should).
_REPORT_REFUSED = (PaymentsError, DataError, IntegrityError)


def _apply_batch(reports: list[ProviderPayment], result: PollResult) -> None:
    """One transaction for the page; if it is refused, report by report, so one poisoned
    report (an amount the columns cannot hold, a posting refused) leaves out only itself."""
    if not reports:
        return
    try:
        result.applied += payments_apply_reports(reports=reports, source="poll")["applied"]
    except _REPORT_REFUSED as exc:
        logger.warning(
            "poll: a page of %s reports was refused (%s); applying them one by one",
            len(reports),
            _code(exc),
        )
        for report in reports:
            _apply_one(report, result)


def _apply_one(report: ProviderPayment, result: PollResult) -> None:
    try:
        outcome = payment_apply_report(report=report, source="poll")
    except _REPORT_REFUSED as exc:
        result.errors += 1
        hit = REPEATS.hit("provider payment not applied", report.payment_id)
        level = logging.WARNING if hit.log else logging.DEBUG
        logger.log(level, "provider payment %s not applied: %s", report.payment_id, _code(exc))
        return
    result.applied += outcome.outcome == "applied"


def _code(exc: Exception) -> str:
    return exc.code if isinstance(exc, PaymentsError) else type(exc).__name__


def _stamp_asked(provider_ids: list[str], *, now: Any) -> None:
    """Stamp the payments about to be asked for one by one (locked in primary-key order, as
    every writer of payments locks them, and skipping rows a writer holds right now)."""
    if not provider_ids:
        return
    with transaction.atomic():
        rows = (
            Payment._base_manager.select_for_update(skip_locked=True)
            .filter(provider_payment_id__in=provider_ids)
            .order_by("pk")
            .values("pk")
        )
        Payment._base_manager.filter(pk__in=rows).update(provider_checked_at=now)


def payment_refresh(*, payment_id: uuid.UUID) -> ApplyResult:
    """Ask NowPayments for one payment's status and apply it."""
    refuse_inside_transaction()
    provider_id = (
        Payment.objects.filter(pk=payment_id).values_list("provider_payment_id", flat=True).first()
    )
    if not provider_id:
        return ApplyResult(outcome=EventOutcome.IGNORED, payment_id=payment_id)
    report = get_provider().get_payment_status(provider_id)
    return payment_apply_report(report=report, source="status")
