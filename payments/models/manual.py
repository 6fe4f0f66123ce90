"""ManualAdjustment: money an operator asks to credit or debit by hand, posted only once a
supervisor approves it (four eyes)."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from payments.models.common import DecisionOutcome, FourEyesDecision, status_check


class ManualKind(models.TextChoices):
    BONUS = "bonus", "Bonus (a credit)"
    ADJUSTMENT = "adjustment", "Adjustment (a credit or a debit)"


class ManualAdjustment(FourEyesDecision):
    """One request for manual money; ``transaction`` is its posting once applied."""

    Kind = ManualKind
    Outcome = DecisionOutcome

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="manual_adjustments"
    )
    kind = models.CharField(max_length=20, choices=ManualKind.choices)
    amount_usd = models.DecimalField(
        max_digits=12,
        decimal_places=2,
        help_text="Positive credits the user, negative debits them (adjustments only).",
    )
    transaction = models.OneToOneField(
        "payments.Transaction",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="manual_adjustment",
    )
    decision_notes = models.CharField(max_length=500, blank=True)

    class Meta(FourEyesDecision.Meta):
        verbose_name = "manual credit or debit"
        verbose_name_plural = "manual credits and debits"
        constraints = [
            status_check("kind", ManualKind, "manual_kind_valid"),
            status_check("outcome", DecisionOutcome, "manual_outcome_valid"),
            models.CheckConstraint(condition=~models.Q(reason=""), name="manual_has_reason"),
            models.CheckConstraint(condition=~models.Q(amount_usd=0), name="manual_amount_nonzero"),
            models.CheckConstraint(
                condition=~models.Q(kind=ManualKind.BONUS) | models.Q(amount_usd__gt=0),
                name="manual_bonus_positive",
            ),
            # Nobody approves what they requested; a request is decided at most once.
            models.CheckConstraint(
                condition=~models.Q(outcome=DecisionOutcome.APPLIED)
                | (
                    models.Q(decided_by__isnull=False)
                    & ~models.Q(decided_by=models.F("requested_by"))
                ),
                name="manual_second_operator",
            ),
            # Posted exactly when applied.
            models.CheckConstraint(
                condition=models.Q(outcome=DecisionOutcome.APPLIED, transaction__isnull=False)
                | (~models.Q(outcome=DecisionOutcome.APPLIED) & models.Q(transaction__isnull=True)),
                name="manual_posted_iff_applied",
            ),
        ]
        permissions = [
            ("request_manualadjustment", "Can request a manual credit or debit"),
            ("approve_manualadjustment", "Can approve a manual credit or debit"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.amount_usd} for {self.user} ({self.outcome})"
