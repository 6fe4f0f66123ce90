"""The settlement safety net: find completed payments without a deposit and credit them."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable

from django.db.models import Exists, OuterRef

from payments.models import Payment, Transaction
from payments.models.payment import PaymentStatus
from payments.models.transaction import TransactionType
from payments.services.payments import payment_settle

logger = logging.getLogger(__name__)


def unsettled_payment_ids(*, limit: int = 5000) -> list[uuid.UUID]:
    """Completed payments that have no DEPOSIT posting yet, oldest first."""
    deposit = Transaction.objects.filter(
        payment_id=OuterRef("pk"), transaction_type=TransactionType.DEPOSIT
    )
    return list(
        Payment.objects.filter(status=PaymentStatus.COMPLETED)
        .filter(~Exists(deposit))
        .order_by("completed_at")
        .values_list("pk", flat=True)[:limit]
    )


def payments_settle_many(*, payment_ids: Iterable[uuid.UUID]) -> int:
    """Settle each payment in its own transaction; returns how many have their deposit."""
    settled = 0
    for payment_id in payment_ids:
        if payment_settle(payment_id=payment_id) is not None:
            settled += 1
    return settled
