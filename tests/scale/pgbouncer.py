"""A private PgBouncer (Debian's) in transaction pooling in front of the tests' PostgreSQL."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
PSQL = shutil.which("psql") or "psql"


class PgBouncer:
    """PgBouncer on a free port of 127.0.0.1, every database forwarded to ``upstream``.

    ``pool_mode = transaction`` with few server connections per database and user, so that
    clients that keep their connection (CONN_MAX_AGE) share them transaction by transaction.
    Authentication is ``trust`` (the users named in its auth file); PgBouncer then logs in to
    PostgreSQL as the client's user, with the password given here.
    """

    def __init__(
        self,
        *,
        port: int,
        upstream_host: str,
        upstream_port: int,
        users: dict[str, str],
        pool_size: int = 4,
    ) -> None:
        self.port = port
        self.pool_size = pool_size
        self.dir = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
        self.log = self.dir / "pgbouncer.log"
        userlist = "".join(f'"{user}" "{password}"\n' for user, password in users.items())
        (self.dir / "userlist.txt").write_text(userlist)
        (self.dir / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host={upstream_host} port={upstream_port}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {self.dir / 'userlist.txt'}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {pool_size}\n"
            "max_client_conn = 200\n"
            "admin_users = postgres\n"
            "ignore_startup_parameters = extra_float_digits\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> PgBouncer:
        argv = [PGBOUNCER]
        if os.geteuid() == 0:  # PgBouncer refuses to run as root
            self.dir.chmod(0o755)
            for path in self.dir.iterdir():
                path.chmod(0o644)
            argv += ["-u", "postgres"]
        argv.append(str(self.dir / "pgbouncer.ini"))
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 15
        while "listening on" not in self.log.read_text(errors="replace"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"pgbouncer did not start:\n{self.log_tail()}")
            time.sleep(0.1)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def show(self, what: str) -> list[dict[str, str]]:
        """``SHOW <what>`` on the admin console (POOLS, CLIENTS, SERVERS, STATS) as rows."""
        console = ["-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", "pgbouncer"]
        result = subprocess.run(
            [PSQL, *console, "-X", "-A", "-F", "\t", "-P", "footer=off", "-c", f"SHOW {what}"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        lines = result.stdout.splitlines()
        header = lines[0].split("\t")
        return [dict(zip(header, line.split("\t"), strict=False)) for line in lines[1:]]

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
