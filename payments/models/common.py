"""Pieces shared by the payments models: provider choices and id generation."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone


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
