"""A redis-server of the test's own, on a free port in a temporary directory, to stop and restart.

Stopping it touches nothing else on the machine (not the shared Redis on 6379). Its data is
kept across a stop: append-only with ``appendfsync always`` and a save on shutdown, so tasks
queued in the broker before a SIGTERM are there again after ``start()``.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from tests.workers.processes import REDIS_HOST, free_port


class PrivateRedis:
    """One redis-server process; ``url`` stays the same across restarts (same port, same dir)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="faults-redis-"))
        self.url = f"redis://{REDIS_HOST}:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def client(self) -> redis.Redis:
        return redis.Redis(host=REDIS_HOST, port=self.port, db=0, socket_timeout=5)

    def start(self) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        self.starts += 1
        log = open(self.dir / f"redis-{self.starts}.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                "--port",
                str(self.port),
                "--bind",
                REDIS_HOST,
                "--dir",
                str(self.dir),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--protected-mode",
                "no",
                "--daemonize",
                "no",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + 20
        while True:
            try:
                if self.client().ping():
                    return
            except redis.exceptions.RedisError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} did not start:\n{self.log()}")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM (redis flushes its append-only file and exits), then wait for it."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return "\n".join(
            p.read_text(errors="replace")[-4000:] for p in sorted(self.dir.glob("redis-*.log"))
        )

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
