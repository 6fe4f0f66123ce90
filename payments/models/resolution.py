"""PaymentResolution: an operator's decision on a payment in review, with who asked and who
approved (crediting in full needs a second operator)."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from payments.models.common import DecisionOutcome, status_check


class ResolutionAction(models.TextChoices):
    CREDIT_RECEIVED = "credit_received", "Credit the received amount"
    CREDIT_FULL = "credit_full", "Credit the price in full"
    REJECT = "reject", "Reject (credit nothing)"


class PaymentResolution(models.Model):
    Action = ResolutionAction
    Outcome = DecisionOutcome

    payment = models.ForeignKey(
        "payments.Payment", on_delete=models.PROTECT, related_name="resolutions"
    )
    action = models.CharField(max_length=20, choices=ResolutionAction.choices)
    reason = models.TextField()
    credit_usd = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    requested_at = models.DateTimeField(auto_now_add=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(
        max_length=20, choices=DecisionOutcome.choices, default=DecisionOutcome.PENDING
    )

    class Meta:
        ordering = ["-requested_at"]
        constraints = [
            status_check("action", ResolutionAction, "resolution_action_valid"),
            status_check("outcome", DecisionOutcome, "resolution_outcome_valid"),
            models.UniqueConstraint(
                fields=["payment"],
                condition=models.Q(outcome=DecisionOutcome.PENDING),
                name="resolution_one_pending_per_payment",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_action_display()} ({self.get_outcome_display()})"
