"""The embedded broker (kombu's filesystem transport): its folders under var/, kept bounded.

kombu's filesystem transport keeps each message in a file and each exchange's bindings in a
``<exchange>.exchange`` table, by default in ``control/`` under the current directory. It has
no consumers to count, so it never deletes a queue: a Flower that stops leaves its
``celeryev.<uuid>`` queue bound, and every worker event (a heartbeat every 2 s, several per
task) is written into it for ever, one more such queue per restart. RabbitMQ would expire it
(``event_queue_expires``); here ``broker_sweep`` does: a queue other than the task queues whose
oldest message has waited ``max_age`` seconds has nobody reading it, so its messages are
dropped, and an event or reply queue is unbound too (a worker's remote-control queue keeps its
binding: the worker binds the same name again when it restarts). Task queues are never
touched: their messages are work.
The worker runs the sweep (``Janitor``); ``make run`` resets the event and control queues of
earlier runs before it starts anything (``broker_reset``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# kombu's URL for the transport; "filesystem://" alone makes kombu warn "No hostname was
# supplied" on every connection (the host is unused, so any name does).
URL = "filesystem://localhost/"
# kombu's transport with atomic message writes (project/filesystem_transport.py): what a
# ``filesystem://`` URL names in our processes once ``use_atomic_transport`` has run.
TRANSPORT = "project.filesystem_transport:Transport"
# How a message being written is named until it is complete (filesystem_transport.PARTIAL).
PARTIAL = ".partial"
# Exchanges Celery declares for remote control and events (never for tasks).
CONTROL_EXCHANGES = ("celeryev", "celery.pidbox", "reply.celery.pidbox")


def broker_url(url: str) -> str:
    """The configured URL, with the host kombu insists on when it names the filesystem broker."""
    if url.rstrip("/") in ("", "filesystem:"):
        return URL
    return url


def use_atomic_transport() -> None:
    """Make ``filesystem://`` mean our transport in this process (the settings call it, so
    the web, the workers, beat and Flower all write messages atomically).

    By URL scheme, not by Celery's ``broker_transport`` setting: that one would keep naming
    the filesystem transport when the URL is changed to Redis.
    """
    from kombu.transport import TRANSPORT_ALIASES

    TRANSPORT_ALIASES["filesystem"] = TRANSPORT


def is_filesystem(url: str) -> bool:
    return url.startswith("filesystem://")


def folders(var_dir: Path) -> dict[str, Path]:
    broker = var_dir / "broker"
    return {
        "queue": broker / "queue",  # every message, of every queue, in and out
        "control": broker / "control",  # the exchange tables
    }


def transport_options(var_dir: Path) -> dict[str, Any]:
    """kombu's options: everything under var/broker, nothing kept once a message is read.

    With ``store_processed`` off kombu moves a message it reads to the temporary directory and
    deletes it there (make run points TMPDIR into var/ as well).
    """
    paths = folders(var_dir)
    for path in paths.values():
        path.mkdir(parents=True, exist_ok=True)
    return {
        "data_folder_in": str(paths["queue"]),
        "data_folder_out": str(paths["queue"]),
        "control_folder": str(paths["control"]),
        "store_processed": False,
    }


def _queue_of(filename: str) -> str | None:
    # kombu names a message "<ms>_<uuid>.<queue>.msg".
    if not filename.endswith(".msg"):
        return None
    return filename.partition(".")[2][: -len(".msg")] or None


def broker_reset(
    *, queue_folder: Path, control_folder: Path, task_queues: Iterable[str]
) -> dict[str, int]:
    """Before anything runs: drop every event and control queue of earlier runs, keep tasks.

    Removes the control exchanges' tables (each process binds its queues again at start) and
    every message not on a task queue. Only call it with no worker, beat or Flower running.
    """
    keep = set(task_queues)
    counts = {"messages": 0, "tables": 0}
    for name in CONTROL_EXCHANGES:
        with contextlib.suppress(FileNotFoundError):
            (control_folder / f"{name}.exchange").unlink()
            counts["tables"] += 1
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(queue_folder):
            queue = _queue_of(entry.name)
            if entry.name.endswith(PARTIAL) or (queue is not None and queue not in keep):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    counts["messages"] += 1
    return counts


def broker_sweep(
    *,
    queue_folder: Path,
    control_folder: Path,
    task_queues: Iterable[str],
    max_age: float,
    now: float | None = None,
) -> dict[str, int]:
    """Expire the queues nobody reads: a non-task message older than max_age marks its queue.

    A live consumer (Flower, a worker's remote control) takes its messages within a second or
    two; one that waited ``max_age`` seconds was left by a process that is gone.
    """
    keep = set(task_queues)
    now = time.time() if now is None else now
    files: dict[str, list[str]] = {}
    abandoned: set[str] = set()
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(queue_folder):
            if entry.name.endswith(PARTIAL):  # its writer was killed mid-write
                with contextlib.suppress(FileNotFoundError):
                    if now - entry.stat().st_mtime > max_age:
                        os.unlink(entry.path)
                continue
            queue = _queue_of(entry.name)
            if queue is None or queue in keep:
                continue
            files.setdefault(queue, []).append(entry.path)
            try:
                if now - entry.stat().st_mtime > max_age:
                    abandoned.add(queue)
            except FileNotFoundError:
                continue  # just read by its consumer
    counts = {"queues": 0, "messages": 0}
    for queue in abandoned:
        if _is_private(queue) and _unbind(control_folder, queue):
            counts["queues"] += 1
        for path in files[queue]:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
                counts["messages"] += 1
    if counts["queues"] or counts["messages"]:
        logger.info(
            "embedded broker: unbound %d unread queue(s), dropped %d old message(s) of %s",
            counts["queues"],
            counts["messages"],
            ", ".join(sorted(abandoned)),
        )
    return counts


def _is_private(queue: str) -> bool:
    """A queue one process made for itself: a Flower's events, a control client's replies."""
    return queue.startswith("celeryev.") or queue.endswith(".reply.celery.pidbox")


def _unbind(control_folder: Path, queue: str) -> bool:
    """Remove ``queue`` from every control exchange's table, under kombu's own file lock."""
    removed = False
    for name in CONTROL_EXCHANGES:
        path = control_folder / f"{name}.exchange"
        try:
            handle = path.open("rb+", buffering=0)
        except FileNotFoundError:
            continue
        with handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                table = json.loads(handle.read() or b"[]")
                kept = [row for row in table if row[2] != queue]
                if len(kept) != len(table):
                    handle.seek(0)
                    handle.write(json.dumps(kept).encode())
                    handle.truncate()
                    removed = True
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    return removed


class Janitor(threading.Thread):
    """Runs ``broker_sweep`` every ``interval`` seconds until stopped (in a worker)."""

    def __init__(self, *, options: dict[str, Any], task_queues: Iterable[str], max_age: float):
        super().__init__(name="filesystem-broker-janitor", daemon=True)
        self.queue_folder = Path(options["data_folder_in"])
        self.control_folder = Path(options.get("control_folder", "control"))
        self.task_queues = frozenset(task_queues)
        self.max_age = max_age
        self.interval = min(max(max_age / 4, 1.0), 30.0)
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            try:
                broker_sweep(
                    queue_folder=self.queue_folder,
                    control_folder=self.control_folder,
                    task_queues=self.task_queues,
                    max_age=self.max_age,
                )
            except (OSError, ValueError):
                logger.exception("embedded broker: sweep failed; trying again later")

    def stop(self) -> None:
        self.stopping.set()
