"""Real Celery worker and beat processes for end-to-end tests, and a clean way to stop them."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import redis
from django.conf import settings
from django.db import connection
from django_celery_beat.models import IntervalSchedule, PeriodicTask

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]
REDIS_HOST = "127.0.0.1"


def redis_db() -> int:
    """A Redis database of its own for each xdist worker (gw0 -> 8, gw1 -> 9, none -> 7).

    ``PAYMENTS_TEST_REDIS_DB_OFFSET`` (default 0) shifts them all, so that several people or
    checkouts can run the end-to-end tests on one Redis at the same time. A stock Redis has
    16 databases (0-15): keep offset + 8 + workers below 16, or raise ``databases``.
    """
    offset = int(os.environ.get("PAYMENTS_TEST_REDIS_DB_OFFSET", "0") or 0)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    return offset + (8 + int(worker[2:]) if worker.startswith("gw") else 7)


def broker_url() -> str:
    return f"redis://{REDIS_HOST}:6379/{redis_db()}"


def flush_broker() -> None:
    redis.Redis(host=REDIS_HOST, port=6379, db=redis_db()).flushdb()


def app_database_url() -> str:
    """This test's database as the application role (tests/conftest.py gave it its grants).

    Production runs web, worker and beat as that least-privileged role, not as the owner, so
    the end-to-end processes do too: a missing grant fails here first.
    """
    db = connection.settings_dict
    user = quote(settings.PAYMENTS_DB_APP_ROLE, safe="")
    password = os.environ.get("PAYMENTS_DB_APP_PASSWORD", "")
    credentials = f"{user}:{quote(password, safe='')}" if password else user
    return f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def process_env(sandbox: Any, **extra: str) -> dict[str, str]:
    """The environment of a worker or beat: this test's database (as the application role),
    broker and sandbox."""
    env = {
        **os.environ,
        "DJANGO_DEBUG": "1",
        "DATABASE_URL": app_database_url(),
        "DATABASE_CONN_MAX_AGE": "0",
        "CELERY_BROKER_URL": broker_url(),
        "NOWPAYMENTS_API_URL": sandbox.api_url,
        "NOWPAYMENTS_API_KEY": sandbox.config.api_key,
        "NOWPAYMENTS_IPN_SECRET": sandbox.config.ipn_secret,
        "NOWPAYMENTS_EMAIL": sandbox.config.email,
        "NOWPAYMENTS_PASSWORD": sandbox.config.password,
        "NOWPAYMENTS_TOTP_SECRET": sandbox.config.totp_secret,
        "NOWPAYMENTS_TIMEOUT": "5",
        "LOG_LEVEL": "INFO",
    }
    env.update(extra)
    return env


def set_intervals(seconds_by_task: dict[str, int], *, disable_others: bool = True) -> None:
    """Point periodic tasks at short intervals (before beat starts); switch the rest off."""
    for periodic in PeriodicTask.objects.exclude(task="celery.backend_cleanup"):
        if periodic.task in seconds_by_task:
            every = seconds_by_task[periodic.task]
            periodic.interval, _ = IntervalSchedule.objects.get_or_create(
                every=every, period=IntervalSchedule.SECONDS
            )
            periodic.expire_seconds = max(every * 5, 5)
            periodic.enabled = True
        elif disable_others:
            periodic.enabled = False
        periodic.save()


class Processes:
    """Starts processes in their own process groups and always kills them at the end."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.started: list[subprocess.Popen[bytes]] = []
        self._log_files: list[Any] = []
        self.logs = Path(tempfile.mkdtemp(prefix="e2e-logs-"))

    def _start(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}-{len(self.started)}.log", "wb")  # noqa: SIM115
        self._log_files.append(log)
        process = subprocess.Popen(
            args,
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.started.append(process)
        return process

    def worker(
        self,
        *,
        concurrency: int = 2,
        queues: str = "default,provider,settlement,payouts",
        hostname: str = "%h",
    ) -> Any:
        """A worker named ``e2e-<random>@<hostname>`` (this machine's name by default)."""
        name = f"e2e-{uuid.uuid4().hex[:8]}@{hostname}"
        return self._start(
            "worker",
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
                name,
                "--without-gossip",
                "--without-mingle",
                "-l",
                "info",
            ],
        )

    def beat(self) -> Any:
        return self._start(
            "beat",
            [
                str(BIN / "celery"),
                "-A",
                "project",
                "beat",
                "-S",
                "django_celery_beat.schedulers:DatabaseScheduler",
                "--pidfile=",
                "-l",
                "info",
            ],
        )

    def kill(self, process: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                self.kill(process, signal.SIGTERM)
        for process in self.started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        for log in self._log_files:
            log.close()

    def log_tail(self, lines: int = 40) -> str:
        out = []
        for path in sorted(self.logs.glob("*.log")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(out)


def wait_until(predicate: Callable[[], Any], *, timeout: float, what: str, logs: Processes) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what}\n{logs.log_tail()}"
            )
        time.sleep(0.2)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for a web process to bind)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((REDIS_HOST, 0))
        return int(sock.getsockname()[1])


def start_web(processes: Processes, port: int) -> subprocess.Popen[bytes]:
    """A gunicorn web process (as in the Procfile) on 127.0.0.1:``port``, once it answers."""
    import urllib.error
    import urllib.request

    process = processes._start(
        "web",
        [
            str(BIN / "gunicorn"),
            "project.wsgi",
            "--bind",
            f"{REDIS_HOST}:{port}",
            "--workers",
            "1",
            "--threads",
            "4",
            "--timeout",
            "30",
            "--access-logfile",
            "-",
        ],
    )

    def answers() -> bool:
        try:
            urllib.request.urlopen(f"http://{REDIS_HOST}:{port}/admin/login/", timeout=1)
        except urllib.error.HTTPError:
            return True  # any HTTP answer: it is serving
        except OSError:
            return False
        return True

    wait_until(answers, timeout=30, what=f"the web process on port {port}", logs=processes)
    return process
