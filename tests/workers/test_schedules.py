"""Default beat schedules: installed once, with expiries, never overwriting an operator."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from workers.schedules import DEFAULT_SCHEDULES, install_schedules, interval_of

pytestmark = pytest.mark.django_db


def test_migrate_installed_every_default_schedule_with_an_expiry():
    tasks = {t.task: t for t in PeriodicTask.objects.all()}
    assert set(tasks) == {s.task for s in DEFAULT_SCHEDULES}
    for entry in DEFAULT_SCHEDULES:
        periodic = tasks[entry.task]
        assert periodic.interval.every == entry.every_seconds
        assert periodic.expire_seconds == entry.every_seconds
        assert periodic.queue == entry.queue
        assert periodic.enabled


def test_installing_again_changes_nothing_and_keeps_an_operators_interval():
    poll = PeriodicTask.objects.get(task="workers.payments_poll")
    poll.interval, _ = IntervalSchedule.objects.get_or_create(every=15, period="seconds")
    poll.enabled = False
    poll.save()
    assert install_schedules() == []
    call_command("install_schedules")
    poll.refresh_from_db()
    assert (poll.interval.every, poll.enabled) == (15, False)
    assert PeriodicTask.objects.filter(task="workers.payments_poll").count() == 1


def test_a_deleted_schedule_is_installed_again():
    PeriodicTask.objects.filter(task="workers.ledger_reconcile").delete()
    assert install_schedules() == ["Reconcile the ledger"]


def test_interval_of_reads_the_live_schedule():
    assert interval_of("workers.payments_settle_sweep") == 30.0
    assert interval_of("workers.nothing") == 0.0
