"""IPN delivery: signed over the JS-style canonical body, retried on failure, off without secret."""

from __future__ import annotations

import json
import time
from decimal import Decimal

import pytest

from payments.services.providers.nowpayments.signature import sign_ipn, verify_ipn
from sandbox import SandboxServer
from tests.sandbox.conftest import IPN_SECRET, Api, Receiver


def _payload(raw: bytes) -> dict[str, object]:
    return json.loads(raw, parse_float=Decimal)


def test_payment_ipns_are_signed_and_verifiable(
    sandbox: SandboxServer, api: Api, receiver: Receiver
) -> None:
    payment = api.create_payment(
        price_amount=15, ipn_callback_url=receiver.url, order_description="Café ☕ — 日本"
    )
    sandbox.control.complete(payment["payment_id"])
    received = receiver.wait_for(4)
    statuses = []
    for item in received:
        assert item.path == "/ipn"
        assert item.headers["content-type"] == "application/json"
        assert verify_ipn(item.body, item.headers["x-nowpayments-sig"], IPN_SECRET)
        assert not verify_ipn(item.body, item.headers["x-nowpayments-sig"], "other")
        body = _payload(item.body)
        assert sign_ipn(body, IPN_SECRET) == item.headers["x-nowpayments-sig"]
        statuses.append(body["payment_status"])
    assert statuses == ["confirming", "confirmed", "sending", "finished"]
    last = _payload(received[-1].body)
    assert last["payment_id"] == int(payment["payment_id"])
    assert isinstance(last["purchase_id"], str)
    assert last["order_description"] == "Café ☕ — 日本"
    assert set(last["fee"]) == {"currency", "depositFee", "withdrawalFee", "serviceFee"}
    assert all(
        last["fee"][k] < Decimal("0.0001") for k in ("depositFee", "withdrawalFee", "serviceFee")
    )
    raw = received[-1].body.decode()
    assert "Café ☕ — 日本" in raw  # not \\u-escaped
    assert '"depositFee":0.00001' in raw  # JS number formatting, not 1e-05
    assert not raw.startswith(
        '{"actually_paid"'
    )  # the body is sent unsorted; only the signature sorts


def test_ipn_log_records_deliveries(sandbox: SandboxServer, api: Api, receiver: Receiver) -> None:
    payment = api.create_payment(ipn_callback_url=receiver.url)
    sandbox.control.pay(payment["payment_id"])
    receiver.wait_for(1)
    log = sandbox.control.wait_for(lambda: [e for e in sandbox.control.ipn_log() if e["delivered"]])
    entry = log[0]
    assert entry["url"] == receiver.url
    assert entry["attempts"] == 1
    assert entry["responses"] == [200]
    assert entry["status"] == "confirming"
    assert verify_ipn(entry["body"].encode(), entry["signature"], IPN_SECRET)


def test_retry_on_500_with_same_body_and_signature(
    sandbox: SandboxServer, api: Api, receiver: Receiver
) -> None:
    receiver.plan = [(500, 0.0), (503, 0.0)]
    payment = api.create_payment(ipn_callback_url=receiver.url)
    sandbox.control.pay(payment["payment_id"])
    received = receiver.wait_for(3)
    assert len({r.body for r in received}) == 1
    assert len({r.headers["x-nowpayments-sig"] for r in received}) == 1
    log = sandbox.control.wait_for(lambda: [e for e in sandbox.control.ipn_log() if e["delivered"]])
    assert log[0]["responses"] == [500, 503, 200]
    assert log[0]["attempts"] == 3


def test_retries_stop_after_the_configured_count(
    sandbox: SandboxServer, api: Api, receiver: Receiver
) -> None:
    receiver.plan = [(500, 0.0)] * 10
    payment = api.create_payment(ipn_callback_url=receiver.url)
    sandbox.control.pay(payment["payment_id"])
    receiver.wait_for(4)  # first send + 3 retries
    time.sleep(0.5)
    (entry,) = sandbox.control.ipn_log()
    assert entry["attempts"] == 4
    assert entry["delivered"] is False
    assert entry["pending"] is False
    assert len(receiver.received) == 4


def test_retry_interval_follows_the_sandbox_clock(api: Api, receiver: Receiver) -> None:
    with SandboxServer(api_key=api.api_key, ipn_secret="s", ipn_retry_interval=60) as server:
        client = Api(server.url)
        receiver.plan = [(500, 0.0)]
        payment = client.create_payment(ipn_callback_url=receiver.url)
        server.control.pay(payment["payment_id"])
        receiver.wait_for(1)
        time.sleep(0.3)
        assert len(receiver.received) == 1
        server.control.advance_clock(61)
        receiver.wait_for(2)


@pytest.mark.slow
def test_slow_receiver_counts_as_failure_and_is_retried(
    sandbox: SandboxServer, api: Api, receiver: Receiver
) -> None:
    receiver.plan = [(200, 3.5)]
    payment = api.create_payment(ipn_callback_url=receiver.url)
    sandbox.control.pay(payment["payment_id"])
    receiver.wait_for(2, timeout=8)
    log = sandbox.control.wait_for(lambda: [e for e in sandbox.control.ipn_log() if e["delivered"]])
    assert log[0]["responses"] == ["timeout", 200]


def test_no_ipn_without_a_secret(receiver: Receiver) -> None:
    with SandboxServer(api_key="k", ipn_secret="") as server:
        client = Api(server.url, api_key="k")
        payment = client.create_payment(ipn_callback_url=receiver.url)
        server.control.complete(payment["payment_id"])
        time.sleep(0.3)
        assert receiver.received == []
        assert server.control.ipn_log() == []


def test_no_ipn_without_a_callback_url(sandbox: SandboxServer, api: Api) -> None:
    sandbox.control.complete(api.create_payment()["payment_id"])
    assert sandbox.control.ipn_log() == []


def test_ipn_arrays_after_redeposit(sandbox: SandboxServer, api: Api, receiver: Receiver) -> None:
    payment = api.create_payment(ipn_callback_url=receiver.url)
    sandbox.control.complete(payment["payment_id"])
    child = sandbox.control.redeposit(payment["payment_id"], "0.0005")
    received = receiver.wait_for(6)
    bodies = [_payload(r.body) for r in received]
    parent_ipns = [b for b in bodies if b["payment_id"] == int(payment["payment_id"])]
    assert parent_ipns[-1]["payment_extra_ids"] == [child["payment_id"]]
    child_ipns = [b for b in bodies if b["payment_id"] == child["payment_id"]]
    assert child_ipns[0]["parent_payment_id"] == int(payment["payment_id"])
    for item in received:
        assert verify_ipn(item.body, item.headers["x-nowpayments-sig"], IPN_SECRET)


def test_resend_ipn(sandbox: SandboxServer, api: Api, receiver: Receiver) -> None:
    payment = api.create_payment(ipn_callback_url=receiver.url)
    sandbox.control.resend_ipn(payment["payment_id"])
    (item,) = receiver.wait_for(1)
    assert _payload(item.body)["payment_status"] == "waiting"


def test_ipn_secret_is_trimmed(api: Api, receiver: Receiver) -> None:
    with SandboxServer(api_key="k", ipn_secret="  padded \n") as server:
        client = Api(server.url, api_key="k")
        payment = client.create_payment(ipn_callback_url=receiver.url)
        server.control.pay(payment["payment_id"])
        (item,) = receiver.wait_for(1)
        assert verify_ipn(item.body, item.headers["x-nowpayments-sig"], "padded")
