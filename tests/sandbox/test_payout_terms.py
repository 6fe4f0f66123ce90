"""GET /v1/payout/fee and GET /v1/payout-withdrawal/min-amount/{coin} (spec 2.16)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from sandbox import SandboxServer
from sandbox.catalogue import BY_CODE, CURRENCIES
from tests.sandbox.conftest import Api, assert_error, json_of


def test_payout_fee_has_the_docs_shape(api: Api) -> None:
    answer = api.get("/v1/payout/fee", params={"currency": "USDTTRC20", "amount": "500"})
    assert answer.status_code == 200
    assert answer.text == '{"currency":"USDTTRC20","fee":1.32766}'  # the ticker as sent
    lower = json_of(api.get("/v1/payout/fee", params={"currency": "btc", "amount": "0.01"}))
    assert lower == {"currency": "btc", "fee": Decimal("0.000025")}


def test_payout_minimum_has_the_docs_shape(api: Api) -> None:
    answer = api.get("/v1/payout-withdrawal/min-amount/btc")
    assert answer.status_code == 200
    assert answer.text == '{"success":true,"result":0.00017}'
    assert json_of(api.get("/v1/payout-withdrawal/min-amount/XRP")) == {
        "success": True,
        "result": Decimal("5"),
    }


@pytest.mark.parametrize(
    ("code", "fee_usd", "minimum_usd"),
    [
        ("btc", (Decimal("1"), Decimal("2")), (Decimal("9.5"), Decimal("11"))),
        ("usdttrc20", (Decimal("1.2"), Decimal("1.4")), (Decimal("2"), Decimal("6"))),
        ("xrp", (Decimal("0.01"), Decimal("1")), (Decimal("1"), Decimal("15"))),
    ],
)
def test_values_are_realistic_in_usd(
    api: Api,
    code: str,
    fee_usd: tuple[Decimal, Decimal],
    minimum_usd: tuple[Decimal, Decimal],
) -> None:
    rate = BY_CODE[code].usd_rate
    fee = json_of(api.get("/v1/payout/fee", params={"currency": code, "amount": "100"}))["fee"]
    minimum = json_of(api.get(f"/v1/payout-withdrawal/min-amount/{code}"))["result"]
    assert fee_usd[0] <= fee * rate <= fee_usd[1]
    assert minimum_usd[0] <= minimum * rate <= minimum_usd[1]


def test_every_enabled_coin_has_payout_terms(api: Api) -> None:
    for currency in CURRENCIES:
        if not currency.enable:
            continue
        fee = json_of(api.get("/v1/payout/fee", params={"currency": currency.code, "amount": 1}))
        minimum = json_of(api.get(f"/v1/payout-withdrawal/min-amount/{currency.code}"))
        assert fee["fee"] > 0, currency.code
        assert minimum["result"] > fee["fee"], currency.code


def test_unknown_and_disabled_coins_are_refused_like_elsewhere(api: Api) -> None:
    for path, params in (
        ("/v1/payout/fee", {"currency": "nope", "amount": "1"}),
        ("/v1/payout-withdrawal/min-amount/nope", {}),
    ):
        body = assert_error(api.get(path, params=params), 400, "INVALID_REQUEST_PARAMS")
        assert body["message"] == "Currency nope was not found"
    for path, params in (
        ("/v1/payout/fee", {"currency": "doge", "amount": "1"}),
        ("/v1/payout-withdrawal/min-amount/doge", {}),
    ):
        body = assert_error(api.get(path, params=params), 400, "CURRENCY_UNAVAILABLE")
        assert body["message"] == "Currency doge is not available"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"amount": "1"}, '"currency" is required'),
        ({"currency": "btc"}, '"amount" is required'),
        ({"currency": "btc", "amount": "-1"}, '"amount" must be a positive number'),
        ({"currency": "btc", "amount": "lots"}, '"amount" must be a positive number'),
    ],
)
def test_payout_fee_validates_its_query(api: Api, params: dict[str, str], message: str) -> None:
    body = assert_error(api.get("/v1/payout/fee", params=params), 400, "INVALID_REQUEST_PARAMS")
    assert body["message"] == message


def test_both_need_the_api_key_and_no_jwt(api: Api) -> None:
    for path in ("/v1/payout/fee?currency=btc&amount=1", "/v1/payout-withdrawal/min-amount/btc"):
        assert_error(api.get(path, key=False), 403, "INVALID_API_KEY")
        wrong = api.get(path, key=False, headers={"x-api-key": "wrong"})
        assert_error(wrong, 403, "INVALID_API_KEY")
        assert api.get(path).status_code == 200, "the API key alone is enough"


def test_the_fee_route_is_not_a_payout_id(sandbox: SandboxServer, api: Api) -> None:
    assert_error(api.get("/v1/payout/12345"), 404, "NOT_FOUND")
    assert_error(api.get("/v1/payout/abc"), 400, "INVALID_REQUEST_PARAMS")
    sandbox.control.reset_requests()
    api.get("/v1/payout/fee", params={"currency": "btc", "amount": "1"})
    api.get("/v1/payout-withdrawal/min-amount/btc")
    assert sandbox.control.requests() == {
        "GET /v1/payout/fee": 1,
        "GET /v1/payout-withdrawal/min-amount/{coin}": 1,
    }


def test_a_payout_is_charged_the_quoted_fee(sandbox: SandboxServer, api: Api) -> None:
    address = BY_CODE["usdttrc20"].address_for("terms")
    body = {"withdrawals": [{"address": address, "currency": "usdttrc20", "amount": "10"}]}
    batch = json_of(api.post("/v1/payout", body, jwt=True))
    sandbox.control.advance_payout(batch["id"], status="PROCESSING")
    [listed] = [b for b in sandbox.control.payouts() if b["id"] == batch["id"]]
    [item] = listed["withdrawals"]
    quoted = json_of(api.get("/v1/payout/fee", params={"currency": "usdttrc20", "amount": "10"}))
    assert item["fee"] == quoted["fee"] == Decimal("1.32766")


def test_memo_coins_say_so_in_full_currencies(api: Api) -> None:
    entries = {c["code"]: c for c in json_of(api.get("/v1/full-currencies"))["currencies"]}
    assert entries["XRP"]["extra_id_exists"] is True
    assert entries["XLM"]["extra_id_exists"] is True
    assert entries["XLM"]["network"] == "xlm"
    assert entries["BTC"]["extra_id_exists"] is False
    xlm = BY_CODE["xlm"]
    assert xlm.is_valid_address(xlm.address_for("x"))
