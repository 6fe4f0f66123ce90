"""Plumbing the benchmarks share: fresh database, private Redis db, child processes, RSS, tables.

Every benchmark is a script run from the repository root with the venv's interpreter; importing
this module puts the repository on ``sys.path`` so ``project``, ``payments`` and ``sandbox``
import as they do in the product.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

BIN = Path(sys.executable).parent
PG_HOST = os.environ.get("BENCH_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("BENCH_PG_PORT", "5432"))
PG_USER = os.environ.get("BENCH_PG_USER", "postgres")
REDIS_BASE = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")


# --- PostgreSQL and Redis ------------------------------------------------------------------


def pg_url(dbname: str) -> str:
    return f"postgres://{PG_USER}@{PG_HOST}:{PG_PORT}/{dbname}"


def psycopg_dsn(dbname: str) -> str:
    return f"host={PG_HOST} port={PG_PORT} user={PG_USER} dbname={dbname}"


def recreate_database(name: str) -> str:
    """Drop (forcing other sessions off) and create database ``name``; return its URL."""
    import psycopg

    if not name.replace("_", "").isalnum():
        raise ValueError(f"unsafe database name {name!r}")
    with psycopg.connect(psycopg_dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return pg_url(name)


def redis_url(index: int) -> str:
    return f"{REDIS_BASE}/{index}"


def flush_redis(index: int) -> None:
    import redis

    client = redis.Redis.from_url(redis_url(index))
    try:
        client.flushdb()
    finally:
        client.close()


def product_env(*, db_url: str, redis_index: int, **extra: str) -> dict[str, str]:
    """Environment for product processes: production-like settings (DEBUG off, INFO logs)."""
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "project.settings",
            "DJANGO_SECRET_KEY": "bench-" + secrets.token_urlsafe(32),
            "DJANGO_DEBUG": "0",
            "DATABASE_URL": db_url,
            "CELERY_BROKER_URL": redis_url(redis_index),
            "PYTHONUNBUFFERED": "1",
            # Outside debug the app refuses to start without a NowPayments key; benchmarks that
            # talk to the sandbox pass its real key in ``extra``.
            "NOWPAYMENTS_API_KEY": "bench-key-unused",
        }
    )
    env.pop("PYTEST_VERSION", None)
    env.update(extra)
    return env


def migrate(env: dict[str, str], log_dir: Path) -> float:
    """Run ``manage.py migrate`` against env's DATABASE_URL; return the seconds it took."""
    started = time.perf_counter()
    log = log_dir / "migrate.log"
    with log.open("wb") as out:
        result = subprocess.run(
            [sys.executable, str(REPO / "manage.py"), "migrate", "--noinput"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py migrate failed; see {log}")
    return time.perf_counter() - started


def setup_django(env: dict[str, str]) -> None:
    """Configure Django in this process with the same environment as the child processes."""
    os.environ.update(env)
    import django

    django.setup()


def log_dir(name: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))


# --- child processes -----------------------------------------------------------------------


class Child:
    """A process this benchmark started, in its own session so that its children go with it."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        self._out = log.open("wb")
        self.proc = subprocess.Popen(
            list(argv),
            cwd=REPO,
            env=env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid = self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, *, grace: float = 20.0) -> int | None:
        """SIGTERM the main process (a warm shutdown), then SIGKILL its group if it lingers."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(grace)
        # Whatever is left of the group we created (the main process and its children).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        try:
            code = self.proc.wait(5)
        except subprocess.TimeoutExpired:
            code = None
        self._out.close()
        return code

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants, read from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: split after its closing one.
        fields = stat[stat.rfind(b")") + 2 :].split()
        parents.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(parents.get(pid, []))
    return found


def rss_kib(pids: Sequence[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total


def cpu_seconds(pids: Sequence[int]) -> dict[int, float]:
    """User + system CPU seconds of each live process in ``pids``."""
    tick = os.sysconf("SC_CLK_TCK")
    found = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        found[pid] = (int(fields[11]) + int(fields[12])) / tick
    return found


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    tick = os.sysconf("SC_CLK_TCK")
    with open("/proc/stat") as fh:
        values = [int(v) for v in fh.readline().split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / tick, sum(values[:8]) / tick


def postgres_cpu_seconds() -> float:
    """CPU used so far by the local PostgreSQL server: live processes plus reaped backends.

    Every database on the server counts, so concurrent work elsewhere shows up here too.
    """
    import psycopg

    with psycopg.connect(psycopg_dsn("postgres"), autocommit=True) as conn:
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        # Read while the backend lives: once the connection closes its /proc entry goes.
        with open(f"/proc/{backend}/stat", "rb") as fh:
            stat = fh.read()
    postmaster = int(stat[stat.rfind(b")") + 2 :].split()[1])
    with open(f"/proc/{postmaster}/stat", "rb") as fh:
        stat = fh.read()
    fields = stat[stat.rfind(b")") + 2 :].split()
    reaped = (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")
    return reaped + sum(cpu_seconds(process_tree(postmaster)).values())


class CpuMeter:
    """CPU used by process groups between start() and stop(), and by the machine as a whole."""

    def __init__(self) -> None:
        self.before: dict[str, dict[int, float]] = {}
        self.after: dict[str, dict[int, float]] = {}
        self.machine = (0.0, 0.0)

    def start(self, groups: dict[str, Sequence[int]]) -> None:
        self.before = {name: cpu_seconds(pids) for name, pids in groups.items()}
        self._pg0 = postgres_cpu_seconds()
        self._m0 = machine_cpu()
        self._t0 = time.monotonic()

    def stop(self, groups: dict[str, Sequence[int]]) -> None:
        self.after = {name: cpu_seconds(pids) for name, pids in groups.items()}
        self.postgres = postgres_cpu_seconds() - self._pg0
        busy, total = machine_cpu()
        self.machine = (busy - self._m0[0], total - self._m0[1])
        self.wall = time.monotonic() - self._t0

    def used(self, name: str) -> float:
        """CPU seconds; a process absent at start counts from zero (it started meanwhile)."""
        before = self.before.get(name, {})
        return sum(v - before.get(pid, 0.0) for pid, v in self.after.get(name, {}).items())

    def other(self) -> float:
        """Busy CPU seconds of the machine not used by the groups or by PostgreSQL."""
        ours = sum(self.used(name) for name in self.after) + self.postgres
        return max(self.machine[0] - ours, 0.0)

    def machine_busy(self) -> float:
        busy, total = self.machine
        return busy / total if total else 0.0


@dataclass
class RssSample:
    at: float  # time.monotonic()
    kib: int
    processes: int


@dataclass
class RssSampler:
    """Samples the summed RSS of a process tree every ``interval`` seconds in a thread."""

    root: int
    interval: float = 0.5
    samples: list[RssSample] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample_now()
            self._stop.wait(self.interval)

    def sample_now(self) -> None:
        pids = process_tree(self.root)
        self.samples.append(RssSample(time.monotonic(), rss_kib(pids), len(pids)))

    def window(self, start: float, end: float) -> list[RssSample]:
        return [s for s in self.samples if start <= s.at <= end]


def flatness(samples: Sequence[RssSample], *, warmup_fraction: float = 0.2) -> dict[str, Any]:
    """Whether RSS stays within ±10% of its first value after the warm-up part of the run."""
    if not samples:
        return dict.fromkeys(("first", "last", "min", "max", "ref", "worst_dev", "flat"), None) | {
            "n": 0
        }
    skip = int(len(samples) * warmup_fraction)
    settled = list(samples[skip:]) or list(samples)
    ref = settled[0].kib
    deviations = [(s.kib - ref) / ref for s in settled]
    worst = max(deviations, key=abs)
    return {
        "first": samples[0].kib,
        "last": samples[-1].kib,
        "min": min(s.kib for s in samples),
        "max": max(s.kib for s in samples),
        "ref": ref,
        "worst_dev": worst,
        "flat": abs(worst) <= 0.10,
        "n": len(samples),
        "median_after": statistics.median(s.kib for s in settled),
    }


def wait_until(predicate: Any, *, timeout: float, interval: float = 0.2, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what or predicate}")
        time.sleep(interval)


# --- presentation --------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str = "") -> str:
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    out = [title] if title else []
    out.append(line(cells[0]))
    out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    out.extend(line(r) for r in cells[1:])
    return "\n".join(out)


def mib(kib: float | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.1f} MiB"


def verdict(ok: bool | None) -> str:
    return {True: "MET", False: "MISSED", None: "n/a"}[ok]


def banner(name: str, argv: Sequence[str]) -> str:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        commit = "?"
    try:
        dirty = subprocess.run(
            ["git", "status", "--short", "--untracked-files=no", "payments", "workers", "project"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split("\n")
    except OSError:
        dirty = []
    changed = ", ".join(line[3:] for line in dirty if line.strip()) or "none"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    cmd = " ".join([".venv/bin/python", f"benchmarks/{name}.py", *argv])
    return (
        f"== {name} == {now}; {os.cpu_count()} cores; load {load}; HEAD {commit}"
        f"\n   uncommitted product changes measured: {changed}\n   {cmd}"
    )


# --- sampling profiler (optional: pip install py-spy into the venv) -------------------------


def pyspy_path() -> Path | None:
    path = BIN / "py-spy"
    return path if path.exists() else None


def pyspy_start(pid: int, out: Path, log: Path, *, gil: bool = True) -> Child | None:
    """Sample ``pid`` and its subprocesses into ``out`` (collapsed stacks) until pyspy_stop.

    Non-blocking, idle threads left out; with ``gil`` only threads holding the GIL count, so
    the samples show where the Python CPU goes rather than who waits for it.
    """
    exe = pyspy_path()
    if exe is None:
        print("py-spy is not installed in the venv (.venv/bin/pip install py-spy): no profile")
        return None
    argv = [str(exe), "record", "--pid", str(pid), "--subprocesses", "--nonblocking"]
    argv += ["--format", "raw", "--nolineno", "--output", str(out)]
    if gil:
        argv.append("--gil")
    spy = Child("py-spy", argv, dict(os.environ), log)
    time.sleep(1.0)  # it attaches to every process of the tree first
    return spy


def pyspy_stop(spy: Child | None) -> None:
    """Stop sampling: py-spy writes its file when interrupted."""
    if spy is None:
        return
    if spy.alive():
        spy.proc.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            spy.proc.wait(30)
    spy.stop(grace=1.0)


FOCUS = ("payments/", "workers/", "django/", "psycopg/", "gunicorn/", "kombu/", "json/")


def collapsed_summary(path: Path, *, top: int = 25, focus: Sequence[str] = FOCUS) -> str:
    """Self and inclusive sample shares per function from py-spy's collapsed (raw) stacks."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no profile at {path})"
    for line in lines:
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count
    if not total:
        return "(no samples)"

    def listing(counts: dict[str, int], keep: Sequence[str] = ("",)) -> str:
        kept = {frame: n for frame, n in counts.items() if any(k in frame for k in keep)}
        ranked = sorted(kept.items(), key=lambda kv: -kv[1])[:top]
        return "\n".join(f"  {n / total * 100:5.1f}%  {frame}" for frame, n in ranked)

    return (
        f"{total} samples (py-spy, 100 Hz per process)\n"
        f"self time (the frame on top of the stack):\n{listing(own)}\n"
        "inclusive time (the frame anywhere in the stack; only frames of "
        f"{', '.join(focus)}):\n{listing(inclusive, focus)}"
    )


# The sandbox's credentials for every benchmark that talks to it (nothing real).
SANDBOX_CREDENTIALS = {
    "api_key": "bench-api-key",
    "email": "merchant@bench.local",
    "password": "bench-password",
    "totp_secret": "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",  # 160-bit base32, sandbox only
    "ipn_secret": "bench-ipn-secret",
}


def sandbox_settings(api_url: str) -> dict[str, str]:
    """The NOWPAYMENTS_* environment that points product processes at the sandbox."""
    c = SANDBOX_CREDENTIALS
    return {
        "NOWPAYMENTS_API_URL": api_url,
        "NOWPAYMENTS_API_KEY": c["api_key"],
        "NOWPAYMENTS_EMAIL": c["email"],
        "NOWPAYMENTS_PASSWORD": c["password"],
        "NOWPAYMENTS_TOTP_SECRET": c["totp_secret"],
        "NOWPAYMENTS_IPN_SECRET": c["ipn_secret"],
    }
