"""A PostgreSQL cluster of the test's own, to terminate connections on and to restart.

The shared server on 5432 serves every other test (and the other xdist workers), so it is
never stopped; this one is made with ``initdb`` in a temporary directory, listens on a free
port of 127.0.0.1 with trust authentication, and carries a copy of the test database (schema,
migrations, schedules, content types and the application role's grants) made with
``pg_dump``, so it is what ``migrate`` and ``db_roles`` made. ``stop(mode="immediate")`` is a
crash: no checkpoint, the next start replays the WAL.

As root (CI and this machine), the server runs as the ``postgres`` user, which PostgreSQL
requires; otherwise as the current user.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

from tests.workers.processes import REDIS_HOST, free_port

OWNER = "postgres"


def _bindir() -> Path:
    """Debian's directory of the server programs (initdb, pg_ctl, pg_dump, psql together)."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if versions:
        return versions[-1].parent
    found = shutil.which("initdb")
    if found is None:
        raise RuntimeError("PostgreSQL's server programs (initdb, pg_ctl) are not installed")
    return Path(found).parent


class PrivatePostgres:
    """One cluster; ``url(user)`` stays the same across restarts (same port, same data)."""

    def __init__(self, *, database: str = "payments") -> None:
        self.bin = _bindir()
        self.port = free_port()
        self.database = database
        self.dir = Path(tempfile.mkdtemp(prefix="faults-pg-"))
        self.data = self.dir / "data"
        self.logfile = self.dir / "postgres.log"
        self.as_root = os.geteuid() == 0
        self.starts = 0

    def _run(self, *argv: str, timeout: float = 60) -> str:
        command = [*argv]
        if self.as_root:
            command = ["runuser", "-u", OWNER, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def url(self, user: str = OWNER) -> str:
        return f"postgres://{user}@{REDIS_HOST}:{self.port}/{self.database}"

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.url(), autocommit=True)

    def create(self) -> None:
        if self.as_root:
            shutil.chown(self.dir, OWNER, OWNER)
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            OWNER,
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        )
        self.start()

    def start(self) -> None:
        self.starts += 1
        options = (
            f"-p {self.port} -c listen_addresses={REDIS_HOST} -k {self.dir} "
            "-c fsync=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.logfile),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
            timeout=90,
        )

    def stop(self, mode: str = "fast") -> None:
        """``fast``: roll back and disconnect everyone; ``immediate``: a crash."""
        if not (self.data / "postmaster.pid").exists():
            return
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def copy_database(self, source_url: str, *, roles: tuple[str, ...]) -> None:
        """``self.database`` as a copy of ``source_url``'s, owned by ``postgres`` as there."""
        with self.connect_to("postgres") as admin:
            for role in roles:
                admin.execute(f'CREATE ROLE "{role}" LOGIN')
            admin.execute(f'CREATE DATABASE "{self.database}"')
        dump = subprocess.run(
            [str(self.bin / "pg_dump"), "--no-owner", "--dbname", source_url],
            capture_output=True,
            timeout=120,
            check=True,
        ).stdout
        restored = subprocess.run(
            [
                str(self.bin / "psql"),
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "--dbname",
                self.url(),
            ],
            input=dump,
            capture_output=True,
            timeout=120,
            check=False,
        )
        if restored.returncode != 0:
            raise RuntimeError(f"restoring the copy failed:\n{restored.stderr.decode()[-3000:]}")

    def connect_to(self, database: str) -> psycopg.Connection:
        return psycopg.connect(
            host=REDIS_HOST, port=self.port, user=OWNER, dbname=database, autocommit=True
        )

    def terminate(self, role: str) -> list[tuple[int, str, str]]:
        """End every backend of ``role`` that is running or holding a transaction now.

        Returns (pid, state, query) of each one ended: what a restart would have cut.
        """
        with self.connect() as db:
            rows = db.execute(
                "SELECT pid, state, left(query, 80) FROM pg_stat_activity "
                "WHERE usename = %s AND state IN ('active', 'idle in transaction', "
                "'idle in transaction (aborted)')",
                [role],
            ).fetchall()
            return [
                (int(pid), str(state), str(query))
                for pid, state, query in rows
                if db.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone() == (True,)
            ]

    def log_tail(self, lines: int = 40) -> str:
        if not self.logfile.exists():
            return ""
        return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])

    def remove(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)
