"""Transaction: one immutable line of a user's USD ledger."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models

from payments.models.common import orm_handler, status_check
from payments.money import format_usd_signed

IMMUTABLE_MESSAGE = (
    "Transactions are immutable; post a correcting ADJUSTMENT or REFUND transaction instead."
)


class TransactionType(models.TextChoices):
    DEPOSIT = "deposit", "Deposit"
    WITHDRAWAL = "withdrawal", "Withdrawal"
    PAYMENT = "payment", "Payment"
    REFUND = "refund", "Refund"
    FEE = "fee", "Fee"
    BONUS = "bonus", "Bonus"
    ADJUSTMENT = "adjustment", "Adjustment"
    REVERSAL = "reversal", "Reversal of a refunded deposit"


CREDIT_TYPES = frozenset({TransactionType.DEPOSIT, TransactionType.REFUND, TransactionType.BONUS})
DEBIT_TYPES = frozenset(
    {
        TransactionType.WITHDRAWAL,
        TransactionType.PAYMENT,
        TransactionType.FEE,
        TransactionType.REVERSAL,
    }
)

_TYPE_COLORS = {
    TransactionType.DEPOSIT: "success",
    TransactionType.WITHDRAWAL: "danger",
    TransactionType.PAYMENT: "primary",
    TransactionType.REFUND: "info",
    TransactionType.FEE: "warning",
    TransactionType.BONUS: "success",
    TransactionType.ADJUSTMENT: "secondary",
    TransactionType.REVERSAL: "danger",
}


class TransactionQuerySet(models.QuerySet["Transaction"]):
    def update(self, **kwargs: Any) -> int:
        raise ValidationError(IMMUTABLE_MESSAGE)

    def delete(self) -> tuple[int, dict[str, int]]:
        raise ValidationError(IMMUTABLE_MESSAGE)

    def bulk_update(self, *args: Any, **kwargs: Any) -> int:
        raise ValidationError(IMMUTABLE_MESSAGE)

    def bulk_create(self, *args: Any, **kwargs: Any) -> list[Transaction]:
        raise ValidationError("Post transactions one by one through payments.ledger.post().")


class Transaction(models.Model):
    TransactionType = TransactionType

    # No index of its own: txn_user_sequence_unique (user, sequence) serves every lookup by user.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="ledger_transactions",
        db_index=False,
    )
    transaction_type = models.CharField(max_length=20, choices=TransactionType.choices)
    amount_usd = models.DecimalField(
        max_digits=14, decimal_places=2, help_text="Positive for a credit, negative for a debit."
    )
    balance_after = models.DecimalField(max_digits=14, decimal_places=2)
    sequence = models.PositiveBigIntegerField(
        editable=False, help_text="Position in the user's ledger, from 1 without gaps."
    )
    payment = models.ForeignKey(
        "payments.Payment",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="transactions",
    )
    withdrawal_request = models.ForeignKey(
        "payments.WithdrawalRequest",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="transactions",
    )
    description = models.CharField(max_length=500, blank=True)
    metadata = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    # Unique by txn_idempotency_key_unique (a constraint: no prefix-search copy of the index).
    idempotency_key = models.CharField(max_length=200, editable=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects = TransactionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["transaction_type", "created_at"], name="txn_type_created")]
        constraints = [
            status_check("transaction_type", TransactionType, "txn_type_valid"),
            models.UniqueConstraint(fields=["user", "sequence"], name="txn_user_sequence_unique"),
            models.UniqueConstraint(fields=["idempotency_key"], name="txn_idempotency_key_unique"),
            models.CheckConstraint(condition=models.Q(sequence__gte=1), name="txn_sequence_pos"),
            models.CheckConstraint(
                condition=models.Q(balance_after__gte=0), name="txn_balance_after_nonneg"
            ),
            models.CheckConstraint(condition=~models.Q(amount_usd=0), name="txn_amount_nonzero"),
            models.CheckConstraint(
                condition=~models.Q(transaction_type__in=CREDIT_TYPES) | models.Q(amount_usd__gt=0),
                name="txn_credit_positive",
            ),
            models.CheckConstraint(
                condition=~models.Q(transaction_type__in=DEBIT_TYPES) | models.Q(amount_usd__lt=0),
                name="txn_debit_negative",
            ),
            # Exactly-once settlement and withdrawal holds, whatever the idempotency key says.
            models.UniqueConstraint(
                fields=["payment"],
                condition=models.Q(transaction_type=TransactionType.DEPOSIT),
                name="txn_one_deposit_per_payment",
            ),
            models.UniqueConstraint(
                fields=["payment"],
                condition=models.Q(transaction_type=TransactionType.REVERSAL),
                name="txn_one_reversal_per_payment",
            ),
            models.UniqueConstraint(
                fields=["withdrawal_request"],
                condition=models.Q(transaction_type=TransactionType.WITHDRAWAL),
                name="txn_one_debit_per_withdrawal",
            ),
            models.UniqueConstraint(
                fields=["withdrawal_request"],
                condition=models.Q(transaction_type=TransactionType.REFUND),
                name="txn_one_refund_per_withdrawal",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_transaction_type_display()} {self.amount_display} ({self.user})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise ValidationError(IMMUTABLE_MESSAGE)
        # Transaction(...).save() and Transaction.objects.create(...) go through the locked
        # ledger path (payments.orm_compat), which fills sequence and checks balance_after.
        orm_handler("transaction.create")(self)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise ValidationError(IMMUTABLE_MESSAGE)

    @property
    def is_credit(self) -> bool:
        return self.amount_usd > 0

    @property
    def is_debit(self) -> bool:
        return self.amount_usd < 0

    @property
    def amount_display(self) -> str:
        return format_usd_signed(self.amount_usd)

    @property
    def type_color(self) -> str:
        return _TYPE_COLORS.get(TransactionType(self.transaction_type), "secondary")
