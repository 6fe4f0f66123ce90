"""Expiry follows the provider: a payment expires when NowPayments says so, and a partially paid
one reaches its outcome under the deposit policy within a bounded time."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from payments.errors import ProviderError, ProviderRejected
from payments.models import Payment
from payments.models.payment import PaymentStatus
from payments.services.deposits.moves import payment_move
from payments.services.deposits.policy import judge_underpayment
from payments.services.deposits.progress import payment_apply_report
from payments.services.providers.nowpayments.gateway import get_provider

logger = logging.getLogger(__name__)

EXPIRY_GRACE = timedelta(minutes=10)
# A payment we never managed to create at NowPayments: nobody can pay it.
UNREGISTERED_TTL = timedelta(days=1)
# NowPayments' documented lifetime of a payment (spec: 7 days), plus a margin: past it, a
# payment the provider no longer knows cannot be paid any more.
PROVIDER_LIFETIME = timedelta(days=7) + timedelta(days=1)


def payments_expire(*, limit: int = 200) -> dict[str, int]:
    """Ask NowPayments about pending payments past their expiry and apply what it says.

    A payment is expired here only when NowPayments reports it expired, when NowPayments does
    not know it and its lifetime is long over, or when it was never registered. Partially
    paid payments that NowPayments has left alone for PAYMENTS_PARTIAL_PAYMENT_FINAL_HOURS are
    settled by the underpayment policy.
    """
    now = timezone.now()
    due = list(
        Payment.objects.filter(status=PaymentStatus.PENDING)
        .filter(
            Q(expires_at__lt=now - EXPIRY_GRACE)
            | Q(provider_payment_id__isnull=True, created_at__lt=now - UNREGISTERED_TTL)
        )
        .order_by("provider_checked_at", "created_at")
        .values_list("pk", "provider_payment_id", "created_at")[:limit]
    )
    counts = {"due": len(due), "checked": 0, "expired": 0, "waiting": 0, "errors": 0}
    for payment_id, provider_id, created_at in due:
        if not provider_id:
            counts["expired"] += _expire_if_pending(payment_id, "never registered at NowPayments")
            continue
        try:
            report = get_provider().get_payment_status(provider_id)
        except ProviderRejected as exc:
            if created_at < now - PROVIDER_LIFETIME:
                counts["expired"] += _expire_if_pending(
                    payment_id, f"NowPayments no longer knows it ({exc.code})"
                )
            else:
                counts["errors"] += 1
            continue
        except ProviderError as exc:
            # Not knowing is no reason to expire money that may be on its way.
            counts["errors"] += 1
            logger.warning("payment %s not checked for expiry: %s", payment_id, exc.code)
            continue
        counts["checked"] += 1
        result = payment_apply_report(report=report, source="expiry-check")
        counts["expired"] += result.status == PaymentStatus.EXPIRED
        counts["waiting"] += result.status == PaymentStatus.PENDING
    counts.update(payments_finish_partial(limit=limit))
    return counts


def payments_finish_partial(*, limit: int = 200) -> dict[str, int]:
    """Settle partially paid payments NowPayments has not moved for the configured time."""
    hours = float(getattr(settings, "PAYMENTS_PARTIAL_PAYMENT_FINAL_HOURS", 24.0))
    cutoff = timezone.now() - timedelta(hours=hours)
    due = list(
        Payment.objects.filter(status=PaymentStatus.PARTIALLY_PAID, status_changed_at__lt=cutoff)
        .order_by("status_changed_at")
        .values_list("pk", "provider_payment_id")[:limit]
    )
    finished = 0
    for payment_id, provider_id in due:
        try:
            # One last look: the customer may have paid the rest meanwhile.
            result = payment_apply_report(
                report=get_provider().get_payment_status(provider_id or ""), source="partial-check"
            )
        except ProviderError as exc:
            logger.warning("partially paid %s not settled: %s", payment_id, exc.code)
            continue
        if result.status == PaymentStatus.PARTIALLY_PAID:
            finished += _finish_partial(payment_id)
    return {"partial_due": len(due), "partial_finished": finished}


def _finish_partial(payment_id: uuid.UUID) -> int:
    with transaction.atomic():
        payment = (
            Payment._base_manager.select_for_update(of=("self",))
            .select_related("currency")
            .get(pk=payment_id)
        )
        if payment.status != PaymentStatus.PARTIALLY_PAID or not payment.pay_amount:
            return 0
        verdict = judge_underpayment(
            payment, paid=payment.actual_amount or Decimal("0"), asked=payment.pay_amount
        )
        payment_move(
            payment_id=payment_id,
            status=verdict.status,
            reason=verdict.review_reason,
            credit_usd=verdict.credit_usd,
        )
    logger.info("partially paid %s settled by policy: %s", payment_id, verdict.status)
    return 1


def _expire_if_pending(payment_id: uuid.UUID, reason: str) -> int:
    with transaction.atomic():
        payment = Payment._base_manager.select_for_update().get(pk=payment_id)
        if payment.status != PaymentStatus.PENDING:
            return 0
        payment_move(payment_id=payment_id, status=PaymentStatus.EXPIRED, reason=reason)
    logger.info("payment %s expired: %s", payment_id, reason)
    return 1
