"""Periodic job leases: no overlap, one run per tick, retry after a failure."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone

from payments.models import PeriodicRun
from workers.leases import _holder, exclusive_run, run_periodic

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_job_never_overlaps_itself():
    started = threading.Event()
    release = threading.Event()
    outcomes: list[bool] = []

    def slow() -> None:
        try:
            with exclusive_run("job", min_interval=0, max_runtime=60) as go:
                outcomes.append(go)
                started.set()
                release.wait(10)
        finally:
            connections.close_all()

    thread = threading.Thread(target=slow)
    thread.start()
    assert started.wait(10)
    with exclusive_run("job", min_interval=0, max_runtime=60) as go:
        assert go is False
    release.set()
    thread.join(10)
    assert outcomes == [True]
    run = PeriodicRun.objects.get(name="job")
    assert (run.run_count, run.skipped_count, run.running_until) == (1, 1, None)


def test_a_second_copy_of_the_same_tick_is_skipped():
    calls: list[int] = []
    assert run_periodic("tick", lambda: calls.append(1) or {"n": 1}, min_interval=5, max_runtime=5)
    assert run_periodic(
        "tick", lambda: calls.append(1) or {"n": 1}, min_interval=5, max_runtime=5
    ) == {"skipped": True}
    assert calls == [1]
    assert PeriodicRun.objects.get(name="tick").last_result == {"n": 1}


def test_the_next_tick_runs():
    run_periodic("tick", dict, min_interval=0.2, max_runtime=5)
    time.sleep(0.3)
    assert run_periodic("tick", lambda: {"again": True}, min_interval=0.2, max_runtime=5) == {
        "again": True
    }


def test_a_failed_run_can_be_retried_at_once():
    def boom() -> dict:
        raise RuntimeError("provider down")

    with pytest.raises(RuntimeError):
        run_periodic("flaky", boom, min_interval=60, max_runtime=5)
    assert "provider down" in PeriodicRun.objects.get(name="flaky").last_error
    assert run_periodic("flaky", lambda: {"ok": 1}, min_interval=60, max_runtime=5) == {"ok": 1}


def test_a_dead_holder_is_taken_over_after_its_max_runtime():
    with exclusive_run("crashy", min_interval=0, max_runtime=0.2) as go:
        assert go
        # Simulate a process killed mid-run: the lease is never released.
        PeriodicRun.objects.filter(name="crashy").update(holder="dead:1")
    PeriodicRun.objects.filter(name="crashy").update(
        running_until=PeriodicRun.objects.get(name="crashy").last_started_at
    )
    time.sleep(0.3)
    with exclusive_run("crashy", min_interval=0, max_runtime=5) as go:
        assert go


@pytest.mark.parametrize("outcome", ["in_a_query", "raised"])
def test_a_run_whose_connection_was_ended_still_gives_the_lease_back(outcome: str) -> None:
    """PostgreSQL ends the connection mid-run (a restart, ``pg_terminate_backend``): the lease
    is released on a fresh connection, so the next tick runs instead of being skipped as
    "already running" for ``max_runtime``."""
    from django.db import OperationalError, connection

    from tests.payments.test_database_unavailable import end_own_connection

    with (  # noqa: PT012 - the run, then its failure
        pytest.raises(OperationalError),
        exclusive_run("job", min_interval=0, max_runtime=300) as go,
    ):
        assert go is True
        end_own_connection()
        if outcome == "in_a_query":
            PeriodicRun.objects.count()  # the run's next query meets the dead connection
        else:
            raise OperationalError("the run ended on its own, the connection is dead")
    connection.close()
    run = PeriodicRun.objects.get(name="job")
    assert run.running_until is None
    assert "OperationalError" in run.last_error
    with exclusive_run("job", min_interval=0, max_runtime=300) as go:
        assert go is True


def test_a_lease_this_process_left_behind_is_taken_back_at_once():
    # A run whose release was lost with its connection (twice over): the row still names this
    # process as running it for max_runtime, though nothing of it runs here.
    run_periodic("orphan", dict, min_interval=0, max_runtime=300)
    left = PeriodicRun.objects.filter(name="orphan")
    left.update(holder=_holder(), running_until=timezone.now() + timedelta(seconds=300))
    assert run_periodic("orphan", lambda: {"back": 1}, min_interval=0, max_runtime=300) == {
        "back": 1
    }
    assert left.get().running_until is None

    left.update(holder="other-host:1", running_until=timezone.now() + timedelta(seconds=300))
    assert run_periodic("orphan", dict, min_interval=0, max_runtime=300) == {"skipped": True}, (
        "another process's lease is still honoured until its max_runtime"
    )
