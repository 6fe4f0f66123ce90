"""Switchable quirks and injected faults."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
import requests

from payments.services.providers.nowpayments.signature import sign_ipn, verify_ipn
from sandbox import SandboxServer
from sandbox.client import ControlError
from tests.sandbox.conftest import IPN_SECRET, TRON_ADDRESS, Api, Receiver, assert_error, json_of


def test_default_quirks(sandbox: SandboxServer) -> None:
    assert sandbox.control.quirks() == {
        "pay_amount_as_string": False,
        "merchant_coins_key": "selectedCurrencies",
        "failure_case_name": "both",
        "payout_timestamps": "mixed",
        "ipn_arrays_as_objects": False,
        "payment_status_requires_jwt": False,
        "redeposit_status": "partially_paid",
    }


def test_bad_quirks_are_refused(sandbox: SandboxServer) -> None:
    for bad in ({"nope": True}, {"pay_amount_as_string": "yes"}, {"merchant_coins_key": "coins"}):
        with pytest.raises(ControlError) as error:
            sandbox.control.set_quirks(**bad)
        assert error.value.status == 400


def test_pay_amount_as_string(sandbox: SandboxServer, api: Api, receiver: Receiver) -> None:
    payment = api.create_payment(ipn_callback_url=receiver.url)
    assert isinstance(api.status(payment["payment_id"])["pay_amount"], Decimal)
    sandbox.control.set_quirks(pay_amount_as_string=True)
    created = api.create_payment(ipn_callback_url=receiver.url)
    assert isinstance(created["pay_amount"], str)
    assert isinstance(api.status(payment["payment_id"])["pay_amount"], str)
    listed = json_of(api.get("/v1/payment/", jwt=True))["data"]
    assert all(isinstance(p["pay_amount"], str) for p in listed)
    sandbox.control.pay(created["payment_id"])
    (item,) = receiver.wait_for(1)
    assert isinstance(json.loads(item.body)["pay_amount"], str)
    assert verify_ipn(item.body, item.headers["x-nowpayments-sig"], IPN_SECRET)


def test_merchant_coins_key(sandbox: SandboxServer, api: Api) -> None:
    sandbox.control.set_quirks(merchant_coins_key="currencies")
    assert list(api.get("/v1/merchant/coins").json()) == ["currencies"]


@pytest.mark.parametrize(("accepted", "refused"), [("failed", "failure"), ("failure", "failed")])
def test_failure_case_name(sandbox: SandboxServer, api: Api, accepted: str, refused: str) -> None:
    sandbox.control.set_quirks(failure_case_name=accepted)
    api.create_payment(case=accepted)
    body = {"price_amount": 100, "price_currency": "usd", "pay_currency": "btc", "case": refused}
    assert_error(api.post("/v1/payment", body), 400, "INVALID_REQUEST_PARAMS")


def test_payout_timestamps_snake(sandbox: SandboxServer, api: Api) -> None:
    sandbox.control.set_quirks(payout_timestamps="snake")
    item = {"address": TRON_ADDRESS, "currency": "usdttrc20", "amount": 1}
    body = json_of(api.post("/v1/payout", {"withdrawals": [item, item]}, jwt=True))
    assert all("created_at" in w and "createdAt" not in w for w in body["withdrawals"])


def test_ipn_arrays_as_objects(sandbox: SandboxServer, api: Api, receiver: Receiver) -> None:
    sandbox.control.set_quirks(ipn_arrays_as_objects=True)
    payment = api.create_payment(ipn_callback_url=receiver.url)
    sandbox.control.complete(payment["payment_id"])
    sandbox.control.redeposit(payment["payment_id"], "0.001")
    received = receiver.wait_for(6)
    with_array = [r for r in received if json.loads(r.body)["payment_extra_ids"]]
    assert with_array
    for item in with_array:
        payload = json.loads(item.body, parse_float=Decimal)
        signature = item.headers["x-nowpayments-sig"]
        assert signature == sign_ipn(payload, IPN_SECRET, arrays_as_objects=True)
        assert signature != sign_ipn(payload, IPN_SECRET)
        assert verify_ipn(item.body, signature, IPN_SECRET)  # the fallback form


def test_payment_status_requires_jwt(sandbox: SandboxServer, api: Api) -> None:
    payment = api.create_payment()
    sandbox.control.set_quirks(payment_status_requires_jwt=True)
    assert_error(api.get(f"/v1/payment/{payment['payment_id']}"), 401, "AUTH_REQUIRED")
    assert api.get(f"/v1/payment/{payment['payment_id']}", jwt=True).status_code == 200


# -- faults ----------------------------------------------------------------------------------


def test_http_500_fault_counts_down(sandbox: SandboxServer, api: Api) -> None:
    sandbox.control.set_fault("http_500", count=2)
    assert_error(api.get("/v1/status"), 500, "INTERNAL_ERROR")
    assert_error(api.get("/v1/currencies"), 500, "INTERNAL_ERROR")
    assert api.get("/v1/status").status_code == 200
    assert sandbox.control.faults() == []


def test_http_429_fault_has_retry_after(sandbox: SandboxServer, api: Api) -> None:
    sandbox.control.set_fault("http_429")
    answer = api.get("/v1/currencies")
    assert_error(answer, 429, "TOO_MANY_REQUESTS")
    assert answer.headers["Retry-After"] == "1"


def test_fault_path_prefix(sandbox: SandboxServer, api: Api) -> None:
    sandbox.control.set_fault("http_500", count=5, path="/v1/payment")
    assert api.get("/v1/currencies").status_code == 200
    assert api.post("/v1/payment", {}).status_code == 500
    sandbox.control.clear_faults()
    assert api.create_payment()["payment_status"] == "waiting"


def test_fault_method(sandbox: SandboxServer, api: Api) -> None:
    """A fault naming a method passes the other methods' calls on the same path by."""
    sandbox.control.set_fault("http_500", count=1, path="/v1/payment", method="POST")
    assert api.get("/v1/payment/").status_code != 500
    assert [f["remaining"] for f in sandbox.control.faults()] == [1]
    assert api.post("/v1/payment", {}).status_code == 500
    assert sandbox.control.faults() == []


def test_fault_method_must_be_an_http_method(sandbox: SandboxServer) -> None:
    with pytest.raises(ControlError) as error:
        sandbox.control.set_fault("http_500", method="FETCH")
    assert error.value.status == 400
    assert sandbox.control.faults() == []


def test_faults_do_not_touch_the_control_api(sandbox: SandboxServer) -> None:
    sandbox.control.set_fault("http_500", count=3)
    assert sandbox.control.quirks()
    assert len(sandbox.control.faults()) == 1


def test_timeout_fault(sandbox: SandboxServer, api: Api) -> None:
    sandbox.control.set_fault("timeout", delay=1.0)
    with pytest.raises(requests.Timeout):
        api.get("/v1/status", timeout=0.3)
    assert api.get("/v1/status", timeout=5).status_code == 200


def test_timeout_fault_still_processes_the_request(sandbox: SandboxServer, api: Api) -> None:
    sandbox.control.set_fault("timeout", delay=0.5, path="/v1/payment")
    with pytest.raises(requests.Timeout):
        api.post(
            "/v1/payment",
            {"price_amount": 100, "price_currency": "usd", "pay_currency": "btc"},
            timeout=0.2,
        )
    sandbox.control.wait_for(lambda: sandbox.control.payments(), timeout=3)


def test_malformed_json_fault(sandbox: SandboxServer, api: Api) -> None:
    sandbox.control.set_fault("malformed_json")
    answer = api.get("/v1/currencies")
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("application/json")
    with pytest.raises(json.JSONDecodeError):
        json.loads(answer.text)
    assert json.loads(api.get("/v1/currencies").text)["currencies"]


def test_bad_fault_is_refused(sandbox: SandboxServer) -> None:
    with pytest.raises(ControlError) as error:
        sandbox.control.set_fault("explode")
    assert error.value.status == 400
