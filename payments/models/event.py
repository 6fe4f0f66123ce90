"""ProviderEvent: every verified NowPayments IPN, stored before it is applied."""

from __future__ import annotations

from django.db import models


class EventOutcome(models.TextChoices):
    RECEIVED = "received", "Received"
    APPLIED = "applied", "Applied"
    STALE = "stale", "Stale (status already further on)"
    UNCHANGED = "unchanged", "Unchanged"
    UNKNOWN_PAYMENT = "unknown_payment", "Unknown payment"
    IGNORED = "ignored", "Ignored"
    ERROR = "error", "Error"


class ProviderEvent(models.Model):
    Outcome = EventOutcome

    provider = models.CharField(max_length=32, default="nowpayments")
    kind = models.CharField(max_length=20, help_text="payment or payout")
    dedupe_key = models.CharField(max_length=128, unique=True)
    provider_object_id = models.CharField(max_length=64, db_index=True)
    provider_status = models.CharField(max_length=32, blank=True)
    payment = models.ForeignKey(
        "payments.Payment", on_delete=models.PROTECT, null=True, blank=True, related_name="events"
    )
    body = models.TextField(help_text="The request body exactly as received.")
    signature = models.CharField(max_length=256)
    outcome = models.CharField(
        max_length=20, choices=EventOutcome.choices, default=EventOutcome.RECEIVED
    )
    detail = models.CharField(max_length=500, blank=True)
    deliveries = models.PositiveIntegerField(default=1)
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at"]
        indexes = [
            models.Index(fields=["outcome", "received_at"], name="event_outcome_received"),
            # The admin's default order (newest first, then -pk), read backwards.
            models.Index(fields=["received_at", "id"], name="event_received_id"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.provider_object_id} {self.provider_status} ({self.outcome})"
