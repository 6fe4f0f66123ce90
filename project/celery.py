"""The Celery application, configured from Django settings (the CELERY_ namespace)."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import task_postrun, task_prerun, worker_init, worker_ready, worker_shutdown

from project import filesystem_broker
from workers.queues import TASK_QUEUES, task_routes

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


@task_prerun.connect
@task_postrun.connect
def _keep_or_drop_the_database_connection(**kwargs: Any) -> None:
    """Around each task, what Django does around each request: a connection older than
    CONN_MAX_AGE, or broken (an error in the task, a server restart), is closed, so the next
    query opens a fresh one; any other is kept, checked for health before its next use
    (CONN_HEALTH_CHECKS). Celery's own per-task close is off (CELERY_DB_REUSE_MAX)."""
    from django.db import close_old_connections

    close_old_connections()


_janitors: list[filesystem_broker.Janitor] = []


@worker_ready.connect
def _expire_unread_queues_of_the_filesystem_broker(**kwargs: Any) -> None:
    """Over the embedded broker, expire the event queues a stopped Flower leaves behind."""
    if not filesystem_broker.is_filesystem(str(app.conf.broker_url or "")):
        return  # Redis and RabbitMQ expire or never keep them
    task_queues = {*TASK_QUEUES.values(), app.conf.task_default_queue, *app.amqp.queues}
    janitor = filesystem_broker.Janitor(
        options=dict(app.conf.broker_transport_options or {}),
        task_queues=task_queues,
        max_age=float(app.conf.event_queue_expires or 60.0),
    )
    janitor.start()
    _janitors.append(janitor)


@worker_shutdown.connect
def _stop_the_janitor(**kwargs: Any) -> None:
    while _janitors:
        _janitors.pop().stop()
