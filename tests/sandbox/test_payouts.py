"""Mass payouts: address validation, creation, 2FA verification, statuses, lists and IPNs."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from payments.services.providers.nowpayments.signature import verify_ipn
from sandbox import SandboxServer
from sandbox.catalogue import BY_CODE
from sandbox.client import ControlError
from sandbox.config import SandboxConfig
from sandbox.payout_flow import SandboxTOTP
from tests.sandbox.conftest import IPN_SECRET, TRON_ADDRESS, Api, Receiver, assert_error, json_of

ETH_ADDRESS = BY_CODE["eth"].address_for("merchant")


def _code() -> str:
    return SandboxTOTP(SandboxConfig().totp_secret).now()


def _payout(api: Api, *withdrawals: dict[str, Any], **extra: Any) -> dict[str, Any]:
    items = list(withdrawals) or [{"address": TRON_ADDRESS, "currency": "usdttrc20", "amount": 200}]
    answer = api.post("/v1/payout", {"withdrawals": items, **extra}, jwt=True)
    assert answer.status_code == 200, answer.text
    return json_of(answer)


def test_validate_address(api: Api) -> None:
    ok = api.post("/v1/payout/validate-address", {"address": TRON_ADDRESS, "currency": "USDTTRC20"})
    assert ok.status_code == 200
    assert ok.text == "OK"
    assert ok.headers["Content-Type"].startswith("text/html")
    bad = api.post("/v1/payout/validate-address", {"address": "0xnope", "currency": "eth"})
    body = assert_error(bad, 400, "BAD_CREATE_WITHDRAWAL_REQUEST")
    assert body["message"] == "Invalid payout_address: eth 0xnope"
    memo = {"address": BY_CODE["xrp"].address_for("m"), "currency": "xrp", "extra_id": "12ab"}
    assert_error(
        api.post("/v1/payout/validate-address", memo), 400, "BAD_CREATE_WITHDRAWAL_REQUEST"
    )


def test_create_payout_shape(sandbox: SandboxServer, api: Api) -> None:
    body = _payout(
        api,
        {"address": TRON_ADDRESS, "currency": "usdttrc20", "amount": 200},
        {"address": ETH_ADDRESS, "currency": "eth", "amount": "0.123456"},
        {"address": TRON_ADDRESS, "currency": "trx", "amount": 10, "unique_external_id": "u-1"},
        payout_description="weekly",
    )
    assert isinstance(body["id"], str)
    first, second, third = body["withdrawals"]
    assert first["amount"] == "200"
    assert second["amount"] == "0.123456"
    assert isinstance(first["id"], str)
    assert first["batch_withdrawal_id"] == body["id"]
    assert first["status"] == "CREATING"
    assert first["is_request_payouts"] is False
    assert first["payout_description"] == "weekly"
    assert third["unique_external_id"] == "u-1"
    # the docs' example: camelCase stamps after the first withdrawal (default quirk "mixed")
    assert {"created_at", "requested_at", "updated_at"} <= set(first)
    assert {"createdAt", "requestedAt", "updatedAt"} <= set(second)
    assert first["updated_at"] is None


def test_payout_needs_jwt_and_key(api: Api) -> None:
    body = {"withdrawals": [{"address": TRON_ADDRESS, "currency": "usdttrc20", "amount": 1}]}
    assert_error(api.post("/v1/payout", body), 401, "AUTH_REQUIRED")
    headers = {"Authorization": f"Bearer {api.token()}"}
    assert_error(api.post("/v1/payout", body, key=False, headers=headers), 403, "INVALID_API_KEY")


def _usdt(amount: object = 1, address: str = TRON_ADDRESS) -> dict[str, object]:
    item = {"address": address, "currency": "usdttrc20", "amount": amount}
    return {k: v for k, v in item.items() if v is not None}


@pytest.mark.parametrize(
    ("items", "code"),
    [
        ([_usdt(address="nope")], "BAD_CREATE_WITHDRAWAL_REQUEST"),
        ([_usdt("1.1234567")], "INVALID_REQUEST_PARAMS"),
        ([_usdt(None)], "INVALID_REQUEST_PARAMS"),
        ([_usdt(0)], "INVALID_REQUEST_PARAMS"),
        ([], "INVALID_REQUEST_PARAMS"),
        (None, "INVALID_REQUEST_PARAMS"),
        ([_usdt("1e9")], "BAD_CREATE_WITHDRAWAL_REQUEST"),
    ],
)
def test_create_payout_errors(api: Api, items: Any, code: str) -> None:
    body = {} if items is None else {"withdrawals": items}
    assert_error(api.post("/v1/payout", body, jwt=True), 400, code)


def test_fiat_amount_overrides_amount(api: Api) -> None:
    body = _payout(
        api, {"address": ETH_ADDRESS, "currency": "eth", "fiat_amount": 100, "fiat_currency": "usd"}
    )
    assert body["withdrawals"][0]["amount"] == "0.033333"


def test_verify_moves_to_waiting(sandbox: SandboxServer, api: Api) -> None:
    batch = _payout(api)
    answer = api.post(f"/v1/payout/{batch['id']}/verify", {"verification_code": _code()}, jwt=True)
    assert answer.status_code == 200
    assert answer.text == "OK"
    (item,) = json_of(api.get(f"/v1/payout/{batch['id']}"))
    assert item["status"] == "WAITING"
    assert item["requested_at"] is not None
    again = api.post(f"/v1/payout/{batch['id']}/verify", {"verification_code": _code()}, jwt=True)
    assert_error(again, 400, "BAD_REQUEST")


def test_verify_needs_jwt(api: Api) -> None:
    batch = _payout(api)
    answer = api.post(f"/v1/payout/{batch['id']}/verify", {"verification_code": _code()})
    assert_error(answer, 401, "AUTH_REQUIRED")
    assert_error(
        api.post("/v1/payout/123/verify", {"verification_code": "1"}, jwt=True), 404, "NOT_FOUND"
    )


def test_verify_allows_ten_attempts(sandbox: SandboxServer, api: Api) -> None:
    batch = _payout(api)
    wrong = "000000" if _code() != "000000" else "111111"
    for _ in range(9):
        answer = api.post(
            f"/v1/payout/{batch['id']}/verify", {"verification_code": wrong}, jwt=True
        )
        assert_error(answer, 400, "BAD_REQUEST")
    tenth = api.post(f"/v1/payout/{batch['id']}/verify", {"verification_code": _code()}, jwt=True)
    assert tenth.text == "OK"


def test_verify_locks_after_ten_failures(sandbox: SandboxServer, api: Api) -> None:
    batch = _payout(api)
    wrong = "000000" if _code() != "000000" else "111111"
    for _ in range(10):
        api.post(f"/v1/payout/{batch['id']}/verify", {"verification_code": wrong}, jwt=True)
    locked = api.post(f"/v1/payout/{batch['id']}/verify", {"verification_code": _code()}, jwt=True)
    body = assert_error(locked, 400, "BAD_REQUEST")
    assert "attempts" in body["message"]
    (item,) = json_of(api.get(f"/v1/payout/{batch['id']}"))
    assert item["status"] == "CREATING"


def test_unverified_payout_is_rejected_after_an_hour(sandbox: SandboxServer, api: Api) -> None:
    batch = _payout(api)
    sandbox.control.advance_clock(3599)
    assert json_of(api.get(f"/v1/payout/{batch['id']}"))[0]["status"] == "CREATING"
    sandbox.control.advance_clock(2)
    (item,) = json_of(api.get(f"/v1/payout/{batch['id']}"))
    assert item["status"] == "REJECTED"
    assert item["error"]
    api.token(fresh=True)  # the old token expired with the hour
    late = api.post(f"/v1/payout/{batch['id']}/verify", {"verification_code": _code()}, jwt=True)
    assert_error(late, 400, "BAD_REQUEST")


def test_payout_status_by_batch_or_withdrawal_id(api: Api) -> None:
    batch = _payout(
        api,
        {"address": TRON_ADDRESS, "currency": "usdttrc20", "amount": 5},
        {"address": TRON_ADDRESS, "currency": "usdttrc20", "amount": 6},
    )
    items = json_of(api.get(f"/v1/payout/{batch['id']}"))
    assert isinstance(items, list)
    assert [i["amount"] for i in items] == ["5", "6"]
    assert all("created_at" in i for i in items)
    single = json_of(api.get(f"/v1/payout/{items[1]['id']}"))
    assert [i["id"] for i in single] == [items[1]["id"]]
    assert_error(api.get("/v1/payout/42"), 404, "NOT_FOUND")
    assert_error(api.get("/v1/payout/abc"), 400, "INVALID_REQUEST_PARAMS")


def test_control_advances_payouts(sandbox: SandboxServer, api: Api) -> None:
    batch = _payout(api)
    statuses = [sandbox.control.advance_payout(batch["id"])[0]["status"] for _ in range(4)]
    assert statuses == ["WAITING", "PROCESSING", "SENDING", "FINISHED"]
    (item,) = json_of(api.get(f"/v1/payout/{batch['id']}"))
    assert item["hash"]
    with pytest.raises(ControlError) as error:
        sandbox.control.advance_payout(batch["id"])
    assert error.value.status == 409
    failed = _payout(api)
    assert sandbox.control.advance_payout(failed["id"], "failed")[0]["status"] == "FAILED"
    assert sandbox.control.advance_payout(failed["id"], "FINISHED")[0]["status"] == "FINISHED"
    rejected = _payout(api)
    assert sandbox.control.advance_payout(rejected["id"], "REJECTED")[0]["status"] == "REJECTED"
    listing = sandbox.control.payouts()
    assert len(listing) == 3


def test_list_payouts_with_snake_case_query(api: Api, sandbox: SandboxServer) -> None:
    first = _payout(api)
    second = _payout(
        api,
        {"address": ETH_ADDRESS, "currency": "eth", "amount": 1},
        {"address": TRON_ADDRESS, "currency": "trx", "amount": 2},
    )
    sandbox.control.advance_payout(first["id"], "WAITING")
    everything = json_of(api.get("/v1/payout"))["payouts"]
    assert len(everything) == 3
    by_batch = json_of(api.get("/v1/payout", params={"batch_id": second["id"]}))["payouts"]
    assert {p["currency"] for p in by_batch} == {"eth", "trx"}
    waiting = json_of(api.get("/v1/payout", params={"status": "waiting"}))["payouts"]
    assert [p["batch_withdrawal_id"] for p in waiting] == [first["id"]]
    by_currency = json_of(
        api.get("/v1/payout", params={"order_by": "currency", "order": "desc", "limit": 2})
    )["payouts"]
    assert [p["currency"] for p in by_currency] == ["usdttrc20", "trx"]
    page = json_of(api.get("/v1/payout", params={"limit": 2, "page": 1}))["payouts"]
    assert len(page) == 1
    assert_error(api.get("/v1/payout", params={"order_by": "nope"}), 400, "INVALID_REQUEST_PARAMS")


def test_balance_is_debited_and_insufficient_balance_refused(
    sandbox: SandboxServer, api: Api
) -> None:
    sandbox.control.set_balance("trx", "100")
    _payout(api, {"address": TRON_ADDRESS, "currency": "trx", "amount": 60})
    assert json_of(api.get("/v1/balance"))["trx"]["amount"] == Decimal("40")
    answer = api.post(
        "/v1/payout",
        {"withdrawals": [{"address": TRON_ADDRESS, "currency": "trx", "amount": 41}]},
        jwt=True,
    )
    assert_error(answer, 400, "BAD_CREATE_WITHDRAWAL_REQUEST")


def test_withdrawal_ipns(sandbox: SandboxServer, api: Api, receiver: Receiver) -> None:
    batch = _payout(
        api,
        {"address": TRON_ADDRESS, "currency": "usdttrc20", "amount": 3},
        {**_usdt(4), "ipn_callback_url": receiver.url + "/own"},
        ipn_callback_url=receiver.url,
    )
    api.post(f"/v1/payout/{batch['id']}/verify", {"verification_code": _code()}, jwt=True)
    sandbox.control.advance_payout(batch["id"], "FINISHED")
    received = receiver.wait_for(8)
    for item in received:
        assert verify_ipn(item.body, item.headers["x-nowpayments-sig"], IPN_SECRET)
    bodies = [json.loads(r.body, parse_float=Decimal) for r in received]
    assert {b["status"] for b in bodies} == {"WAITING", "PROCESSING", "SENDING", "FINISHED"}
    finished = [b for b in bodies if b["status"] == "FINISHED"]
    assert {b["batch_withdrawal_id"] for b in finished} == {batch["id"]}
    assert {b["amount"] for b in finished} == {"3", "4"}
    assert {r.path for r in received} == {"/ipn", "/ipn/own"}
    assert set(bodies[0]) == {
        "id", "batch_withdrawal_id", "status", "error", "currency", "amount", "address", "fee",
        "extra_id", "hash", "ipn_callback_url", "created_at", "requested_at", "updated_at",
    }  # fmt: skip
