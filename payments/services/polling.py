"""Polling NowPayments: bulk status sync through the list endpoint, and expiry of stale payments."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from payments.errors import ProviderError
from payments.models import Payment
from payments.models.payment import ACTIVE_STATUSES, PaymentStatus
from payments.services.gateway import get_provider
from payments.services.payments import payment_apply_report, payments_apply_reports
from payments.services.providers.nowpayments.types import ProviderPayment

logger = logging.getLogger(__name__)

PAGE_SIZE = 500
# Payments the list did not return are checked one by one, at most this many per cycle.
MAX_STATUS_CALLS = 50
EXPIRY_GRACE = timedelta(minutes=10)
UNREGISTERED_TTL = timedelta(days=1)


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
    """
    result = PollResult()
    local = {
        str(pid): (status, paid, created)
        for pid, status, paid, created in Payment.objects.filter(
            status__in=ACTIVE_STATUSES, provider_payment_id__isnull=False
        ).values_list("provider_payment_id", "status", "actual_amount", "created_at")
    }
    result.active = len(local)
    if not local:
        return result
    provider = get_provider()
    seen: set[str] = set()
    changed: list[ProviderPayment] = []
    if provider.config.has_jwt_credentials:
        oldest = min(created for _, _, created in local.values())
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
            if _changed(report, local[report.payment_id], result):
                changed.append(report)
            if len(changed) >= PAGE_SIZE:
                _apply_batch(changed, result)
                changed = []
    missing = [pid for pid in local if pid not in seen][:max_status_calls]
    for pid in missing:
        try:
            report = provider.get_payment_status(pid)
        except ProviderError as exc:
            result.errors += 1
            logger.warning("status of provider payment %s not read: %s", pid, exc.code)
            continue
        result.status_calls += 1
        if _changed(report, local[pid], result):
            changed.append(report)
    _apply_batch(changed, result)
    logger.info("poll: %s", result.as_dict())
    return result


def payments_expire(*, limit: int = 200) -> dict[str, int]:
    """Expire pending payments past their expiry, after one last look at NowPayments."""
    now = timezone.now()
    due = list(
        Payment.objects.filter(status=PaymentStatus.PENDING)
        .filter(
            Q(expires_at__lt=now - EXPIRY_GRACE)
            | Q(provider_payment_id__isnull=True, created_at__lt=now - UNREGISTERED_TTL)
        )
        .values_list("pk", "provider_payment_id")[:limit]
    )
    expired = checked = errors = 0
    for payment_id, provider_id in due:
        if provider_id:
            try:
                report = get_provider().get_payment_status(provider_id)
                payment_apply_report(report=report, source="expiry-check")
                checked += 1
            except ProviderError as exc:
                # Not knowing is no reason to expire money that may be on its way.
                errors += 1
                logger.warning(
                    "payment %s not expired: provider check failed (%s)", payment_id, exc.code
                )
                continue
        with transaction.atomic():
            payment = Payment.objects.select_for_update().get(pk=payment_id)
            if payment.status == PaymentStatus.PENDING:
                payment.status = PaymentStatus.EXPIRED
                payment.save()
                expired += 1
                logger.info("payment %s expired", payment_id)
    return {"due": len(due), "checked": checked, "expired": expired, "errors": errors}


def _changed(report: ProviderPayment, known: tuple[str, Any, Any], result: PollResult) -> bool:
    """Whether the report says something the local row does not (0 paid == nothing paid)."""
    status, paid, _ = known
    try:
        ours = report.our_status
    except ProviderError:
        _apply_one(report, result)  # records the unknown status as an error, alone
        return False
    return ours != status or (report.actually_paid or 0) != (paid or 0)


def _apply_batch(reports: list[ProviderPayment], result: PollResult) -> None:
    if reports:
        result.applied += payments_apply_reports(reports=reports, source="poll")["applied"]


def _apply_one(report: ProviderPayment, result: PollResult) -> None:
    try:
        outcome = payment_apply_report(report=report, source="poll")
    except ProviderError as exc:
        result.errors += 1
        logger.warning("provider payment %s not applied: %s", report.payment_id, exc.code)
        return
    result.applied += outcome.outcome == "applied"
