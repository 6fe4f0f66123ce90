"""Every money case the sandbox plays: underpay + dashboard finish, overpay, wrong asset,
refund after finished. Each checks the payment JSON and the signed IPNs it produces."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from payments.services.providers.nowpayments.signature import verify_ipn
from sandbox import SandboxServer, jsjson
from sandbox.client import ControlError
from sandbox.models import PAYMENT_FINAL, PAYMENT_STATUSES
from tests.sandbox.conftest import IPN_SECRET, Api, Receiver


def _ipns(receiver: Receiver, count: int) -> list[dict[str, Any]]:
    """The first ``count`` IPNs, each signature checked by the sandbox's own signer and, as a
    cross-check, by the product's verifier."""
    payloads = []
    for item in receiver.wait_for(count)[:count]:
        signature = item.headers["x-nowpayments-sig"]
        payload = json.loads(item.body, parse_float=Decimal)
        assert jsjson.sign(payload, IPN_SECRET) == signature
        assert verify_ipn(item.body, signature, IPN_SECRET)
        payloads.append(payload)
    return payloads


def _statuses(payloads: list[dict[str, Any]]) -> list[str]:
    return [p["payment_status"] for p in payloads]


def test_underpay_then_dashboard_finish(
    sandbox: SandboxServer, api: Api, receiver: Receiver
) -> None:
    created = api.create_payment(ipn_callback_url=receiver.url)
    pid = created["payment_id"]
    pay_amount = created["pay_amount"]
    paid = (pay_amount * Decimal("0.6")).quantize(Decimal("0.00000001"))
    sandbox.control.pay(pid, paid)
    with pytest.raises(ControlError) as refused:
        sandbox.control.dashboard_finish(pid)  # confirming: nothing to finish by hand yet
    assert refused.value.status == 409
    partial = sandbox.control.advance(pid, "partially_paid")
    assert partial["payment_status"] == "partially_paid"
    assert partial["actually_paid"] == paid < pay_amount

    finished = sandbox.control.dashboard_finish(pid)
    assert finished["payment_status"] == "finished"
    status = api.status(pid)
    assert status["payment_status"] == "finished"
    assert status["actually_paid"] == paid  # stays what was paid
    assert status["pay_amount"] == pay_amount
    assert status["actually_paid"] < status["pay_amount"]

    payloads = _ipns(receiver, 4)
    assert _statuses(payloads) == ["confirming", "confirmed", "partially_paid", "finished"]
    assert payloads[-1]["actually_paid"] == paid
    assert payloads[-1]["pay_amount"] == pay_amount
    assert payloads[-1]["payment_id"] == int(pid)
    with pytest.raises(ControlError):
        sandbox.control.dashboard_finish(pid)  # already finished


def test_overpay_finishes_with_more_paid(
    sandbox: SandboxServer, api: Api, receiver: Receiver
) -> None:
    created = api.create_payment(ipn_callback_url=receiver.url, pay_currency="eth")
    pid = created["payment_id"]
    extra = created["pay_amount"] + Decimal("0.01")
    sandbox.control.pay(pid, extra)
    sandbox.control.complete(pid)
    status = api.status(pid)
    assert status["payment_status"] == "finished"
    assert status["actually_paid"] == extra > status["pay_amount"]

    payloads = _ipns(receiver, 4)
    assert _statuses(payloads) == ["confirming", "confirmed", "sending", "finished"]
    assert all(p["actually_paid"] == extra for p in payloads)
    exact = api.create_payment(pay_currency="eth")
    sandbox.control.complete(exact["payment_id"])
    assert status["outcome_amount"] > api.status(exact["payment_id"])["outcome_amount"]


def test_wrong_asset_confirmed_then_processed(
    sandbox: SandboxServer, api: Api, receiver: Receiver
) -> None:
    assert "wrong_asset_confirmed" in PAYMENT_STATUSES
    assert "wrong_asset_confirmed" not in PAYMENT_FINAL  # it waits for the merchant
    created = api.create_payment(ipn_callback_url=receiver.url)
    pid = created["payment_id"]
    held = sandbox.control.wrong_asset(pid, "eth", "0.05")
    assert held["payment_status"] == "wrong_asset_confirmed"
    assert held["wrong_asset"] == {"currency": "eth", "amount": Decimal("0.05")}
    status = api.status(pid)
    assert status["payment_status"] == "wrong_asset_confirmed"
    assert status["pay_currency"] == "btc"
    assert status["actually_paid"] == 0
    assert status["payin_hash"].startswith("0x")  # an eth-network hash
    with pytest.raises(ControlError) as refused:
        sandbox.control.advance(pid)
    assert refused.value.status == 409

    sandbox.control.dashboard_finish(pid)
    done = api.status(pid)
    assert done["payment_status"] == "finished"
    assert done["pay_currency"] == "eth"
    assert done["actually_paid"] == Decimal("0.05")
    assert done["pay_amount"] == created["pay_amount"]

    payloads = _ipns(receiver, 2)
    assert _statuses(payloads) == ["wrong_asset_confirmed", "finished"]
    assert payloads[0]["pay_currency"] == "btc"
    assert payloads[1]["pay_currency"] == "eth"
    assert payloads[1]["actually_paid"] == Decimal("0.05")
    assert payloads[1]["fee"]["currency"] == "eth"


def test_wrong_asset_auto_processed_finishes_in_another_currency(
    sandbox: SandboxServer, api: Api, receiver: Receiver
) -> None:
    created = api.create_payment(ipn_callback_url=receiver.url)
    pid = created["payment_id"]
    answer = sandbox.control.wrong_asset(pid, "usdttrc20", "57.3", auto_process=True)
    assert answer["payment_status"] == "finished"
    status = api.status(pid)
    assert status["pay_currency"] == "usdttrc20" != created["pay_currency"]
    assert status["actually_paid"] == Decimal("57.3")
    assert status["outcome_currency"] == "btc"
    assert status["outcome_amount"] > 0

    payloads = _ipns(receiver, 4)
    assert _statuses(payloads) == ["confirming", "confirmed", "sending", "finished"]
    assert {p["pay_currency"] for p in payloads} == {"usdttrc20"}
    assert payloads[-1]["actually_paid"] == Decimal("57.3")


def test_wrong_asset_refusals(sandbox: SandboxServer, api: Api) -> None:
    pid = api.create_payment()["payment_id"]
    for currency, amount in (("btc", "1"), ("nope", "1"), ("doge", "1"), ("eth", "0")):
        with pytest.raises(ControlError) as refused:
            sandbox.control.wrong_asset(pid, currency, amount)
        assert refused.value.status == 400
    held = sandbox.control.wrong_asset(pid, "eth", "0.2")
    assert held["payment_status"] == "wrong_asset_confirmed"
    assert sandbox.control.refund(pid)["payment_status"] == "refunded"


def test_refund_after_finished(sandbox: SandboxServer, api: Api, receiver: Receiver) -> None:
    created = api.create_payment(ipn_callback_url=receiver.url)
    pid = created["payment_id"]
    sandbox.control.complete(pid)
    refunded = sandbox.control.refund(pid)
    assert refunded["payment_status"] == "refunded"
    status = api.status(pid)
    assert status["payment_status"] == "refunded"
    assert status["actually_paid"] == created["pay_amount"]
    payloads = _ipns(receiver, 5)
    assert _statuses(payloads) == ["confirming", "confirmed", "sending", "finished", "refunded"]
    assert payloads[-1]["payment_id"] == int(pid)
    with pytest.raises(ControlError) as again:
        sandbox.control.refund(pid)
    assert again.value.status == 409
