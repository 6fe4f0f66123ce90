"""``python -m workers.flower``: Flower behind basic auth, seeing a real worker and its tasks."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from celery import Celery
from django.db import connection

from workers.flower import LaunchError, parse_credentials, resolve_credentials

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
REDIS_DB = 13  # a database of its own: flushed before and after
BROKER_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"
CREDENTIALS = ("ops", "correct-horse-battery")
REFUSAL = "Flower refuses to start without credentials"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _env(**extra: str) -> dict[str, str]:
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_DEBUG": "1",
        "DATABASE_URL": f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:"
        f"{db['PORT'] or 5432}/{db['NAME']}",
        "DATABASE_CONN_MAX_AGE": "0",
        "CELERY_BROKER_URL": BROKER_URL,
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("FLOWER_BASIC_AUTH", None)
    env.update(extra)
    return env


class Children:
    """Processes in their own process groups, logged to files, always killed at the end."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []
        self.logs = Path(tempfile.mkdtemp(prefix="flower-test-"))

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self.started.append(process)
        return process

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop_all(self) -> None:
        for process in self.started:
            _killpg(process, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for process in self.started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            _killpg(process, signal.SIGKILL)
            process.wait(timeout=10)

    def tails(self) -> str:
        return "\n".join(
            f"--- {p.name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-30:])
            for p in sorted(self.logs.glob("*.log"))
        )


def _killpg(process: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


def _wait_for(
    predicate: Callable[[], Any], *, timeout: float, what: str, children: Children
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except requests.RequestException:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what}\n{children.tails()}"
            )
        time.sleep(0.3)


def _flower(children: Children, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return children.start(
        "flower",
        [sys.executable, "-m", "workers.flower", "--port", str(port), "--address", "127.0.0.1"],
        env,
    )


@pytest.fixture
def children() -> Iterator[Children]:
    broker = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB)
    broker.flushdb()
    started = Children()
    try:
        yield started
    finally:
        started.stop_all()
        broker.flushdb()
        broker.close()


@pytest.fixture
def http() -> Iterator[requests.Session]:
    session = requests.Session()
    session.trust_env = False
    yield session
    session.close()


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_flower_needs_credentials_and_shows_the_worker_and_its_keyword_arguments(
    children: Children, http: requests.Session
) -> None:
    env = _env(FLOWER_BASIC_AUTH=f"{CREDENTIALS[0]}:{CREDENTIALS[1]},viewer:second-pair")
    node = f"flower-test-{uuid.uuid4().hex[:8]}"
    children.start(
        "worker",
        [
            str(BIN / "celery"),
            "-A",
            "project",
            "worker",
            "-Q",
            "default,provider,settlement",
            "-c",
            "1",
            "-n",
            f"{node}@%h",
            "--without-gossip",
            "--without-mingle",
            "-l",
            "info",
        ],
        env,
    )
    port = _free_port()
    flower = _flower(children, port, env)
    base = f"http://127.0.0.1:{port}"

    # Anyone can reach the port, nobody gets in without the password.
    anonymous = _wait_for(
        lambda: http.get(base + "/api/workers", timeout=5).status_code,
        timeout=20,
        what="Flower to answer",
        children=children,
    )
    assert anonymous == 401
    assert http.get(base + "/api/workers", auth=("ops", "wrong"), timeout=5).status_code == 401
    assert "correct-horse-battery" not in " ".join(_cmdline(flower.pid))

    def worker_listed() -> bool:
        answer = http.get(base + "/api/workers?refresh=1", auth=CREDENTIALS, timeout=10)
        assert answer.status_code == 200
        return any(name.startswith(node + "@") for name in answer.json())

    _wait_for(worker_listed, timeout=20, what="the worker in /api/workers", children=children)
    second = http.get(base + "/api/workers", auth=("viewer", "second-pair"), timeout=10)
    assert second.status_code == 200

    # A task called by name with keyword ids, as every task here is, shows with its kwargs.
    payment_id = str(uuid.uuid4())
    client = Celery("flower-test", broker=BROKER_URL)
    try:
        sent = client.send_task(
            "workers.payment_refresh", kwargs={"payment_id": payment_id}, queue="provider"
        )
    finally:
        client.close()

    def task_seen() -> dict[str, Any] | None:
        tasks = http.get(base + "/api/tasks", auth=CREDENTIALS, timeout=10).json()
        task = tasks.get(sent.id)
        return task if task and task.get("state") == "SUCCESS" else None

    task = _wait_for(task_seen, timeout=20, what="the task in /api/tasks", children=children)
    assert task["name"] == "workers.payment_refresh"
    assert payment_id in task["kwargs"]
    assert task["worker"].startswith(node + "@")


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return raw.decode(errors="replace").split("\0")


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_in_debug_without_credentials_a_generated_password_is_printed_and_works(
    children: Children, http: requests.Session
) -> None:
    port = _free_port()
    _flower(children, port, _env(DJANGO_DEBUG="1"))

    def printed_password() -> str | None:
        for line in children.log("flower").splitlines():
            if "generated user 'flower' password" in line:
                return line.rsplit("password", 1)[1].strip().strip("'")
        return None

    password = _wait_for(
        printed_password, timeout=20, what="the printed password", children=children
    )
    base = f"http://127.0.0.1:{port}"
    status = _wait_for(
        lambda: http.get(base + "/api/workers", auth=("flower", password), timeout=5).status_code,
        timeout=20,
        what="Flower to answer",
        children=children,
    )
    assert status == 200
    assert http.get(base + "/api/workers", timeout=5).status_code == 401


def test_outside_debug_the_launcher_refuses_to_start_without_credentials() -> None:
    env = _env(DJANGO_DEBUG="0", DJANGO_SECRET_KEY="x" * 50)
    result = subprocess.run(
        [sys.executable, "-m", "workers.flower", "--port", str(_free_port())],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0
    message = result.stderr.strip()
    assert message.startswith(REFUSAL)
    assert message.count(". ") == 0
    assert message.endswith(".")


@pytest.mark.parametrize("raw", ["ops", "ops:", ":pw", "ops:pw,nobody"])
def test_malformed_credentials_are_refused(raw: str) -> None:
    with pytest.raises(LaunchError, match="user:password pairs"):
        parse_credentials(raw)


def test_credentials_from_the_environment_are_used_as_they_are() -> None:
    pairs, generated = resolve_credentials(" a:b:c , d:e ", debug=False)
    assert pairs == ["a:b:c", "d:e"]  # a password may contain a colon
    assert generated is None


def test_debug_generates_a_long_random_password() -> None:
    first, password = resolve_credentials("", debug=True)
    second, _ = resolve_credentials("", debug=True)
    assert password is not None
    assert len(password) >= 20
    assert first == [f"flower:{password}"]
    assert first != second
