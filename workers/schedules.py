"""The default beat schedules, defined here and installed into django-celery-beat idempotently.

An operator's later change of an interval (or of enabled) in the admin is never overwritten:
installation only creates what is missing.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from django.db import transaction

from workers.queues import queue_of


@dataclass(frozen=True)
class Schedule:
    name: str
    task: str
    every_seconds: int

    @property
    def queue(self) -> str:
        return queue_of(self.task)


DEFAULT_SCHEDULES = (
    Schedule("Register ORM-created payments", "workers.payments_register_sweep", 60),
    Schedule("Poll NowPayments", "workers.payments_poll", 60),
    Schedule("Settle completed payments (safety net)", "workers.payments_settle_sweep", 30),
    Schedule("Expire stale payments", "workers.payments_expire", 300),
    Schedule("Sync currencies", "workers.currencies_sync", 86400),
    Schedule("Send and follow payouts", "workers.withdrawals_payout_sweep", 60),
    Schedule("Reconcile the ledger", "workers.ledger_reconcile", 3600),
    Schedule("Reconcile with NowPayments", "workers.provider_reconcile", 900),
    Schedule("E-mail the operators", "workers.notifications_sweep", 60),
    Schedule("Send webhooks to the host application", "workers.webhooks_dispatch", 5),
    Schedule("Forget expired idempotency keys", "workers.idempotency_expire", 3600),
)


def _overrides() -> dict[str, int]:
    """WORKERS_SCHEDULE_SECONDS='{"workers.payments_poll": 5}' sets first-install intervals."""
    raw = os.environ.get("WORKERS_SCHEDULE_SECONDS", "")
    if not raw:
        return {}
    try:
        values = json.loads(raw)
    except json.JSONDecodeError:
        raise RuntimeError(
            "WORKERS_SCHEDULE_SECONDS must be a JSON object of task: seconds."
        ) from None
    return {str(k): int(v) for k, v in values.items()}


def install_schedules(*, using: str = "default") -> list[str]:
    """Create every default periodic task that does not exist yet; return the created names."""
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    overrides = _overrides()
    created: list[str] = []
    with transaction.atomic(using=using):
        for entry in DEFAULT_SCHEDULES:
            if PeriodicTask.objects.using(using).filter(name=entry.name).exists():
                continue
            seconds = overrides.get(entry.task, entry.every_seconds)
            interval, _ = IntervalSchedule.objects.using(using).get_or_create(
                every=seconds, period=IntervalSchedule.SECONDS
            )
            PeriodicTask.objects.using(using).create(
                name=entry.name,
                task=entry.task,
                interval=interval,
                queue=entry.queue,
                # A tick nobody picked up within one interval is dropped, not piled up.
                expire_seconds=seconds,
                kwargs="{}",
            )
            created.append(entry.name)
    return created


def interval_of(task: str) -> float:
    """The current interval of a periodic task, in seconds (0 when it has none)."""
    from django_celery_beat.models import PeriodicTask

    periodic = (
        PeriodicTask.objects.filter(task=task, enabled=True, interval__isnull=False)
        .select_related("interval")
        .first()
    )
    if periodic is None or periodic.interval is None:
        return 0.0
    return float(periodic.interval.schedule.run_every.total_seconds())
