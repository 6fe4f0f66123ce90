"""Receivable: what a user owes after a credited deposit was refunded and the balance fell short."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models

from payments.money import format_usd


class Receivable(models.Model):
    """Owed by the user; collected from later credits. While open, withdrawals are refused."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="receivables"
    )
    payment = models.OneToOneField(
        "payments.Payment", on_delete=models.PROTECT, related_name="receivable"
    )
    amount_usd = models.DecimalField(
        max_digits=12, decimal_places=2, help_text="Owed when the deposit was reversed."
    )
    collected_usd = models.DecimalField(max_digits=12, decimal_places=2, default=Decimal("0.00"))
    created_at = models.DateTimeField(auto_now_add=True)
    settled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(amount_usd__gt=0), name="receivable_amount_pos"
            ),
            models.CheckConstraint(
                condition=models.Q(collected_usd__gte=0)
                & models.Q(collected_usd__lte=models.F("amount_usd")),
                name="receivable_collected_within_amount",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} owes {format_usd(self.outstanding_usd)} USD"

    @property
    def outstanding_usd(self) -> Decimal:
        return self.amount_usd - self.collected_usd
