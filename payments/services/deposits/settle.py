"""The settlement routine: credit completed payments exactly once, in batches or one by one."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import asdict

from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef

from payments import ledger
from payments.errors import PaymentsError
from payments.models import Payment, Transaction
from payments.models.payment import PaymentStatus
from payments.models.transaction import TransactionType

logger = logging.getLogger(__name__)


def unsettled_payment_ids(*, limit: int = 50_000) -> list[uuid.UUID]:
    """Completed payments that have no DEPOSIT posting yet, grouped by user.

    Grouped so that a batch of them touches few balance rows, and concurrent batches rarely
    wait on each other's locks.
    """
    deposit = Transaction.objects.filter(
        payment_id=OuterRef("pk"), transaction_type=TransactionType.DEPOSIT
    )
    return list(
        Payment.objects.filter(status=PaymentStatus.COMPLETED)
        .filter(~Exists(deposit))
        .order_by("user_id", "completed_at")
        .values_list("pk", flat=True)[:limit]
    )


def payments_settle_many(*, payment_ids: Iterable[uuid.UUID]) -> int:
    """Credit every completed payment among ``payment_ids`` that has no deposit yet.

    One database transaction for the batch: the payments are locked in id order, those
    already credited are skipped, and the deposits go through ``ledger.post_many``. Should the
    batch fail as a whole (a concurrent settle won a race on one of them), each payment is
    settled on its own instead. Returns how many payments have their deposit afterwards.
    """
    ids = sorted(set(payment_ids))
    try:
        with transaction.atomic():
            payments = list(
                Payment.objects.select_for_update()
                .filter(pk__in=ids, status=PaymentStatus.COMPLETED)
                .order_by("pk")
                .only("pk", "user_id", "amount_usd", "internal_payment_id", "provider_payment_id")
            )
            credited = set(
                Transaction.objects.filter(
                    payment_id__in=[p.pk for p in payments],
                    transaction_type=TransactionType.DEPOSIT,
                ).values_list("payment_id", flat=True)
            )
            ledger.post_many([deposit_posting(p) for p in payments if p.pk not in credited])
            return len(payments)
    except (IntegrityError, PaymentsError):
        logger.warning("settlement batch of %s fell back to one by one", len(ids))
    return sum(payment_settle(payment_id=payment_id) is not None for payment_id in ids)


@transaction.atomic
def payment_settle(*, payment_id: uuid.UUID) -> Transaction | None:
    """Credit a completed payment exactly once; any other status credits nothing."""
    payment = Payment.objects.select_for_update().get(pk=payment_id)
    if payment.status != PaymentStatus.COMPLETED:
        return None
    return settle_locked(payment)


def deposit_posting(payment: Payment) -> ledger.Posting:
    """The one DEPOSIT posting a completed payment gets."""
    return ledger.Posting(
        user_id=payment.user_id,
        kind=TransactionType.DEPOSIT,
        amount_usd=payment.credited_amount_usd,
        idempotency_key=f"payment:{payment.pk}:deposit",
        description=f"Payment completed - {payment.internal_payment_id}",
        metadata={"provider_payment_id": payment.provider_payment_id or ""},
        payment_id=payment.pk,
    )


def settle_locked(payment: Payment) -> Transaction:
    return ledger.post(**asdict(deposit_posting(payment)))
