"""A whole deployment for a fault scenario: web, named workers and beat, each killable on its own.

``FaultStack`` runs on the database, broker and sandbox it is given (any of them private to
the test), as the application role, with ``tests/workers/processes.Processes`` underneath: every
process in its own process group, logs kept, all stopped at the end whatever happened.
"""

from __future__ import annotations

import signal
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from celery import Celery

from tests.faults.books import Books, assert_books_clean
from tests.workers.processes import (
    BIN,
    REDIS_HOST,
    Processes,
    free_port,
    process_env,
    wait_until,
)

ALL_QUEUES = "default,provider,settlement,payouts"
Process = subprocess.Popen[bytes]


class FaultStack:
    """The processes of one scenario. Workers are known by name; ``kill_*`` SIGKILLs (or sends
    ``sig``) to the whole process group, ``restart_*`` starts a fresh one in its place."""

    def __init__(self, *, database_url: str, broker_url: str, sandbox: Any, **env: str) -> None:
        self.env = process_env(
            sandbox, DATABASE_URL=database_url, CELERY_BROKER_URL=broker_url, **env
        )
        self.database_url = database_url
        self.broker_url = broker_url
        self.sandbox = sandbox
        self.procs = Processes(self.env)
        self.workers: dict[str, Process] = {}
        self.worker_args: dict[str, tuple[str, int]] = {}
        self.beats: list[Process] = []
        self.web: Process | None = None
        self.web_port: int | None = None
        self.kills = 0

    # --- starting -------------------------------------------------------------------------

    @property
    def web_url(self) -> str:
        assert self.web_port is not None, "start_web() first"
        return f"http://{REDIS_HOST}:{self.web_port}"

    def reserve_web_port(self) -> str:
        """The web process's base URL before it starts (for IPN callback URLs)."""
        if self.web_port is None:
            self.web_port = free_port()
        return self.web_url

    def start_web(self, *, workers: int = 2) -> str:
        """gunicorn on a free port (the same port again after a restart); its base URL."""
        self.reserve_web_port()
        assert self.web_port is not None
        self.web = self.procs._start(
            "web",
            [
                str(BIN / "gunicorn"),
                "project.wsgi",
                "--bind",
                f"{REDIS_HOST}:{self.web_port}",
                "--workers",
                str(workers),
                "--threads",
                "4",
                "--timeout",
                "30",
            ],
        )
        self.wait_until(self._web_answers, timeout=60, what=f"the web process on {self.web_url}")
        return self.web_url

    def _web_answers(self) -> bool:
        try:
            urllib.request.urlopen(f"{self.web_url}/admin/login/", timeout=1)  # noqa: S310
        except urllib.error.HTTPError:
            return True  # any HTTP answer: it is serving
        except OSError:
            return False
        return True

    def start_worker(
        self, name: str | None = None, *, queues: str = ALL_QUEUES, concurrency: int = 2
    ) -> str:
        """A worker with host name ``name@%h`` (a fresh one if not given); returns the name."""
        name = name or f"fault-{uuid.uuid4().hex[:6]}"
        self.worker_args[name] = (queues, concurrency)
        self.workers[name] = self.procs._start(
            f"worker-{name}",
            [
                str(BIN / "celery"),
                "-A",
                "project",
                "worker",
                "-Q",
                queues,
                "-c",
                str(concurrency),
                "-n",
                f"{name}@%h",
                "--without-gossip",
                "--without-mingle",
                "-l",
                "info",
            ],
        )
        return name

    def start_beat(self) -> Process:
        beat = self.procs.beat()
        self.beats.append(beat)
        return beat

    # --- faults ---------------------------------------------------------------------------

    def kill_worker(self, name: str, sig: int = signal.SIGKILL) -> None:
        self.procs.kill(self.workers.pop(name), sig)
        self.kills += 1

    def restart_worker(self, name: str, sig: int = signal.SIGKILL) -> str:
        """Kill the worker ``name`` and start a new one with the same queues; its new name."""
        queues, concurrency = self.worker_args[name]
        self.kill_worker(name, sig)
        return self.start_worker(queues=queues, concurrency=concurrency)

    def kill_beat(self, index: int = 0, sig: int = signal.SIGKILL) -> None:
        self.procs.kill(self.beats.pop(index), sig)
        self.kills += 1

    def restart_beat(self, index: int = 0, sig: int = signal.SIGKILL) -> Process:
        self.kill_beat(index, sig)
        return self.start_beat()

    def kill_web(self, sig: int = signal.SIGKILL) -> None:
        if self.web is not None:
            self.procs.kill(self.web, sig)
            self.web = None
            self.kills += 1

    def restart_web(self, sig: int = signal.SIGKILL) -> str:
        self.kill_web(sig)
        return self.start_web()

    # --- observing ------------------------------------------------------------------------

    def alive(self) -> dict[str, bool]:
        """Whether each process still runs (a crash shows here before a timeout does)."""
        state = {f"worker {n}": p.poll() is None for n, p in self.workers.items()}
        state.update({f"beat {i}": p.poll() is None for i, p in enumerate(self.beats)})
        if self.web is not None:
            state["web"] = self.web.poll() is None
        return state

    def assert_alive(self, what: str) -> None:
        """Fail with ``what``, which processes died and (printed, so pytest shows it whole) the
        end of every process's log, if any of them is not running."""
        state = self.alive()
        if not all(state.values()):
            print(self.logs(150))  # noqa: T201
            raise AssertionError(f"{what}: {state}")

    def wait_until(self, predicate: Callable[[], Any], *, timeout: float, what: str) -> Any:
        return wait_until(predicate, timeout=timeout, what=what, logs=self.procs)

    def sender(self) -> Celery:
        """A Celery client on the stack's broker, to queue tasks by name."""
        return Celery(broker=self.broker_url)

    def assert_books_clean(self, **options: Any) -> Books:
        """``books.assert_books_clean`` on this stack's database and sandbox."""
        return assert_books_clean(
            database_url=self.database_url,
            sandbox_api_url=self.sandbox.api_url,
            env=self.env,
            **options,
        )

    def logs(self, lines: int = 40) -> str:
        return self.procs.log_tail(lines)

    def stop(self) -> None:
        self.procs.stop_all()
        self.workers.clear()
        self.beats.clear()
        self.web = None


def make_users(count: int, *, prefix: str = "fault") -> list[Any]:
    """``count`` users at once (no password hashing: it would dominate a scenario's time)."""
    from django.contrib.auth import get_user_model

    model = get_user_model()
    tag = uuid.uuid4().hex[:6]
    model.objects.bulk_create(
        [model(username=f"{prefix}-{tag}-{i}", password="!") for i in range(count)]
    )
    return list(model.objects.filter(username__startswith=f"{prefix}-{tag}-").order_by("pk"))


@contextmanager
def fault_stack(
    *, database_url: str, broker_url: str, sandbox: Any, **env: str
) -> Iterator[FaultStack]:
    """A ``FaultStack`` that is always stopped at the end."""
    stack = FaultStack(database_url=database_url, broker_url=broker_url, sandbox=sandbox, **env)
    try:
        yield stack
    finally:
        stack.stop()
