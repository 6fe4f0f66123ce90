"""The embedded broker (kombu's filesystem transport): all under var/, and bounded.

First on kombu's real transport in a temporary directory: an event queue left bound by a
consumer that is gone fills with every event until the sweep expires it; task messages are
never touched; the start-of-run reset clears earlier runs' control queues. Then with a real
worker and a real Flower over the filesystem broker: Flower is killed, the worker keeps
sending events, and the broker folder stays small and nothing appears outside var/.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from queue import Empty
from typing import Any

import pytest
from celery import Celery
from kombu import Connection

from project import filesystem_broker

ROOT = Path(__file__).resolve().parents[1]
TASK_QUEUES = ("provider", "payouts", "settlement", "default")


def _app(var_dir: Path) -> Celery:
    app = Celery("broker-test", broker=filesystem_broker.URL)
    app.conf.broker_transport_options = filesystem_broker.transport_options(var_dir)
    return app


def _folders(var_dir: Path) -> tuple[Path, Path]:
    paths = filesystem_broker.folders(var_dir)
    return paths["queue"], paths["control"]


def _bound(control: Path, exchange: str = "celeryev") -> list[str]:
    path = control / f"{exchange}.exchange"
    return [row[2] for row in json.loads(path.read_text())] if path.exists() else []


def _messages(queue_folder: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in os.listdir(queue_folder):
        queue = name.partition(".")[2].removesuffix(".msg")
        counts[queue] = counts.get(queue, 0) + 1
    return counts


def _bind_event_queue(app: Celery) -> str:
    """What Flower does at start: declare its celeryev.<uuid> queue, bound to the events."""
    with app.connection_for_write() as conn:
        receiver = app.events.Receiver(conn, handlers={})
        receiver.queue(conn.default_channel).declare()
        return str(receiver.queue.name)


def _send_events(app: Celery, n: int) -> None:
    with app.events.default_dispatcher() as dispatcher:
        for _ in range(n):
            dispatcher.send("worker-heartbeat")


def _send_task(app: Celery, queue: str) -> None:
    with app.connection_for_write() as conn:
        app.send_task("workers.payments_poll", queue=queue, connection=conn)


def test_the_url_kombu_accepts_without_warning_and_folders_under_var(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert filesystem_broker.broker_url("") == "filesystem://localhost/"
    assert filesystem_broker.broker_url("filesystem://") == "filesystem://localhost/"
    assert filesystem_broker.broker_url("redis://r:6379/0") == "redis://r:6379/0"
    app = _app(tmp_path / "var")
    with caplog.at_level("WARNING"), app.connection_for_write() as conn:
        conn.ensure_connection()
        conn.default_channel  # noqa: B018 - opening it is the point
        _send_task(app, "default")
    assert not [r for r in caplog.records if "hostname" in r.getMessage()], caplog.text
    assert {p.name for p in tmp_path.iterdir()} == {"var"}
    assert {p.relative_to(tmp_path).as_posix() for p in (tmp_path / "var").rglob("*")} >= {
        "var/broker/queue",
        "var/broker/control",
    }


def test_a_reader_racing_the_writer_gets_every_message_whole(tmp_path: Path) -> None:
    # kombu's own writer creates the file before it writes it: a reader polling meanwhile
    # takes the empty file, the message is lost and the consumer fails on it (on this machine
    # 4 of 3,000 messages of 50 kB). Ours renames a complete file into place.
    options = filesystem_broker.transport_options(tmp_path / "var")
    sent, body = 2_000, "x" * 50_000
    lengths: list[int] = []
    failures: list[str] = []
    written = threading.Event()

    def connect() -> Connection:
        return Connection(filesystem_broker.URL, transport_options=options)

    def read() -> None:
        with connect() as conn:
            channel = conn.default_channel
            while True:
                # Asked before the read: an empty queue seen after the writer finished is the
                # end; one seen while it still wrote (it may finish before this thread runs
                # again) is not.
                finished = written.is_set()
                try:
                    lengths.append(len(channel._get("race")["body"]))
                except Empty:
                    if finished:
                        return
                except Exception as exc:  # noqa: BLE001 - what the test counts
                    failures.append(repr(exc))

    reader = threading.Thread(target=read)
    reader.start()
    with connect() as conn:
        for _ in range(sent):
            conn.default_channel._put("race", {"body": body})
    written.set()
    reader.join(60)
    assert failures == []
    assert lengths == [len(body)] * sent
    assert os.listdir(options["data_folder_in"]) == []


def test_our_processes_name_the_atomic_transport_by_url_and_redis_stays_redis() -> None:
    # The settings (loaded here as in the web, a worker, beat and Flower) make filesystem://
    # our transport; a URL changed to Redis, as a deployment or a test does, is Redis's (our
    # subclass of kombu's, project/redis_transport.py).
    from project import filesystem_transport, redis_transport

    with Connection(filesystem_broker.URL) as conn:
        assert type(conn.transport) is filesystem_transport.Transport
    with Connection("redis://127.0.0.1:6379/0") as conn:
        assert type(conn.transport) is redis_transport.Transport


def test_a_partial_message_a_killed_writer_left_is_swept(tmp_path: Path) -> None:
    queue_folder, control = _folders(tmp_path / "var")
    queue_folder.mkdir(parents=True)
    control.mkdir(parents=True)
    left = queue_folder / f"1_{'a' * 8}.default.msg{filesystem_broker.PARTIAL}"
    fresh = queue_folder / f"2_{'b' * 8}.default.msg{filesystem_broker.PARTIAL}"
    left.write_text('{"bo')
    fresh.write_text('{"bo')
    os.utime(left, (time.time() - 120, time.time() - 120))
    filesystem_broker.broker_sweep(
        queue_folder=queue_folder, control_folder=control, task_queues=TASK_QUEUES, max_age=60
    )
    assert sorted(os.listdir(queue_folder)) == [fresh.name], "the one being written stays"


def test_an_event_queue_nobody_reads_is_expired_and_stops_filling(tmp_path: Path) -> None:
    var_dir = tmp_path / "var"
    app = _app(var_dir)
    queue_folder, control = _folders(var_dir)
    flower_queue = _bind_event_queue(app)  # then its Flower dies without unbinding it
    _send_task(app, "provider")
    _send_events(app, 40)
    assert _messages(queue_folder) == {flower_queue: 40, "provider": 1}

    def sweep(age: float) -> dict[str, int]:
        return filesystem_broker.broker_sweep(
            queue_folder=queue_folder,
            control_folder=control,
            task_queues=TASK_QUEUES,
            max_age=60,
            now=time.time() + age,
        )

    # Younger than max_age: a live Flower may just not have read them yet.
    assert sweep(30) == {"queues": 0, "messages": 0}
    assert _bound(control) == [flower_queue]
    # Older: nobody reads that queue. Its messages go and so does its binding; the task stays,
    # however old it is.
    assert sweep(61) == {"queues": 1, "messages": 40}
    assert _bound(control) == []
    assert _messages(queue_folder) == {"provider": 1}
    _send_events(app, 40)
    assert _messages(queue_folder) == {"provider": 1}, "events now go nowhere"
    assert sweep(10_000) == {"queues": 0, "messages": 0}


def test_a_live_queue_beside_a_dead_one_keeps_its_binding(tmp_path: Path) -> None:
    var_dir = tmp_path / "var"
    app = _app(var_dir)
    queue_folder, control = _folders(var_dir)
    _bind_event_queue(app)  # a Flower that is gone
    _send_events(app, 5)
    live = _bind_event_queue(app)
    later = time.time() + 120
    # The live one was read (its messages taken); only the dead one still has old messages.
    for name in os.listdir(queue_folder):
        if live in name:
            os.unlink(queue_folder / name)
    _send_events(app, 3)
    for name in os.listdir(queue_folder):
        if live in name:
            os.utime(queue_folder / name, (later, later))  # written "now" at sweep time
    counts = filesystem_broker.broker_sweep(
        queue_folder=queue_folder,
        control_folder=control,
        task_queues=TASK_QUEUES,
        max_age=60,
        now=later,
    )
    assert counts == {"queues": 1, "messages": 8}
    assert _bound(control) == [live]
    assert _messages(queue_folder) == {live: 3}


def test_a_workers_remote_control_queue_loses_old_messages_but_keeps_its_binding(
    tmp_path: Path,
) -> None:
    var_dir = tmp_path / "var"
    app = _app(var_dir)
    queue_folder, control = _folders(var_dir)
    pidbox = "w1@host.celery.pidbox"  # what a worker named w1@host binds, stopped since
    with app.connection_for_write() as conn:
        mailbox = app.control.mailbox(conn)
        mailbox.get_queue("w1@host")(conn.default_channel).declare()  # as the worker does
    app.control.broadcast("ping")
    app.control.broadcast("ping")
    assert _messages(queue_folder) == {pidbox: 2}
    counts = filesystem_broker.broker_sweep(
        queue_folder=queue_folder,
        control_folder=control,
        task_queues=TASK_QUEUES,
        max_age=60,
        now=time.time() + 61,
    )
    assert counts == {"queues": 0, "messages": 2}
    assert _messages(queue_folder) == {}
    # The worker binds the same name when it starts again: the binding stays.
    assert _bound(control, "celery.pidbox") == [pidbox]


def test_the_reset_before_a_run_keeps_tasks_and_drops_control_queues(tmp_path: Path) -> None:
    var_dir = tmp_path / "var"
    app = _app(var_dir)
    queue_folder, control = _folders(var_dir)
    _bind_event_queue(app)
    _bind_event_queue(app)
    _send_events(app, 7)
    for queue in TASK_QUEUES:
        _send_task(app, queue)
    tables = {p.name for p in control.iterdir()}
    assert "celeryev.exchange" in tables
    counts = filesystem_broker.broker_reset(
        queue_folder=queue_folder, control_folder=control, task_queues=TASK_QUEUES
    )
    assert counts == {"messages": 14, "tables": 1}
    assert _messages(queue_folder) == dict.fromkeys(TASK_QUEUES, 1)
    assert _bound(control) == []
    assert {p.name for p in control.iterdir()} == tables - {"celeryev.exchange"}


# --- a real worker and a real Flower over the filesystem broker -------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Processes:
    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, args: list[str], env: dict[str, str], cwd: Path) -> None:
        with (self.logs / f"{name}.log").open("wb") as log:
            self.started[name] = subprocess.Popen(
                args, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.started[name].pid, sig)
        self.started[name].wait(timeout=30)

    def tails(self) -> str:
        return "\n".join(
            f"--- {p.name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-25:])
            for p in sorted(self.logs.glob("*.log"))
        )

    def stop_all(self) -> None:
        for process in self.started.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.started.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    (tmp_path / "logs").mkdir()
    running = Processes(tmp_path / "logs")
    try:
        yield running
    finally:
        running.stop_all()


def _wait(predicate: Any, *, timeout: float, what: str, processes: Processes) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{processes.tails()}")
        time.sleep(0.3)


@pytest.mark.e2e
def test_a_killed_flower_leaves_no_growing_queue_and_nothing_outside_var(
    tmp_path: Path, processes: Processes
) -> None:
    var_dir = tmp_path / "var"
    workdir = tmp_path / "workdir"  # the processes' current directory: must stay empty
    workdir.mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
        "DJANGO_DEBUG": "1",
        "PAYMENTS_VAR_DIR": str(var_dir),
        "DATABASE_URL": f"sqlite:///{var_dir / 'db.sqlite3'}",
        "TMPDIR": str(var_dir / "tmp"),
        "NOWPAYMENTS_API_KEY": "unused",
        "FLOWER_BASIC_AUTH": "ops:secret-pass",
        "CELERY_EVENT_QUEUE_EXPIRES": "4",  # seconds, for the test (60 by default)
    }
    (var_dir / "tmp").mkdir(parents=True)
    python = sys.executable
    processes.start(
        "worker",
        [
            python,
            "-m",
            "celery",
            "-A",
            "project",
            "worker",
            "-Q",
            "default",
            "-c",
            "1",
            "-n",
            "broker-test@%h",
            "-l",
            "info",
        ],
        env,
        workdir,
    )
    port = _free_port()
    processes.start(
        "flower",
        [python, "-m", "workers.flower", "--port", str(port), "--address", "127.0.0.1"],
        env,
        workdir,
    )
    queue_folder, control = _folders(var_dir)

    def flower_bound() -> bool:
        return any(q.startswith("celeryev.") for q in _bound(control))

    _wait(flower_bound, timeout=60, what="Flower's event queue", processes=processes)
    _wait(
        lambda: "ready." in (processes.logs / "worker.log").read_text(errors="replace"),
        timeout=60,
        what="the worker",
        processes=processes,
    )
    processes.kill("flower")  # SIGKILL: its queue stays bound, as after a crash
    (dead,) = _bound(control)

    # The worker's heartbeats (every 2 s) now pile up in the dead queue, until the sweep.
    seen: list[int] = []
    deadline = time.monotonic() + 25
    while time.monotonic() < deadline:
        seen.append(len(os.listdir(queue_folder)))
        time.sleep(0.5)
    assert _bound(control) == [], processes.tails()
    assert max(seen) <= 10, seen  # 4 s of events at most, not a queue that grows for ever
    assert len(os.listdir(queue_folder)) == 0, _messages(queue_folder)
    assert max(seen) >= 1, "the dead queue did receive events before it was expired"
    worker_log = (processes.logs / "worker.log").read_text(errors="replace")
    expired = [line for line in worker_log.splitlines() if "embedded broker: unbound" in line]
    assert any(dead in line for line in expired), worker_log
    # The worker's own remote-control queue stays bound, whatever the sweep found in it.
    assert [q for q in _bound(control, "celery.pidbox") if q.startswith("broker-test@")]
    assert "No hostname was supplied" not in worker_log + processes.tails()
    # Nothing written outside var/: the processes' directory is as empty as it was.
    assert list(workdir.iterdir()) == []
    assert {p.name for p in tmp_path.iterdir()} == {"var", "workdir", "logs"}
