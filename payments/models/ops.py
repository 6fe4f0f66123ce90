"""Operations records: periodic job runs (leases) and ledger drift found by reconciliation."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class PeriodicRun(models.Model):
    """One row per periodic job: who runs it now, when it last ran, and how it went.

    It is also the lease that keeps a job from overlapping itself, or from running twice for
    one tick when two beat processes were started by mistake.
    """

    name = models.CharField(max_length=100, unique=True)
    holder = models.CharField(max_length=200, blank=True)
    running_until = models.DateTimeField(null=True, blank=True)
    last_started_at = models.DateTimeField(null=True, blank=True)
    last_finished_at = models.DateTimeField(null=True, blank=True)
    run_count = models.PositiveBigIntegerField(default=0)
    skipped_count = models.PositiveBigIntegerField(default=0)
    last_result = models.JSONField(default=dict, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class DriftKind(models.TextChoices):
    BALANCE_MISMATCH = "balance_mismatch", "Balance differs from the sum of postings"
    CHAIN_BROKEN = "chain_broken", "Ledger chain broken"
    UNSETTLED_PAYMENT = "unsettled_payment", "Completed payment without a deposit"
    DEPOSIT_WITHOUT_COMPLETION = "deposit_not_completed", "Deposit for a payment not completed"
    LATE_PROVIDER_REPORT = "late_provider_report", "Money reported on a closed payment"
    LOST_PAYOUT = "lost_payout", "Withdrawal processing with no payout found"
    PROVIDER_STATUS_DIFFERS = "provider_status_differs", "NowPayments shows another status"
    PROVIDER_AMOUNT_DIFFERS = "provider_amount_differs", "NowPayments shows another amount paid"
    PROVIDER_ASSET_DIFFERS = "provider_asset_differs", "NowPayments shows another pay currency"
    PROVIDER_PAYMENT_MISSING = "provider_payment_missing", "NowPayments does not know the payment"
    PROVIDER_PAYOUT_DIFFERS = "provider_payout_differs", "NowPayments payout differs (status/hash)"
    PROVIDER_PAYOUT_MISSING = "provider_payout_missing", "NowPayments does not know the payout"
    REDEPOSIT = "redeposit", "Re-deposit to a payment's address (credit by hand if right)"
    DEPOSIT_MISMATCH = "deposit_mismatch", "Deposit differs from its payment (amount or user)"
    DEPOSIT_WITHOUT_PAYMENT = "deposit_without_payment", "Deposit not tied to a payment"
    HOLD_MISSING = "hold_missing", "Withdrawal without its hold posting"
    HOLD_MISMATCH = "hold_mismatch", "Withdrawal hold differs from the request (amount or user)"
    REFUND_MISMATCH = "refund_mismatch", "Refund differs from its withdrawal (amount or user)"
    REFUND_ON_COMPLETED = "refund_on_completed", "Withdrawal both completed and refunded"
    REFUND_MISSING = "refund_missing", "Rejected, cancelled or failed withdrawal not refunded"
    REFUND_ON_OPEN = "refund_on_open", "Refund on a withdrawal still open"
    BALANCE_ROW_MISSING = "balance_row_missing", "User with postings but no balance row"
    TOTALS_MISMATCH = "totals_mismatch", "Deposited/withdrawn totals differ from the postings"
    PAYMENT_IN_REVIEW = "payment_in_review", "Payment waits for an operator (mismatch or policy)"
    OVERPAYMENT = "overpayment", "Paid more than the price (the excess is not credited)"
    PAYMENT_REVERSED = "payment_reversed", "A credited deposit was refunded and reversed"
    RECEIVABLE_OPEN = "receivable_open", "User owes what a reversed deposit could not take back"
    FORCED_OVERRIDE = "forced_override", "Withdrawal forced completed or failed by two operators"


class LedgerDrift(models.Model):
    """Something reconciliation found wrong. Never fixed automatically: an operator decides."""

    Kind = DriftKind

    kind = models.CharField(max_length=40, choices=DriftKind.choices)
    subject = models.CharField(max_length=100, help_text="What it is about, e.g. user:12.")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True
    )
    payment = models.ForeignKey("payments.Payment", on_delete=models.PROTECT, null=True, blank=True)
    expected = models.CharField(max_length=100, blank=True)
    actual = models.CharField(max_length=100, blank=True)
    detail = models.TextField(blank=True)
    first_seen_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(auto_now=True)
    times_seen = models.PositiveIntegerField(default=1)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    resolution_notes = models.TextField(blank=True)

    class Meta:
        ordering = ["-last_seen_at"]
        verbose_name = "ledger drift"
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "subject"],
                condition=models.Q(resolved_at__isnull=True),
                name="drift_one_open_per_subject",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.subject}"
