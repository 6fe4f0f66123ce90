"""WithdrawalRequest: a user's request to be paid out, approved by an operator."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Upper

from payments.models.common import (
    DecisionOutcome,
    FourEyesDecision,
    generate_public_id,
    orm_handler,
    status_check,
)
from payments.money import format_usd


class WithdrawalStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    PROCESSING = "processing", "Processing"
    COMPLETED = "completed", "Completed"
    REJECTED = "rejected", "Rejected"
    CANCELLED = "cancelled", "Cancelled"
    FAILED = "failed", "Failed"


# Which statuses each status may move to, and the statuses that give the money back.
WITHDRAWAL_TRANSITIONS: dict[str, frozenset[str]] = {
    WithdrawalStatus.PENDING: frozenset(
        {WithdrawalStatus.APPROVED, WithdrawalStatus.REJECTED, WithdrawalStatus.CANCELLED}
    ),
    WithdrawalStatus.APPROVED: frozenset(
        {WithdrawalStatus.PROCESSING, WithdrawalStatus.COMPLETED, WithdrawalStatus.REJECTED}
    ),
    WithdrawalStatus.PROCESSING: frozenset({WithdrawalStatus.COMPLETED, WithdrawalStatus.FAILED}),
    WithdrawalStatus.COMPLETED: frozenset(),
    WithdrawalStatus.REJECTED: frozenset(),
    WithdrawalStatus.CANCELLED: frozenset(),
    WithdrawalStatus.FAILED: frozenset(),
}
REFUNDED_STATUSES = frozenset(
    {WithdrawalStatus.REJECTED, WithdrawalStatus.CANCELLED, WithdrawalStatus.FAILED}
)


_SERVICE_MESSAGE = (
    "Withdrawal requests change only through their lifecycle: create them one by one and "
    "save them (or call payments.services.withdrawals), so the hold and the rules apply."
)


class WithdrawalRequestQuerySet(models.QuerySet["WithdrawalRequest"]):
    """Bulk writes would skip the hold, the refund and the transition rules: refused."""

    def update(self, **kwargs: Any) -> int:
        raise ValidationError(_SERVICE_MESSAGE)

    def bulk_update(self, *args: Any, **kwargs: Any) -> int:
        raise ValidationError(_SERVICE_MESSAGE)

    def bulk_create(self, *args: Any, **kwargs: Any) -> list[WithdrawalRequest]:
        raise ValidationError(_SERVICE_MESSAGE)

    def delete(self) -> tuple[int, dict[str, int]]:
        raise ValidationError("Withdrawal requests are kept for the audit trail.")


class WithdrawalRequest(models.Model):
    Status = WithdrawalStatus

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="withdrawal_requests"
    )
    internal_withdrawal_id = models.CharField(max_length=40, unique=True, editable=False)
    amount_usd = models.DecimalField(
        max_digits=12, decimal_places=2, help_text="Debited from the balance; fees come out of it."
    )
    currency = models.ForeignKey("payments.Currency", on_delete=models.PROTECT)
    wallet_address = models.CharField(max_length=255)
    wallet_extra_id = models.CharField(max_length=255, blank=True, help_text="Memo / tag.")
    network_fee_usd = models.DecimalField(max_digits=12, decimal_places=2, default=Decimal("0"))
    service_fee_usd = models.DecimalField(max_digits=12, decimal_places=2, default=Decimal("0"))
    status = models.CharField(
        max_length=20, choices=WithdrawalStatus.choices, default=WithdrawalStatus.PENDING
    )
    transaction_hash = models.CharField(max_length=255, blank=True)
    admin_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="reviewed_withdrawals",
    )
    admin_notes = models.TextField(blank=True)
    failure_reason = models.CharField(max_length=500, blank=True)
    rejection_reason = models.CharField(
        max_length=500, blank=True, help_text="Why an operator rejected it; shown to the user."
    )
    provider_payout_id = models.CharField(max_length=64, blank=True)
    provider_batch_id = models.CharField(max_length=64, blank=True)
    provider_data = models.JSONField(default=dict, blank=True)
    # A payout call that keeps failing is backed off on its own row (the sweeps go on with
    # the others): consecutive failures, when it is tried next, and the last error.
    payout_attempts = models.PositiveIntegerField(
        default=0, help_text="Consecutive failed calls to NowPayments for this payout."
    )
    payout_retry_at = models.DateTimeField(
        null=True, blank=True, help_text="The payout sweeps leave it alone until then."
    )
    payout_last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    approved_at = models.DateTimeField(null=True, blank=True)
    processing_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    rejected_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)

    objects = WithdrawalRequestQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "created_at"], name="withdrawal_status_created"),
            # The withdrawal review looks up who else used an address, ignoring case.
            models.Index(Upper("wallet_address"), name="withdrawal_address_upper"),
        ]
        constraints = [
            status_check("status", WithdrawalStatus, "withdrawal_status_valid"),
            models.CheckConstraint(
                condition=models.Q(network_fee_usd__gte=0) & models.Q(service_fee_usd__gte=0),
                name="withdrawal_fees_nonneg",
            ),
            models.CheckConstraint(
                condition=models.Q(
                    amount_usd__gt=models.F("network_fee_usd") + models.F("service_fee_usd")
                ),
                name="withdrawal_amount_covers_fees",
            ),
            models.CheckConstraint(
                condition=~models.Q(status=WithdrawalStatus.COMPLETED)
                | ~models.Q(transaction_hash=""),
                name="withdrawal_completed_has_hash",
            ),
        ]
        permissions = [
            ("approve_withdrawalrequest", "Can approve or reject withdrawal requests"),
            ("override_withdrawalrequest", "Can approve a forced withdrawal override"),
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loaded_status: str | None = None

    def __str__(self) -> str:
        return f"{self.internal_withdrawal_id} {self.amount_display} {self.status}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self.internal_withdrawal_id:
            self.internal_withdrawal_id = generate_public_id("WD")
        # The seed's ORM workflow (create, then set status and save) goes through the same
        # lifecycle as the admin and the API (payments.orm_compat): the hold, the refund and
        # every rule apply.
        if self._state.adding:
            orm_handler("withdrawal.create")(self)
        else:
            orm_handler("withdrawal.save")(self, previous_status=self._loaded_status)
        self._loaded_status = self.status

    @classmethod
    def from_db(cls, db: Any, field_names: Any, values: Any) -> WithdrawalRequest:
        instance = super().from_db(db, field_names, values)
        instance._loaded_status = instance.__dict__.get("status")
        return instance

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise ValidationError("Withdrawal requests are kept for the audit trail.")

    @property
    def total_fee_usd(self) -> Decimal:
        return self.network_fee_usd + self.service_fee_usd

    @property
    def final_amount_usd(self) -> Decimal:
        """What the user receives: the amount less every fee."""
        return self.amount_usd - self.total_fee_usd

    @property
    def amount_display(self) -> str:
        return f"{format_usd(self.amount_usd)} USD"

    @property
    def is_pending(self) -> bool:
        return self.status == WithdrawalStatus.PENDING

    @property
    def can_be_cancelled(self) -> bool:
        return self.status == WithdrawalStatus.PENDING

    @property
    def is_final(self) -> bool:
        return not WITHDRAWAL_TRANSITIONS[WithdrawalStatus(self.status)]


class OverrideAction(models.TextChoices):
    FAIL = "fail", "Force failed (refunds the hold)"
    COMPLETE = "complete", "Force completed"


class WithdrawalOverride(FourEyesDecision):
    """An operator's request to complete or fail a withdrawal without the provider's word.

    It is applied only once a second operator holding the override permission approves it
    (payments.services.withdrawals.overrides, the only writer of these rows).
    """

    Action = OverrideAction
    Outcome = DecisionOutcome

    withdrawal = models.ForeignKey(
        WithdrawalRequest, on_delete=models.PROTECT, related_name="overrides"
    )
    action = models.CharField(max_length=20, choices=OverrideAction.choices)
    transaction_hash = models.CharField(max_length=255, blank=True)
    decision_notes = models.CharField(max_length=500, blank=True)

    class Meta(FourEyesDecision.Meta):
        constraints = [
            status_check("action", OverrideAction, "withdrawal_override_action_valid"),
            status_check("outcome", DecisionOutcome, "withdrawal_override_outcome_valid"),
            models.CheckConstraint(
                condition=~models.Q(reason=""), name="withdrawal_override_has_reason"
            ),
            models.CheckConstraint(
                condition=~models.Q(action=OverrideAction.COMPLETE)
                | ~models.Q(transaction_hash=""),
                name="withdrawal_override_complete_has_hash",
            ),
            # Nobody approves (or refuses) what they requested.
            models.CheckConstraint(
                condition=models.Q(decided_by__isnull=True)
                | ~models.Q(decided_by=models.F("requested_by")),
                name="withdrawal_override_second_operator",
            ),
            models.UniqueConstraint(
                fields=["withdrawal"],
                condition=models.Q(outcome=DecisionOutcome.PENDING),
                name="withdrawal_override_one_pending",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_action_display()} of withdrawal {self.withdrawal_id} ({self.outcome})"
