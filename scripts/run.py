"""``make run``: the whole system on one machine, from the Procfile, with the NowPayments sandbox.

Runs the Procfile's ``release`` line (migrate, schedules), then starts ``web``, the worker(s),
``beat``, ``flower`` and the sandbox together under honcho's process manager, and once the
sandbox answers runs ``manage.py demo_setup`` (currencies, an admin and a demo user) and prints
the URLs and credentials. Ctrl-C (SIGINT), SIGTERM or closing the terminal stops every process;
the run then says so in one line and exits 0. On a terminal it runs in a process group of its
own in the terminal's foreground, so that Ctrl-C reaches it and not ``make``, which would
otherwise die of the signal (``make: *** Error 130``).

With ``DATABASE_URL`` unset it runs on a SQLite file and kombu's filesystem broker in ``var/``,
with one worker consuming every queue (SQLite serialises writers); the broker's event and
control queues of earlier runs are cleared before anything starts. With ``DATABASE_URL`` set to
PostgreSQL (and ``CELERY_BROKER_URL`` to Redis) it runs the provider and settlement workers
apart, as in production. Ports: ``PORT`` (web, 8000), ``SANDBOX_PORT`` (8765), ``FLOWER_PORT``
(5555).

Run it with the project's virtualenv Python (``make run`` does); needs honcho from there.
``run.py manage <args>`` runs ``manage.py <args>`` with the same environment (e.g. ``shell``).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from honcho import manager as honcho_manager
from honcho.environ import parse_procfile

if str(Path(__file__).resolve().parent) not in sys.path:  # loaded by path (the tests)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from supervise import Foreground, Run, on_hangup_or_quit, on_suspend, say

ROOT = Path(__file__).resolve().parent.parent
CREDENTIALS_FILE = "demo-credentials.json"

# The sandbox's secrets, shared with the app: a local simulator, so fixed and documented.
SANDBOX_SECRETS = {
    "API_KEY": "sandbox-api-key",
    "IPN_SECRET": "sandbox-ipn-secret",
    "EMAIL": "merchant@sandbox.local",
    "PASSWORD": "sandbox-password",
    # 160 bits: pyotp refuses the sandbox's 80-bit default.
    "TOTP_SECRET": "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
}
# Demo-friendly first-install intervals of the beat schedules (seconds).
DEMO_SCHEDULES = {
    "workers.payments_poll": 15,
    "workers.payments_register_sweep": 10,
    "workers.payments_settle_sweep": 15,
    "workers.withdrawals_payout_sweep": 15,
}
STARTUP_TIMEOUT = 120.0
# Seconds between SIGTERM and SIGKILL (honcho's default is 5): a Celery worker's warm shutdown
# over the filesystem broker takes about 7 s, and it should finish the tasks it is running.
STOP_GRACE_SECONDS = 15
# Every queue a task or schedule uses (tests/test_run_command.py keeps this list complete).
ALL_QUEUES = ("provider", "payouts", "settlement", "default")
# gunicorn in the run: no access line per static file (project/access_log.py), and no control
# socket in the user's home directory (nothing of the run is written outside var/).
GUNICORN_ARGS = "--logger-class project.access_log.AccessLogWithoutStatic --no-control-socket"
# Celery warns at every worker start when it runs as root. On this local demo (often a
# container where everything is root) that is nothing to act on; production images run as an
# unprivileged user (Dockerfile) and keep the warning. Only that message is ignored.
ROOT_WARNING_FILTER = "ignore:You're running the worker with superuser privileges:Warning"


def read_procfile(path: Path) -> dict[str, str]:
    return dict(parse_procfile(path.read_text()).processes)


def is_sqlite(database_url: str) -> bool:
    return not database_url or database_url.startswith("sqlite:")


def load_json(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_json(path: Path, data: Mapping[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(dict(data), handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.replace(tmp, path)


def run_secrets(var_dir: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """A Django secret key and Flower credentials, generated once and kept in var/.

    Every web worker must share one secret key, or a login signed by one is refused by the next.
    """
    path = var_dir / CREDENTIALS_FILE
    stored = load_json(path)
    changed = False
    if not isinstance(stored.get("django_secret_key"), str):
        stored["django_secret_key"] = secrets.token_urlsafe(50)
        changed = True
    flower = stored.get("flower")
    if not isinstance(flower, dict) or not flower.get("password"):
        flower = {"username": "flower", "password": secrets.token_urlsafe(16)}
        stored["flower"] = flower
        changed = True
    if changed:
        save_json(path, stored)
    return {
        "DJANGO_SECRET_KEY": environ.get("DJANGO_SECRET_KEY") or str(stored["django_secret_key"]),
        "FLOWER_BASIC_AUTH": environ.get("FLOWER_BASIC_AUTH")
        or f"{flower['username']}:{flower['password']}",
    }


def build_env(environ: Mapping[str, str], var_dir: Path) -> dict[str, str]:
    """The environment every process of the run shares."""
    env = dict(environ)
    bin_dir = str(Path(sys.executable).parent)  # the venv's bin, not the interpreter it links to
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "/usr/bin:/bin")])
    # Import this checkout's code in every process, however the virtualenv was installed.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.setdefault("PORT", "8000")
    env.setdefault("SANDBOX_PORT", "8765")
    env.setdefault("FLOWER_PORT", "5555")
    web = f"http://127.0.0.1:{env['PORT']}"
    env.update(
        DJANGO_DEBUG="1",
        PYTHONUNBUFFERED="1",
        PAYMENTS_VAR_DIR=str(var_dir),
        WEB_HOST="127.0.0.1",
        FLOWER_ADDRESS="127.0.0.1",
        PAYMENTS_ENABLED="1",
        PAYMENTS_PAYOUTS_ENABLED="1",  # the sandbox pays out approved withdrawals
        PAYMENTS_PUBLIC_BASE_URL=web,
        NOWPAYMENTS_API_URL=f"http://127.0.0.1:{env['SANDBOX_PORT']}/v1",
    )
    for name, value in SANDBOX_SECRETS.items():
        env[f"NOWPAYMENTS_{name}"] = value
        env[f"SANDBOX_{name}"] = value
    # Every URL of the run is local: never send it through a proxy from the environment.
    for name in ("NO_PROXY", "no_proxy"):
        env[name] = ",".join(filter(None, [env.get(name), "127.0.0.1", "localhost"]))
    env.setdefault("SANDBOX_STEP_SECONDS", "2")
    env.setdefault("SANDBOX_IPN_RETRY_INTERVAL", "5")
    env.setdefault("WORKERS_SCHEDULE_SECONDS", json.dumps(DEMO_SCHEDULES))
    env["GUNICORN_CMD_ARGS"] = " ".join(filter(None, [env.get("GUNICORN_CMD_ARGS"), GUNICORN_ARGS]))
    env["PYTHONWARNINGS"] = ",".join(filter(None, [env.get("PYTHONWARNINGS"), ROOT_WARNING_FILTER]))
    # kombu's filesystem broker moves each message it reads to the temporary directory before
    # deleting it: keep that in var/ too.
    (var_dir / "tmp").mkdir(parents=True, exist_ok=True)
    env["TMPDIR"] = str(var_dir / "tmp")
    env.update(run_secrets(var_dir, environ))
    if is_sqlite(env.get("DATABASE_URL", "")):
        # One worker on every queue, few processes: SQLite lets one writer in at a time.
        env["WORKER_QUEUES"] = ",".join(ALL_QUEUES)
        env.setdefault("WORKER_CONCURRENCY", "2")
    return env


def processes(procfile: Mapping[str, str], env: Mapping[str, str]) -> dict[str, str]:
    """The process types to start: the sandbox, then the Procfile's long-running ones."""
    wanted = ["web", "worker", "beat", "flower"]
    if not is_sqlite(env.get("DATABASE_URL", "")):
        wanted.insert(2, "settlement")
    missing = [name for name in wanted if name not in procfile]
    if missing:
        raise SystemExit(f"The Procfile has no {', '.join(missing)} process type.")
    # The sandbox keeps its payments across restarts, as the real provider does.
    state = Path(env.get("PAYMENTS_VAR_DIR", "var")) / "sandbox-state.json"
    sandbox = (
        f"python -m sandbox --host 127.0.0.1 --port {shlex.quote(env['SANDBOX_PORT'])}"
        f" --state-file {shlex.quote(str(state))}"
    )
    commands = {name: procfile[name] for name in wanted}
    # Flower inspects the workers as it starts: it waits for one to answer, or warns for nothing.
    commands["flower"] += f" --wait-for-workers {int(STARTUP_TIMEOUT / 2)}"
    return {"sandbox": sandbox, **commands}


def reset_embedded_broker(var_dir: Path, env: Mapping[str, str]) -> None:
    """The filesystem broker: drop earlier runs' event and control queues, tidy the checkout."""
    if env.get("CELERY_BROKER_URL", "").strip() and not env["CELERY_BROKER_URL"].startswith(
        "filesystem:"
    ):
        return
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from project import filesystem_broker

    paths = filesystem_broker.folders(var_dir)
    filesystem_broker.broker_reset(
        queue_folder=paths["queue"], control_folder=paths["control"], task_queues=ALL_QUEUES
    )
    # Before the control folder moved to var/broker, kombu wrote it into the checkout.
    legacy = ROOT / "control"
    if legacy.is_dir() and all(entry.suffix == ".exchange" for entry in legacy.iterdir()):
        shutil.rmtree(legacy)
        say("removed control/ (the broker's tables of earlier runs; they are in var/ now)")


def exec_form(command: str) -> str:
    """``exec`` a simple command, so that the process honcho signals is the program itself."""
    if re.search(r"&&|\|\||[;|&`()<>]|\$\(", command):
        return command
    return "exec " + command


def ports_in_use(env: Mapping[str, str]) -> list[str]:
    busy = []
    for name in ("PORT", "SANDBOX_PORT", "FLOWER_PORT"):
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", int(env[name])))
            except OSError:
                busy.append(f"{name}={env[name]}")
    return busy


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def answers(url: str, timeout: float = 2.0) -> bool:
    """True once something speaks HTTP at url (any status, 401 included)."""
    try:
        with _DIRECT.open(url, timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


class Setup(threading.Thread):
    """Runs demo_setup once the sandbox answers, then says when web and Flower are up."""

    def __init__(self, env: Mapping[str, str]) -> None:
        super().__init__(name="demo-setup", daemon=True)
        self.env = dict(env)
        self.failed = False
        self.stopping = threading.Event()
        self.child: subprocess.Popen[bytes] | None = None

    def run(self) -> None:
        env = self.env
        command = [
            sys.executable,
            "manage.py",
            "demo_setup",
            "--wait",
            str(STARTUP_TIMEOUT),
            "--flower-url",
            f"http://127.0.0.1:{env['FLOWER_PORT']}",
        ]
        self.stopping.wait(1.0)  # let the manager start its processes first
        if self.stopping.is_set():
            return
        self.child = subprocess.Popen(command, cwd=ROOT, env=env)  # noqa: S603 - fixed argv
        returncode = self.child.wait()
        if self.stopping.is_set() or returncode < 0:
            return  # stopped with everything else (Ctrl-C)
        if returncode != 0:
            self._fail("demo_setup failed (see above); stopping everything.")
            return
        urls = {
            "web": f"http://127.0.0.1:{env['PORT']}/admin/login/",
            "Flower": f"http://127.0.0.1:{env['FLOWER_PORT']}/healthcheck",
        }
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self.stopping.is_set():
            waiting = [name for name, url in urls.items() if not answers(url)]
            if not waiting:
                say("web, worker, beat, Flower and the sandbox are up. Ctrl-C stops them all.")
                return
            if time.monotonic() > deadline:
                self._fail(f"{' and '.join(waiting)} did not answer; stopping everything.")
                return
            self.stopping.wait(0.5)

    def _fail(self, message: str) -> None:
        self.failed = True
        say(message)
        os.kill(os.getpid(), signal.SIGTERM)  # the manager's handler stops every process

    def stop(self) -> None:
        self.stopping.set()
        child = self.child
        if child is not None and child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()


def manage(args: list[str], env: Mapping[str, str]) -> int:
    """``run.py manage shell``: manage.py with the environment of the running system."""
    command = [sys.executable, "manage.py", *args]
    os.execve(command[0], command, dict(env))  # noqa: S606 - our interpreter, the user's args
    return 0  # pragma: no cover - execve does not return


def main(argv: list[str]) -> int:
    os.chdir(ROOT)
    var_dir = Path(os.environ.get("PAYMENTS_VAR_DIR") or ROOT / "var").resolve()
    env = build_env(os.environ, var_dir)
    if argv[:1] == ["manage"]:
        return manage(argv[1:], env)
    if argv:
        say("usage: run.py [manage <manage.py arguments>]")
        return 2
    busy = ports_in_use(env)
    if busy:
        say(f"Port(s) already in use: {', '.join(busy)}. Stop what uses them or pick others.")
        return 1
    terminal = Foreground()
    terminal.take()
    for signum in (signal.SIGHUP, signal.SIGQUIT):
        signal.signal(signum, on_hangup_or_quit)
    signal.signal(signal.SIGTSTP, on_suspend)
    try:
        return run(env, var_dir)
    except KeyboardInterrupt:
        say("interrupted before everything started; nothing is left running.")
        return 0
    finally:
        terminal.give_back()


def run(env: dict[str, str], var_dir: Path) -> int:
    """The release step, then every process under honcho until one stops or a signal comes."""
    procfile = read_procfile(ROOT / "Procfile")
    database = env.get("DATABASE_URL") or f"SQLite in {var_dir}"
    broker = env.get("CELERY_BROKER_URL") or f"the filesystem broker in {var_dir}"
    say(f"database: {database.split('@')[-1]}; broker: {broker.split('@')[-1]}")

    say("release: " + procfile["release"])
    # The Procfile's own line, run by a shell as honcho or a platform would run it.
    release = subprocess.run(  # noqa: S602
        procfile["release"], shell=True, cwd=ROOT, env=env, check=False
    )
    if release.returncode != 0:
        say("the release step failed; nothing was started.")
        return release.returncode
    reset_embedded_broker(var_dir, env)

    honcho_manager.KILL_WAIT = STOP_GRACE_SECONDS
    manager = Run()
    for name, command in processes(procfile, env).items():
        manager.add_process(name, exec_form(command), env=dict(env), cwd=str(ROOT))
    setup = Setup(env)
    setup.start()
    try:
        manager.loop()
    finally:
        setup.stop()
        manager.stopper.kill_leftovers()
    if setup.failed:
        return 1
    if manager.signalled is not None:
        say(manager.summary())
        return 0  # stopped because it was asked to
    return manager.returncode or 1  # a process exited on its own: everything was stopped


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
