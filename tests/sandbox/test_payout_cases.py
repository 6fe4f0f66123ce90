"""Payout money cases: FINISHED then FAILED, FAILED then FINISHED, batch ids apart from
withdrawal ids, bulk creation and more than 500 payouts listed across pages."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from payments.services.providers.nowpayments.signature import verify_ipn
from sandbox import SandboxServer, jsjson
from sandbox.client import ControlError
from sandbox.config import SandboxConfig
from sandbox.payout_flow import SandboxTOTP
from tests.sandbox.conftest import IPN_SECRET, TRON_ADDRESS, Api, Receiver, assert_error, json_of


def _verified_payout(api: Api, receiver: Receiver, amount: int = 200) -> dict[str, Any]:
    items = [{"address": TRON_ADDRESS, "currency": "usdttrc20", "amount": amount}]
    body = {"withdrawals": items, "ipn_callback_url": receiver.url}
    created = json_of(api.post("/v1/payout", body, jwt=True))
    code = SandboxTOTP(SandboxConfig().totp_secret).now()
    verify = api.post(f"/v1/payout/{created['id']}/verify", {"verification_code": code}, jwt=True)
    assert verify.text == "OK"
    return created


def _payout_ipns(receiver: Receiver, count: int) -> list[dict[str, Any]]:
    payloads = []
    for item in receiver.wait_for(count)[:count]:
        signature = item.headers["x-nowpayments-sig"]
        payload = json.loads(item.body, parse_float=Decimal)
        assert jsjson.sign(payload, IPN_SECRET) == signature
        assert verify_ipn(item.body, signature, IPN_SECRET)
        payloads.append(payload)
    return payloads


def _usdt_balance(api: Api) -> Decimal:
    return json_of(api.get("/v1/balance"))["usdttrc20"]["amount"]


def test_payout_finished_then_failed(sandbox: SandboxServer, api: Api, receiver: Receiver) -> None:
    before = _usdt_balance(api)
    created = _verified_payout(api, receiver)
    item_id = created["withdrawals"][0]["id"]
    assert _usdt_balance(api) == before - 200
    assert sandbox.control.advance_payout(item_id, "FINISHED")[0]["status"] == "FINISHED"
    failed = sandbox.control.advance_payout(item_id, "FAILED")[0]
    assert failed["status"] == "FAILED"
    listed = json_of(api.get(f"/v1/payout/{item_id}"))
    assert [w["status"] for w in listed] == ["FAILED"]
    assert listed[0]["error"]
    assert listed[0]["hash"]  # the transaction it reported stays
    assert _usdt_balance(api) == before  # a failed payout gives the amount back

    payloads = _payout_ipns(receiver, 5)
    assert [p["status"] for p in payloads] == [
        "WAITING",
        "PROCESSING",
        "SENDING",
        "FINISHED",
        "FAILED",
    ]
    assert {p["id"] for p in payloads} == {item_id}
    assert {p["batch_withdrawal_id"] for p in payloads} == {created["id"]}
    assert payloads[-1]["error"]


def test_payout_failed_then_finished(sandbox: SandboxServer, api: Api, receiver: Receiver) -> None:
    before = _usdt_balance(api)
    created = _verified_payout(api, receiver, amount=50)
    item_id = created["withdrawals"][0]["id"]
    sandbox.control.advance_payout(item_id, "FAILED")
    assert _usdt_balance(api) == before
    finished = sandbox.control.advance_payout(item_id, "FINISHED")[0]
    assert finished["status"] == "FINISHED"
    assert finished["error"] is None
    assert finished["hash"]
    assert _usdt_balance(api) == before - 50  # processed after all: debited again
    payloads = _payout_ipns(receiver, 3)
    assert [p["status"] for p in payloads] == ["WAITING", "FAILED", "FINISHED"]
    with pytest.raises(ControlError) as refused:
        sandbox.control.advance_payout(item_id, "REJECTED")
    assert refused.value.status == 409


def test_batch_ids_and_withdrawal_ids_are_apart(sandbox: SandboxServer, api: Api) -> None:
    items = [{"address": TRON_ADDRESS, "currency": "usdttrc20", "amount": n} for n in (1, 2, 3)]
    created = json_of(api.post("/v1/payout", {"withdrawals": items}, jwt=True))
    batch_id = created["id"]
    item_ids = [w["id"] for w in created["withdrawals"]]
    assert batch_id not in item_ids
    assert all(w["batch_withdrawal_id"] == batch_id for w in created["withdrawals"])
    # two id spaces: batch ids and withdrawal ids never share their leading digit
    assert {i[0] for i in item_ids} != {batch_id[0]}
    assert len(json_of(api.get(f"/v1/payout/{batch_id}"))) == 3
    assert [w["id"] for w in json_of(api.get(f"/v1/payout/{item_ids[1]}"))] == [item_ids[1]]
    batches = sandbox.control.bulk_payouts(40, per_batch=2)
    batch_ids = {b["id"] for b in batches}
    withdrawal_ids = {i for b in batches for i in b["withdrawal_ids"]}
    assert len(batch_ids) == 20
    assert len(withdrawal_ids) == 40
    assert not batch_ids & withdrawal_ids
    assert {int(i) // 10**9 for i in batch_ids}.isdisjoint(
        {int(i) // 10**9 for i in withdrawal_ids}
    )


def test_bulk_payouts_with_status_and_refusals(sandbox: SandboxServer, api: Api) -> None:
    batches = sandbox.control.bulk_payouts(3, amount="2.5", status="FINISHED")
    assert len(batches) == 1
    listed = json_of(api.get("/v1/payout", params={"batch_id": batches[0]["id"]}))["payouts"]
    assert [w["status"] for w in listed] == ["FINISHED"] * 3
    assert {w["amount"] for w in listed} == {"2.5"}
    eth = sandbox.control.bulk_payouts(1, currency="eth", amount="0.01")
    assert json_of(api.get(f"/v1/payout/{eth[0]['id']}"))[0]["currency"] == "eth"
    for bad in ({"count": 0}, {"count": 1, "currency": "nope"}, {"count": 1, "status": "NOPE"}):
        with pytest.raises(ControlError) as refused:
            sandbox.control.bulk_payouts(**bad)  # type: ignore[arg-type]
        assert refused.value.status in (400, 409)


def test_611_payouts_across_two_pages(sandbox: SandboxServer, api: Api) -> None:
    batches = sandbox.control.bulk_payouts(611, per_batch=100)
    created = [i for b in batches for i in b["withdrawal_ids"]]
    assert len(created) == 611
    pages = [
        json_of(api.get("/v1/payout", params={"limit": 500, "page": page}))["payouts"]
        for page in (0, 1, 2)
    ]
    assert [len(p) for p in pages] == [500, 111, 0]
    listed = [w["id"] for page in pages for w in page]
    assert listed == sorted(created, key=int)  # order_by=id asc by default
    assert len(set(listed)) == 611
    assert_error(api.get("/v1/payout", params={"limit": 501}), 400, "INVALID_REQUEST_PARAMS")
    descending = json_of(api.get("/v1/payout", params={"limit": 500, "order": "desc"}))
    assert descending["payouts"][0]["id"] == listed[-1]
