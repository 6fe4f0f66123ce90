"""The workers app: installs the default beat schedules after every migrate."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class WorkersConfig(AppConfig):
    name = "workers"
    verbose_name = "Workers"

    def ready(self) -> None:
        post_migrate.connect(_install_schedules, dispatch_uid="workers.install_schedules")


def _install_schedules(sender: Any, using: str = "default", **kwargs: Any) -> None:
    # post_migrate is sent once per app with models; the schedules live in django-celery-beat's.
    if getattr(sender, "label", "") != "django_celery_beat":
        return
    from workers.schedules import install_schedules

    install_schedules(using=using)
