"""Expiry: a pending payment past its expiry is closed, after one last look at NowPayments."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from payments.errors import ProviderError
from payments.models import Payment
from payments.models.payment import PaymentStatus
from payments.services.deposits.progress import payment_apply_report, payment_move
from payments.services.providers.nowpayments.gateway import get_provider

logger = logging.getLogger(__name__)

EXPIRY_GRACE = timedelta(minutes=10)
UNREGISTERED_TTL = timedelta(days=1)


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
            payment = Payment._base_manager.select_for_update().get(pk=payment_id)
            if payment.status == PaymentStatus.PENDING:
                payment_move(payment_id=payment_id, status=PaymentStatus.EXPIRED)
                expired += 1
                logger.info("payment %s expired", payment_id)
    return {"due": len(due), "checked": checked, "expired": expired, "errors": errors}
