"""Notification: one e-mail to the operators about one event, deduplicated by its key."""

from __future__ import annotations

from django.db import models

from payments.models.common import status_check


class NotificationKind(models.TextChoices):
    WITHDRAWAL_WAITING = "withdrawal_waiting", "A withdrawal waits for review"
    PAYOUT_FAILED = "payout_failed", "A payout failed"
    PAYMENT_IN_REVIEW = "payment_in_review", "A payment was put into review"
    FINDING = "finding", "Reconciliation found something"


class Notification(models.Model):
    Kind = NotificationKind

    key = models.CharField(
        max_length=200, unique=True, help_text="The event it is about: one e-mail per key."
    )
    kind = models.CharField(max_length=40, choices=NotificationKind.choices)
    subject = models.CharField(max_length=200)
    body = models.TextField()
    recipients = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["created_at"],
                condition=models.Q(sent_at__isnull=True),
                name="notification_unsent",
            )
        ]
        constraints = [status_check("kind", NotificationKind, "notification_kind_valid")]

    def __str__(self) -> str:
        return self.subject
