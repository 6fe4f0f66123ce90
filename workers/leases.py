"""Periodic job leases: a job never overlaps itself and runs at most once per tick."""

from __future__ import annotations

import logging
import os
import socket
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from payments.models import PeriodicRun

logger = logging.getLogger(__name__)


def _holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# The jobs this process is running now. A lease held under this process's name for a job not
# among them was left behind: its release (or the answer to its acquisition's commit) was lost
# with the connection. This process takes such a lease back at once instead of skipping the
# job until ``max_runtime`` passes.
_running: set[str] = set()
_running_lock = threading.Lock()


def _start(name: str) -> bool:
    """Mark ``name`` as running here; False if it already is (another thread of ours)."""
    with _running_lock:
        if name in _running:
            return False
        _running.add(name)
        return True


def _stop(name: str) -> None:
    with _running_lock:
        _running.discard(name)


@contextmanager
def exclusive_run(name: str, *, min_interval: float, max_runtime: float) -> Iterator[bool]:
    """Yield True when this process may run job ``name`` now, False when it must skip.

    It may run when nobody holds the lease (or the holder's ``max_runtime`` has passed: it
    died) and the last run started at least ``min_interval`` seconds ago. Two beat processes
    sending the same tick therefore cause one run, and a slow run is never joined by another.
    A lease this very process left behind (its release lost with the connection) is taken
    back at once.
    """
    now = timezone.now()
    free = Q(running_until__isnull=True) | Q(running_until__lt=now)
    mine = _start(name)
    if mine:
        free |= Q(holder=_holder())  # left behind by this process: no run of it is going on
    try:
        acquired = _acquire(name, now, free, min_interval=min_interval, max_runtime=max_runtime)
    except BaseException:
        if mine:
            _stop(name)
        raise
    if not acquired:
        if mine:
            _stop(name)
        PeriodicRun.objects.filter(name=name).update(skipped_count=F("skipped_count") + 1)
        logger.info("periodic job %s skipped: already running or ran this tick", name)
        yield False
        return
    try:
        yield True
    except BaseException:
        # A failed run leaves the tick open, so its retry is not skipped as a duplicate.
        _release(
            name,
            running_until=None,
            last_started_at=None,
            last_finished_at=timezone.now(),
            last_error=traceback.format_exc()[-4000:],
        )
        raise
    else:
        _release(name, running_until=None, last_finished_at=timezone.now(), last_error="")
    finally:
        if mine:
            _stop(name)


def _acquire(name: str, now: datetime, free: Q, *, min_interval: float, max_runtime: float) -> int:
    PeriodicRun.objects.bulk_create([PeriodicRun(name=name)], ignore_conflicts=True)
    with transaction.atomic():
        return (
            PeriodicRun.objects.filter(name=name)
            .filter(free)
            .filter(
                Q(last_started_at__isnull=True)
                | Q(last_started_at__lte=now - timedelta(seconds=min_interval))
            )
            .update(
                holder=_holder(),
                running_until=now + timedelta(seconds=max_runtime),
                last_started_at=now,
                run_count=F("run_count") + 1,
            )
        )


def _release(name: str, **fields: Any) -> None:
    """Give the lease back, on a fresh connection if the run's own died under it.

    A run that failed because PostgreSQL ended its connection (a restart, a failover,
    ``pg_terminate_backend``) would otherwise fail to release too, and its job would be
    skipped as "already running" until ``max_runtime`` passed: five minutes without payouts
    after a one-second blip. If even the fresh connection fails, the lease expires as before.
    """
    try:
        PeriodicRun.objects.filter(name=name, holder=_holder()).update(**fields)
        return
    except (OperationalError, InterfaceError):
        if connection.in_atomic_block:
            raise
        connection.close()
    try:
        PeriodicRun.objects.filter(name=name, holder=_holder()).update(**fields)
    except (OperationalError, InterfaceError):
        logger.warning("periodic job %s: lease not released (database unavailable)", name)


def record_result(name: str, result: dict[str, Any]) -> None:
    PeriodicRun.objects.filter(name=name).update(last_result=result)


def run_periodic(
    name: str, job: Callable[[], dict[str, Any]], *, min_interval: float, max_runtime: float
) -> dict[str, Any]:
    """Run ``job`` under the lease; return its summary, or ``{"skipped": True}``."""
    with exclusive_run(name, min_interval=min_interval, max_runtime=max_runtime) as go:
        if not go:
            return {"skipped": True}
        result = job()
        record_result(name, result)
        return result
