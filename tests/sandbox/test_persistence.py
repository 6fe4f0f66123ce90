"""State across restarts: ``--state-file`` / ``SandboxServer(state_file=...)``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import requests

from sandbox import SandboxServer
from sandbox.config import config_from_args
from sandbox.persist import load
from tests.sandbox.conftest import API_KEY, IPN_SECRET, TRON_ADDRESS, Api, json_of
from tests.sandbox.test_cli import ROOT, _free_port


def _server(path: Path) -> SandboxServer:
    return SandboxServer(port=0, api_key=API_KEY, ipn_secret=IPN_SECRET, state_file=str(path))


def test_restart_keeps_payments_payouts_clock_and_ids(tmp_path: Path) -> None:
    path = tmp_path / "var" / "sandbox-state.json"
    with _server(path) as first:
        api = Api(first.url)
        done = api.create_payment(price_amount="123.456789012345678901")
        partial = api.create_payment(pay_currency="eth")
        waiting = api.create_payment(pay_currency="usdttrc20")
        auto = api.create_payment(case="success")  # its steps are scheduled events
        first.control.complete(done["payment_id"])
        first.control.pay(partial["payment_id"], "0.001")
        first.control.advance(partial["payment_id"], "partially_paid")
        items = [{"address": TRON_ADDRESS, "currency": "usdttrc20", "amount": "12.345678"}]
        batch = json_of(api.post("/v1/payout", {"withdrawals": items}, jwt=True))
        first.control.set_quirks(pay_amount_as_string=True)
        first.control.advance_clock(3600)
        clock = first.control.clock()
        ids = [p["payment_id"] for p in (done, partial, waiting, auto)]
        before = {pid: api.get(f"/v1/payment/{pid}").text for pid in ids[:3]}
        balance = api.get("/v1/balance").text
        payout = api.get(f"/v1/payout/{batch['id']}").text
        api.session.close()

    saved = json.loads(path.read_text())
    assert saved["payments"][0]["price_amount"] == "123.456789012345678901"  # a string
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left

    with _server(path) as second:
        api = Api(second.url)
        assert {pid: api.get(f"/v1/payment/{pid}").text for pid in ids[:3]} == before
        exact = second.state.payments[int(ids[0])].price_amount  # JSON shows a JS double
        assert exact == Decimal("123.456789012345678901")
        assert api.get("/v1/balance").text == balance
        assert api.get(f"/v1/payout/{batch['id']}").text == payout
        assert second.control.quirks()["pay_amount_as_string"] is True
        now = second.control.clock()
        assert now["offset_ms"] >= clock["offset_ms"]
        assert now["epoch_ms"] >= clock["epoch_ms"]
        # the clock had moved an hour: the auto-played payment went all the way meanwhile
        assert api.status(ids[3])["payment_status"] == "finished"
        # the waiting payment can still be paid
        second.control.pay(ids[2])
        assert second.control.complete(ids[2])["payment_status"] == "finished"
        newer = api.create_payment()
        assert int(newer["payment_id"]) > max(int(i) for i in ids)
        assert len(second.control.payments()) == 5
        api.session.close()

    with _server(path) as third:
        statuses = [p["payment_status"] for p in third.control.payments()]
        assert statuses == ["finished", "partially_paid", "finished", "finished", "waiting"]


def test_changes_reach_the_file_within_a_second(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    with _server(path) as server:
        api = Api(server.url)
        pid = api.create_payment()["payment_id"]
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            data = load(path)
            if data and any(str(p["id"]) == pid for p in data["payments"]):
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the new payment was not saved within a second")
        api.session.close()


def test_tests_stay_memory_only_by_default(tmp_path: Path) -> None:
    with SandboxServer(port=0) as server:
        assert server.config.state_file is None
        assert server._persister is None


def test_state_file_flag_and_environment(tmp_path: Path) -> None:
    _, _, config = config_from_args(["--state-file", "var/a.json"], {"SANDBOX_STATE_FILE": "b"})
    assert config.state_file == "var/a.json"
    _, _, config = config_from_args([], {"SANDBOX_STATE_FILE": "var/b.json"})
    assert config.state_file == "var/b.json"
    assert config_from_args([], {})[2].state_file is None


def test_cli_saves_on_sigterm_and_loads_on_start(tmp_path: Path) -> None:
    path = tmp_path / "cli-state.json"
    env = {**os.environ, "SANDBOX_API_KEY": API_KEY, "PYTHONUNBUFFERED": "1"}

    def run() -> tuple[subprocess.Popen[str], str]:
        port = _free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "sandbox", "--port", str(port), "--state-file", str(path)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        assert process.stdout.readline().strip().endswith(str(port))
        return process, f"http://127.0.0.1:{port}"

    process, url = run()
    try:
        api = Api(url)
        pid = api.create_payment()["payment_id"]
        requests.post(url + "/_sandbox/clock", json={"advance_seconds": "60"}, timeout=5)
        api.session.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        data = load(path)
        assert data is not None
        assert [str(p["id"]) for p in data["payments"]] == [pid]
        process, url = run()
        api = Api(url)
        assert api.status(pid)["payment_status"] == "waiting"
        api.session.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
