"""The Celery application, configured from Django settings (the CELERY_ namespace)."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import worker_init

from workers.queues import task_routes

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

app = Celery("project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_routes = task_routes()
app.autodiscover_tasks()


@worker_init.connect
def _refuse_a_half_configured_worker(**kwargs: Any) -> None:
    """A worker without a usable NowPayments config stops at start-up with the reason."""
    from payments.config import require_configuration
    from payments.errors import ConfigurationError

    try:
        require_configuration()
    except ConfigurationError as exc:
        # Celery logs and swallows exceptions from signal handlers; this one must stop it.
        raise SystemExit(f"The worker cannot start: {exc.message}") from exc
