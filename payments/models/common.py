"""Pieces shared by the payments models: provider choices, id generation, ORM handlers."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models
from django.utils import timezone


class DecisionOutcome(models.TextChoices):
    """Where a four-eyes decision stands (withdrawal overrides, payment review decisions)."""

    PENDING = "pending", "Waiting for a second operator"
    APPLIED = "applied", "Applied"
    REFUSED = "refused", "Refused"


class FourEyesDecision(models.Model):
    """A decision one operator requests and, where it moves money, another decides."""

    reason = models.TextField()
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
        abstract = True
        ordering = ["-requested_at"]


class Provider(models.TextChoices):
    NOWPAYMENTS = "nowpayments", "NowPayments"


def generate_public_id(prefix: str) -> str:
    """PREFIX_YYYYMMDDHHMMSS_xxxxxxxx: sortable by time, unique by its random tail."""
    stamp = timezone.now().strftime("%Y%m%d%H%M%S")
    return f"{prefix}_{stamp}_{uuid.uuid4().hex[:8]}"


def status_check(
    field: str, choices: type[models.TextChoices], name: str
) -> models.CheckConstraint:
    """A CHECK constraint that the stored status is one of the choices."""
    return models.CheckConstraint(
        condition=models.Q(**{f"{field}__in": choices.values}),
        name=name,
    )


# The seed's ORM entry points (``Transaction.objects.create``, ``WithdrawalRequest.save``,
# ``Payment.save`` after a status change) must run the services' rules, but models import
# nothing above them: ``payments.orm_compat`` connects a handler to each name at ready().
_ORM_HANDLERS: dict[str, Callable[..., Any]] = {}


def connect_orm_handler(name: str, handler: Callable[..., Any]) -> None:
    _ORM_HANDLERS[name] = handler


def orm_handler(name: str) -> Callable[..., Any]:
    try:
        return _ORM_HANDLERS[name]
    except KeyError:
        raise ImproperlyConfigured(
            f"The payments app is not ready: no handler for {name!r}. "
            "Is 'payments' in INSTALLED_APPS?"
        ) from None
