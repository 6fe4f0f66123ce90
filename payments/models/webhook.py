"""Outgoing webhooks to the host application: endpoints, the event outbox and its deliveries."""

from __future__ import annotations

import uuid

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models

from payments.models.common import status_check


class WebhookEventType(models.TextChoices):
    PAYMENT_CREDITED = "payment.credited", "Payment credited"
    PAYMENT_IN_REVIEW = "payment.in_review", "Payment in review"
    PAYMENT_REVERSED = "payment.reversed", "Payment reversed"
    WITHDRAWAL_APPROVED = "withdrawal.approved", "Withdrawal approved"
    WITHDRAWAL_COMPLETED = "withdrawal.completed", "Withdrawal completed"
    WITHDRAWAL_FAILED = "withdrawal.failed", "Withdrawal failed"
    WITHDRAWAL_REJECTED = "withdrawal.rejected", "Withdrawal rejected"


class WebhookEndpoint(models.Model):
    """A URL of the host application that receives signed events."""

    url = models.URLField(max_length=500)
    secret = models.CharField(max_length=200, help_text="Signs every delivery (HMAC-SHA256).")
    events = models.JSONField(
        default=list, blank=True, help_text="Event types it receives; empty: all of them."
    )
    is_active = models.BooleanField(default=True)
    description = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["url"]

    def __str__(self) -> str:
        return self.url

    def wants(self, event_type: str) -> bool:
        return self.is_active and (not self.events or event_type in self.events)


class WebhookEvent(models.Model):
    """The outbox: one row per event, written in the transaction of the change it reports."""

    Type = WebhookEventType

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    event_type = models.CharField(max_length=40, choices=WebhookEventType.choices)
    dedupe_key = models.CharField(
        max_length=200, unique=True, help_text="Its cause: one event per cause."
    )
    payload = models.JSONField(default=dict, encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [status_check("event_type", WebhookEventType, "webhook_event_type_valid")]

    def __str__(self) -> str:
        return f"{self.event_type} {self.dedupe_key}"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Gave up"


class WebhookDelivery(models.Model):
    """One event to one endpoint: retried with backoff until delivered or given up."""

    Status = DeliveryStatus

    event = models.ForeignKey(WebhookEvent, on_delete=models.PROTECT, related_name="deliveries")
    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.PROTECT, related_name="deliveries"
    )
    status = models.CharField(
        max_length=20, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_until = models.DateTimeField(
        null=True, blank=True, help_text="A sender holds it until then (a dead one lets go)."
    )
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["event", "endpoint"], name="webhook_delivery_event_endpoint_unique"
            ),
            status_check("status", DeliveryStatus, "webhook_delivery_status_valid"),
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=models.Q(status="pending"),
                name="webhook_delivery_due",
            )
        ]

    def __str__(self) -> str:
        return f"{self.event_id} -> {self.endpoint_id} ({self.status})"


class WebhookAttempt(models.Model):
    """The delivery log: one row per HTTP attempt."""

    delivery = models.ForeignKey(
        WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log"
    )
    attempted_at = models.DateTimeField(auto_now_add=True)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    response_excerpt = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-attempted_at"]

    def __str__(self) -> str:
        return f"{self.delivery_id} at {self.attempted_at:%Y-%m-%d %H:%M:%S}"
