"""``make run``, the README's one command: everything starts, a deposit settles, Ctrl-C stops all.

The end-to-end test runs a copy of this working tree (committed or not) in a temporary directory
with an empty environment, on a terminal of its own (a pseudo-terminal), so that Ctrl-C is what
an operator's terminal sends. It reuses the virtualenv running the tests (``VENV=...``, and
``-o <stamp>`` so make never reinstalls it); a real first run installs into ``.venv``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import pty
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.executable).parent.parent  # the virtualenv running these tests, not resolved
FRESH_PATH = "/usr/local/bin:/usr/bin:/bin"  # nothing of ours on it, as on a fresh machine
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # honcho colours its prefixes on a terminal


def _load_run_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("run_script", ROOT / "scripts" / "run.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _procfile_queues(command: str) -> set[str]:
    found = re.search(r"--queues\s+(\S+)", command)
    assert found, command
    value = found.group(1)
    default = re.fullmatch(r"\$\{\w+:-([^}]+)\}", value)
    return set((default.group(1) if default else value).split(","))


def _queues_in_use() -> set[str]:
    import workers.tasks  # noqa: F401 - registers the tasks
    from project.celery import app
    from workers.schedules import DEFAULT_SCHEDULES

    routes = app.conf.task_routes
    tasks = {name for name in app.tasks if name.startswith("workers.")}
    assert tasks <= set(routes), f"tasks without a route: {tasks - set(routes)}"
    return {routes[name]["queue"] for name in tasks} | {entry.queue for entry in DEFAULT_SCHEDULES}


def test_every_queue_in_use_is_consumed_by_the_procfile_and_by_the_sqlite_run() -> None:
    run = _load_run_script()
    procfile = run.read_procfile(ROOT / "Procfile")
    in_use = _queues_in_use()
    served = _procfile_queues(procfile["worker"]) | _procfile_queues(procfile["settlement"])
    assert in_use <= served
    assert _procfile_queues(procfile["settlement"]) == {"settlement"}
    assert in_use <= set(run.ALL_QUEUES)


def test_the_run_starts_each_long_running_process_type_once(tmp_path: Path) -> None:
    run = _load_run_script()
    procfile = run.read_procfile(ROOT / "Procfile")
    sqlite_env = run.build_env({"PATH": FRESH_PATH}, tmp_path)
    assert list(run.processes(procfile, sqlite_env)) == [
        "sandbox",
        "web",
        "worker",
        "beat",
        "flower",
    ]
    postgres_env = run.build_env(
        {"PATH": FRESH_PATH, "DATABASE_URL": "postgres://u@h/db", "CELERY_BROKER_URL": "redis://"},
        tmp_path,
    )
    assert "WORKER_QUEUES" not in postgres_env
    assert list(run.processes(procfile, postgres_env)) == [
        "sandbox",
        "web",
        "worker",
        "settlement",
        "beat",
        "flower",
    ]
    # Secrets are generated once and kept: a second run uses the same ones.
    again = run.build_env({"PATH": FRESH_PATH}, tmp_path)
    assert again["DJANGO_SECRET_KEY"] == sqlite_env["DJANGO_SECRET_KEY"]
    assert again["FLOWER_BASIC_AUTH"] == sqlite_env["FLOWER_BASIC_AUTH"]
    assert (tmp_path / "demo-credentials.json").stat().st_mode & 0o077 == 0


def test_the_run_keeps_gunicorn_quiet_and_every_file_in_var(tmp_path: Path) -> None:
    run = _load_run_script()
    env = run.build_env({"PATH": FRESH_PATH, "GUNICORN_CMD_ARGS": "--workers 3"}, tmp_path)
    assert env["GUNICORN_CMD_ARGS"] == (
        "--workers 3 --logger-class project.access_log.AccessLogWithoutStatic --no-control-socket"
    )
    assert env["TMPDIR"] == str(tmp_path / "tmp")
    assert (tmp_path / "tmp").is_dir()
    # Only Celery's warning about running as root, by its exact start.
    assert env["PYTHONWARNINGS"].endswith(
        "ignore:You're running the worker with superuser privileges:Warning"
    )


def test_stopping_prints_one_line_and_reports_what_did_not_stop_cleanly(
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = _load_run_script()
    manager = run.Run()
    for name in ("sandbox", "web", "worker"):
        manager.add_process(name, "true")
    manager._system_print("sandbox started (pid=1)\n")
    manager._system_print("SIGINT received\n")
    manager._system_print("sending SIGTERM to web (pid 2)\n")
    manager._system_print("worker stopped (rc=0)\n")
    manager._system_print("web stopped (rc=-15)\n")
    manager._system_print("sending SIGKILL to sandbox (pid 1)\n")
    manager._system_print("sandbox stopped (rc=-9)\n")
    out = capsys.readouterr().out
    assert "sandbox started" in out
    assert "SIGKILL to sandbox" in out
    assert "sandbox stopped (rc=-9)" in out
    for quiet in ("SIGINT received", "sending SIGTERM", "worker stopped", "web stopped"):
        assert quiet not in out
    assert manager.signalled == "SIGINT"
    assert manager.summary() == "stopped sandbox, web, worker; not cleanly: sandbox (rc=-9)."


def test_a_process_failing_first_is_not_a_requested_stop(
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = _load_run_script()
    manager = run.Run()
    manager.add_process("web", "true")
    manager._system_print("web stopped (rc=3)\n")
    manager._system_print("SIGTERM received\n")  # Ctrl-C while everything is being stopped
    assert manager.signalled is None
    assert "web stopped (rc=3)" in capsys.readouterr().out


def test_without_a_terminal_the_run_stays_in_its_process_group() -> None:
    run = _load_run_script()
    group = os.getpgrp()
    terminal = run.Foreground()
    terminal.take()  # pytest's stdin is no terminal
    assert terminal.fd is None
    assert os.getpgrp() == group
    terminal.give_back()


def test_the_broker_reset_removes_a_control_folder_left_in_the_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _load_run_script()
    checkout = tmp_path / "checkout"
    (checkout / "control").mkdir(parents=True)
    (checkout / "control" / "celeryev.exchange").write_text("[]")
    monkeypatch.setattr(run, "ROOT", checkout)
    run.reset_embedded_broker(tmp_path / "var", {"CELERY_BROKER_URL": ""})
    assert not (checkout / "control").exists()
    assert "removed control/" in capsys.readouterr().out
    # A control/ folder holding anything else is somebody's: it stays.
    (checkout / "control").mkdir()
    (checkout / "control" / "notes.txt").write_text("mine")
    run.reset_embedded_broker(tmp_path / "var", {})
    assert (checkout / "control" / "notes.txt").exists()
    # Redis: nothing to reset.
    (checkout / "control" / "notes.txt").unlink()
    run.reset_embedded_broker(tmp_path / "var", {"CELERY_BROKER_URL": "redis://h:6379/0"})
    assert (checkout / "control").exists()


# --- the whole system ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _copy_working_tree(dest: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        if name.split("/", 1)[0] in {".venv", "var"}:
            continue
        source = ROOT / name
        if not source.is_file():
            continue  # deleted in the working tree
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)  # keeps mtimes: make must not think pyproject changed


def _processes_under(directory: Path) -> list[int]:
    """Pids of live processes whose working directory is inside directory."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and (cwd == directory or directory in cwd.parents):
            found.append(int(entry.name))
    return found


def _port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


class System:
    """``make run`` on a pseudo-terminal of its own (its controlling terminal), output to a file."""

    def __init__(self, tree: Path, ports: dict[str, int]) -> None:
        self.tree = tree
        self.ports = ports
        self.log_path = tree.parent / "make-run.log"
        self.home = tree.parent / "home"
        self.home.mkdir()
        self.env = {"PATH": FRESH_PATH, "HOME": str(self.home), "LANG": "C.UTF-8"}
        self.process: subprocess.Popen[bytes] | None = None
        self.terminal: int | None = None  # the pseudo-terminal's master side
        self.http = requests.Session()
        self.http.trust_env = False

    def start(self) -> None:
        stamp = VENV / ".installed-stamp"
        # setsid --ctty: make leads a session of its own with the terminal as its controlling
        # terminal, in its foreground, as a shell would start it.
        args = ["setsid", "--ctty", "make", "run", f"VENV={VENV}", "-o", str(stamp)]
        args += [f"{name}={port}" for name, port in self.ports.items()]
        master, slave = pty.openpty()
        self.process = subprocess.Popen(
            args, cwd=self.tree, env=self.env, stdin=slave, stdout=slave, stderr=slave
        )
        os.close(slave)
        self.terminal = master
        threading.Thread(target=self._record, args=(master,), daemon=True).start()

    def _record(self, master: int) -> None:
        with self.log_path.open("wb", buffering=0) as log:
            while True:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every process holding the terminal is gone
                    return
                if not data:
                    return
                log.write(data)

    def ctrl_c(self) -> None:
        """What the terminal sends on Ctrl-C: SIGINT to its foreground process group."""
        assert self.terminal is not None
        os.write(self.terminal, b"\x03")

    def log(self) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return ANSI.sub("", text.replace("\r", ""))

    def url(self, name: str, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}{path}"

    def wait_for(self, predicate: Callable[[], Any], *, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"make run exited while waiting for {what}\n{self.tail()}")
            try:
                value = predicate()
            except (requests.RequestException, sqlite3.Error):
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {what}\n{self.tail()}"
                )
            time.sleep(0.5)

    def answers(self, name: str, path: str) -> bool:
        self.http.get(self.url(name, path), timeout=3)
        return True

    def manage(self, *args: str) -> str:
        """manage.py with the environment of the run (scripts/run.py manage), as the README."""
        env = {**self.env, **{name: str(port) for name, port in self.ports.items()}}
        result = subprocess.run(
            [str(VENV / "bin" / "python"), "scripts/run.py", "manage", *args],
            cwd=self.tree,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        database = self.tree / "var" / "db.sqlite3"
        with contextlib.closing(
            sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10)
        ) as connection:
            return connection.execute(sql, params).fetchall()

    def tail(self, lines: int = 80) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def kill_everything(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        for pid in _processes_under(self.tree):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.terminal is not None:
            os.close(self.terminal)
            self.terminal = None
        self.http.close()


@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    tree = tmp_path / "checkout"
    _copy_working_tree(tree)
    ports = {"PORT": _free_port(), "SANDBOX_PORT": _free_port(), "FLOWER_PORT": _free_port()}
    running = System(tree, ports)
    try:
        yield running
    finally:
        running.kill_everything()


DEPOSIT = """
import json
from decimal import Decimal
from django.contrib.auth import get_user_model
from payments.services.deposits import payment_create
demo = get_user_model().objects.get(username="demo")
payment = payment_create(user_id=demo.pk, amount_usd=Decimal("25.00"), currency_code="USDTTRC20")
print(json.dumps({"id": str(payment.pk), "provider_id": payment.provider_payment_id,
                  "user_id": demo.pk}))
"""


@pytest.mark.e2e
@pytest.mark.slow
def test_make_run_serves_a_settling_deposit_and_ctrl_c_stops_everything(system: System) -> None:
    # An earlier run's broker tables in the checkout (where kombu used to write them).
    (system.tree / "control").mkdir()
    (system.tree / "control" / "celeryev.exchange").write_text('[["#", "", "celeryev.old"]]')
    system.start()

    # Everything answers, and demo_setup has printed the URLs and credentials.
    system.wait_for(
        lambda: system.answers("SANDBOX_PORT", "/v1/status"), timeout=120, what="sandbox"
    )
    system.wait_for(lambda: system.answers("PORT", "/admin/login/"), timeout=120, what="web")
    system.wait_for(
        lambda: system.answers("FLOWER_PORT", "/healthcheck"), timeout=120, what="Flower"
    )
    system.wait_for(lambda: "Demo ready" in system.log(), timeout=120, what="demo_setup")
    log = system.log()
    flower_auth = re.search(r"basic auth\s+(\S+) / (\S+)", log)
    admin = re.search(r"superuser\s+(\S+) / (\S+)", log)
    assert flower_auth, log
    assert admin, log
    stored = json.loads((system.tree / "var" / "demo-credentials.json").read_text())
    assert stored["admin"] == {"username": admin.group(1), "password": admin.group(2)}

    # The root is the user pages, behind their sign-in (demo_setup says where they are);
    # static files are served but not access-logged.
    assert "User pages" in log
    root = system.http.get(system.url("PORT", "/"), allow_redirects=False, timeout=10)
    assert root.status_code == 302
    assert root.headers["Location"] == "/login/?next=/"
    css = system.http.get(system.url("PORT", "/static/admin/css/base.css"), timeout=10)
    assert css.status_code == 200
    missing = system.http.get(system.url("PORT", "/static/admin/css/none.css"), timeout=10)
    assert missing.status_code == 404
    assert system.http.get(system.url("PORT", "/favicon.ico"), timeout=10).status_code == 204

    # A deposit for the demo user, paid in the sandbox, is credited by the running system once.
    created = json.loads(system.manage("shell", "-c", DEPOSIT).strip().splitlines()[-1])
    completed = system.http.post(
        system.url("SANDBOX_PORT", f"/_sandbox/payments/{created['provider_id']}/complete"),
        timeout=10,
    )
    assert completed.status_code == 200, completed.text

    def credited() -> bool:
        balance = system.query(
            "SELECT balance_usd FROM payments_userbalance WHERE user_id = ?", created["user_id"]
        )
        return bool(balance) and Decimal(str(balance[0][0])) == Decimal("25.00")

    system.wait_for(credited, timeout=60, what="the deposit to be credited")
    time.sleep(3)  # late IPNs or a poll must not credit it again
    deposits = system.query(
        "SELECT amount_usd FROM payments_transaction WHERE user_id = ? AND transaction_type = ?",
        created["user_id"],
        "deposit",
    )
    assert [Decimal(str(row[0])) for row in deposits] == [Decimal("25.00")]
    status = system.query(
        "SELECT status FROM payments_payment WHERE id = ?", created["id"].replace("-", "")
    )
    assert status == [("completed",)]

    # Flower, with the printed credentials, lists the worker.
    def worker_listed() -> bool:
        answer = system.http.get(
            system.url("FLOWER_PORT", "/api/workers?refresh=1"),
            auth=(flower_auth.group(1), flower_auth.group(2)),
            timeout=10,
        )
        return answer.status_code == 200 and any(n.startswith("worker@") for n in answer.json())

    system.wait_for(worker_listed, timeout=30, what="the worker in Flower")
    anonymous = system.http.get(system.url("FLOWER_PORT", "/api/workers"), timeout=5)
    assert anonymous.status_code == 401

    # Quiet logs: no warning nobody needs, every request but the static files' logged.
    log = system.log()
    access = [line for line in log.splitlines() if '" 200 ' in line or '" 404 ' in line]
    assert any('"GET /admin/login/ HTTP/1.1" 200' in line for line in access), log
    assert any('"GET /static/admin/css/none.css HTTP/1.1" 404' in line for line in access)
    assert not [line for line in access if '"GET /static/admin/css/base.css' in line]
    warnings = [line for line in log.splitlines() if "WARNING" in line or "Warning" in line]
    # The one this test asked for, once (Django's own console handler no longer repeats it).
    assert len(warnings) == 1, warnings
    assert warnings[0].endswith("WARNING django.request Not Found: /static/admin/css/none.css")

    # The broker keeps everything in var/: the old control/ is gone and no new one appears.
    assert not (system.tree / "control").exists()
    assert "removed control/" in log
    assert (system.tree / "var" / "broker" / "control" / "celeryev.exchange").exists()

    # Ctrl-C on the terminal: everything stops, one line says so, make exits 0.
    assert system.process is not None
    pids = _processes_under(system.tree)
    assert len(pids) >= 5, pids
    started = time.monotonic()
    system.ctrl_c()
    assert system.process.wait(timeout=30) == 0, system.tail()
    assert time.monotonic() - started < 30
    deadline = time.monotonic() + 5
    while _processes_under(system.tree) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_under(system.tree) == [], system.tail()
    assert not [pid for pid in pids if Path(f"/proc/{pid}").exists()]
    for name, port in system.ports.items():
        assert not _port_open(port), f"{name}={port} still open"
    time.sleep(0.5)  # the last output through the terminal
    ending = system.log().split("Ctrl-C stops them all.", 1)[1]
    stopped = [line for line in ending.splitlines() if line.startswith("[make run]")]
    assert stopped == ["[make run] stopped sandbox, web, worker, beat, flower."], ending
    assert "Error 130" not in ending
    log = system.log()
    assert "Traceback" not in log, log[log.find("Traceback") - 300 :][:4000]
    assert "sending SIGTERM" not in ending


# --- demo_setup ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_demo_setup_is_idempotent_and_keeps_its_printed_passwords(
    sandbox: Any, settings: Any, tmp_path: Path
) -> None:
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from payments.models import Currency, UserBalance

    settings.DEBUG = True
    settings.FLOWER_BASIC_AUTH = "flower:flower-pw"
    path = tmp_path / "demo-credentials.json"

    def setup() -> str:
        out = io.StringIO()
        call_command("demo_setup", credentials=path, wait=5, stdout=out)
        return out.getvalue()

    first = setup()
    stored = json.loads(path.read_text())
    users = get_user_model().objects
    admin = users.get(username="admin")
    assert admin.is_superuser
    assert admin.check_password(stored["admin"]["password"])
    assert users.get(username="demo").check_password(stored["demo"]["password"])
    assert UserBalance.objects.filter(user__username="demo").exists()
    assert Currency.objects.filter(code="USDTTRC20").exists()
    assert f"admin / {stored['admin']['password']}" in first
    assert "flower / flower-pw" in first
    assert path.stat().st_mode & 0o077 == 0

    admin.set_password("changed-by-someone")
    admin.save()
    second = setup()
    assert json.loads(path.read_text()) == stored
    assert users.get(username="admin").check_password(stored["admin"]["password"])
    assert users.filter(username__in=["admin", "demo"]).count() == 2
    assert f"demo / {stored['demo']['password']}" in second
    # One staff account per operator role, each in its group only, printed with its password.
    for role in ("viewer", "approver", "operator", "supervisor"):
        member = users.get(username=role)
        assert member.is_staff
        assert not member.is_superuser
        assert [g.name for g in member.groups.all()] == [role]
        assert member.check_password(stored[role]["password"])
        assert f"{role} / {stored[role]['password']}" in second


@pytest.mark.django_db
def test_demo_setup_refuses_outside_debug(settings: Any, tmp_path: Path) -> None:
    from django.core.management import CommandError, call_command

    settings.DEBUG = False
    with pytest.raises(CommandError, match="DJANGO_DEBUG=1"):
        call_command("demo_setup", credentials=tmp_path / "c.json", wait=0)
    assert not (tmp_path / "c.json").exists()
