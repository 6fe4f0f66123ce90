"""PaymentResolution: an operator's decision on a payment in review, with who asked and who
approved (crediting in full needs a second operator)."""

from __future__ import annotations

from django.db import models

from payments.models.common import DecisionOutcome, FourEyesDecision, status_check


class ResolutionAction(models.TextChoices):
    CREDIT_RECEIVED = "credit_received", "Credit the received amount"
    CREDIT_FULL = "credit_full", "Credit the price in full"
    REJECT = "reject", "Reject (credit nothing)"


class PaymentResolution(FourEyesDecision):
    Action = ResolutionAction
    Outcome = DecisionOutcome

    payment = models.ForeignKey(
        "payments.Payment", on_delete=models.PROTECT, related_name="resolutions"
    )
    action = models.CharField(max_length=20, choices=ResolutionAction.choices)
    credit_usd = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)

    class Meta(FourEyesDecision.Meta):
        constraints = [
            status_check("action", ResolutionAction, "resolution_action_valid"),
            status_check("outcome", DecisionOutcome, "resolution_outcome_valid"),
            models.UniqueConstraint(
                fields=["payment"],
                condition=models.Q(outcome=DecisionOutcome.PENDING),
                name="resolution_one_pending_per_payment",
            ),
            # Crediting (what was received, or in full): nobody approves what they requested.
            models.CheckConstraint(
                condition=models.Q(decided_by__isnull=True)
                | models.Q(action=ResolutionAction.REJECT)
                | ~models.Q(decided_by=models.F("requested_by")),
                name="resolution_credit_second_operator",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_action_display()} ({self.get_outcome_display()})"
