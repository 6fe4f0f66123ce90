"""POST/GET payment, invoices and the payment list: shapes, type quirks and errors."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from sandbox import SandboxServer
from sandbox.catalogue import BY_CODE
from tests.sandbox.conftest import Api, assert_error, json_of

ISO_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_create_payment_shape(api: Api) -> None:
    answer = api.post(
        "/v1/payment",
        {
            "price_amount": 3999.5,
            "price_currency": "usd",
            "pay_currency": "btc",
            "order_id": "RGDBP-21314",
            "order_description": "Apple Macbook Pro 2019 x 1",
            "ipn_callback_url": "https://example.com/ipn",
        },
    )
    assert answer.status_code == 201
    body = json_of(answer)
    assert isinstance(body["payment_id"], str)
    assert body["payment_id"].isdigit()
    assert len(body["payment_id"]) == 10
    assert isinstance(body["purchase_id"], str)
    assert body["payment_status"] == "waiting"
    assert body["price_amount"] == Decimal("3999.5")
    assert isinstance(body["pay_amount"], Decimal)
    assert body["pay_amount"] == Decimal("0.06665834")  # rounded up to 8 places
    assert body["pay_currency"] == "btc"
    assert body["network"] == "btc"
    assert body["network_precision"] == 8
    assert body["smart_contract"] == ""
    assert body["burning_percent"] is None
    assert body["time_limit"] is None
    assert body["payin_extra_id"] is None
    assert body["type"] == "crypto2crypto"
    assert body["is_fixed_rate"] is False
    for name in ("created_at", "updated_at", "valid_until", "expiration_estimate_date"):
        assert ISO_MS.fullmatch(body[name]), name
    created = _at(body["created_at"])
    assert _at(body["valid_until"]) - created == timedelta(days=7)
    assert _at(body["expiration_estimate_date"]) - created == timedelta(minutes=20)
    assert re.fullmatch(BY_CODE["btc"].wallet_regex, body["pay_address"])


@pytest.mark.parametrize("flag", ["is_fixed_rate", "is_fee_paid_by_user", "fixed_rate"])
def test_fixed_rate_payments_are_valid_20_minutes(api: Api, flag: str) -> None:
    body = api.create_payment(**{flag: True})
    assert _at(body["valid_until"]) - _at(body["created_at"]) == timedelta(minutes=20)


def test_fee_paid_by_user_raises_pay_amount(api: Api) -> None:
    plain = api.create_payment()["pay_amount"]
    assert api.create_payment(is_fee_paid_by_user=True)["pay_amount"] > plain


@pytest.mark.parametrize("code", sorted(c.code for c in BY_CODE.values() if c.enable))
def test_addresses_match_wallet_regex(api: Api, code: str) -> None:
    body = api.create_payment(pay_currency=code, price_amount=50)
    assert re.fullmatch(BY_CODE[code].wallet_regex, body["pay_address"])
    if BY_CODE[code].extra_id_exists:  # xrp, xlm
        assert re.fullmatch(BY_CODE[code].extra_id_regex or "", body["payin_extra_id"])
    else:
        assert body["payin_extra_id"] is None


def test_addresses_are_deterministic_per_payment(api: Api) -> None:
    first, second = api.create_payment(), api.create_payment()
    assert first["pay_address"] != second["pay_address"]
    assert BY_CODE["btc"].address_for(first["payment_id"]) == first["pay_address"]


def test_given_pay_amount_and_purchase_id_are_kept(api: Api) -> None:
    body = api.create_payment(pay_amount="0.01", purchase_id="5837122679")
    assert body["pay_amount"] == Decimal("0.01")
    assert body["purchase_id"] == "5837122679"
    assert api.status(body["payment_id"])["purchase_id"] == 5837122679


BASE = {"price_amount": 100, "price_currency": "usd", "pay_currency": "btc"}


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"price_amount": None}, "INVALID_REQUEST_PARAMS"),
        ({"price_amount": -1}, "INVALID_REQUEST_PARAMS"),
        ({"pay_currency": None}, "INVALID_REQUEST_PARAMS"),
        ({"pay_currency": "nope"}, "INVALID_REQUEST_PARAMS"),  # "Currency nope was not found"
        ({"pay_currency": "doge"}, "CURRENCY_UNAVAILABLE"),
        ({"price_currency": "xyz"}, "INVALID_REQUEST_PARAMS"),
        ({"price_amount": 5}, "AMOUNT_MINIMAL_ERROR"),
        ({"ipn_callback_url": "ftp://x"}, "INVALID_REQUEST_PARAMS"),
        ({"case": "bogus"}, "INVALID_REQUEST_PARAMS"),
        ({"payout_address": "x"}, "INVALID_REQUEST_PARAMS"),
        ({"is_fixed_rate": "maybe"}, "INVALID_REQUEST_PARAMS"),
    ],
)
def test_create_payment_errors(api: Api, changes: dict[str, object], code: str) -> None:
    body = {k: v for k, v in {**BASE, **changes}.items() if v is not None}
    assert_error(api.post("/v1/payment", body), 400, code)


def test_fixed_rate_minimum_is_higher(api: Api) -> None:
    # $10.5 clears the btc minimum ($10) but not the fixed-rate one ($12)
    api.create_payment(price_amount="10.5")
    answer = api.post(
        "/v1/payment",
        {
            "price_amount": "10.5",
            "price_currency": "usd",
            "pay_currency": "btc",
            "is_fixed_rate": True,
        },
    )
    assert_error(answer, 400, "AMOUNT_MINIMAL_ERROR")


def test_create_payment_rejects_invalid_json(api: Api) -> None:
    answer = api.request(
        "POST", "/v1/payment", data="[1,", headers={"Content-Type": "application/json"}
    )
    assert_error(answer, 400, "INVALID_REQUEST_PARAMS")


def test_payout_address_sets_outcome_currency(api: Api) -> None:
    body = api.create_payment(
        payout_address="TEmGwPeRTPiLFLVfBxXkSP91yc5GMNQhfS", payout_currency="usdttrc20"
    )
    assert api.status(body["payment_id"])["outcome_currency"] == "usdttrc20"


def test_payment_status_shape(api: Api) -> None:
    created = api.create_payment(order_description="Café ☕ — 日本")
    status = api.status(created["payment_id"])
    assert status["payment_id"] == int(created["payment_id"])
    assert isinstance(status["purchase_id"], int)
    assert status["burning_percent"] == "null"
    assert status["actually_paid"] == 0
    assert status["payment_extra_ids"] is None
    assert status["parent_payment_id"] is None
    assert status["order_description"] == "Café ☕ — 日本"
    assert status["outcome_currency"] == "btc"
    assert status["outcome_amount"] > 0
    for name in ("invoice_id", "payin_hash", "payout_hash", "created_at", "updated_at", "type"):
        assert name in status


def test_payment_status_errors(api: Api) -> None:
    body = assert_error(api.get("/v1/payment/abc"), 400, "INVALID_REQUEST_PARAMS")
    assert body["message"] == "Payment id must be a number"
    assert_error(api.get("/v1/payment/1234567890"), 404, "NOT_FOUND")
    assert_error(api.get("/v1/payment/1", key=False), 403, "INVALID_API_KEY")


def test_invoice(api: Api) -> None:
    answer = api.post(
        "/v1/invoice",
        {
            "price_amount": 1000,
            "price_currency": "usd",
            "order_id": "RGDBP-21314",
            "ipn_callback_url": "https://example.com/ipn",
            "success_url": "https://example.com/ok",
        },
    )
    assert answer.status_code == 201
    body = json_of(answer)
    assert isinstance(body["id"], str)
    assert body["price_amount"] == "1000"
    assert body["pay_currency"] is None
    assert body["invoice_url"].endswith(f"?iid={body['id']}")
    assert body["success_url"] == "https://example.com/ok"
    assert "payment_status" not in body
    assert_error(api.post("/v1/invoice", {"price_currency": "usd"}), 400, "INVALID_REQUEST_PARAMS")
    bad = api.post(
        "/v1/invoice", {"price_amount": 1, "price_currency": "usd", "pay_currency": "doge"}
    )
    assert_error(bad, 400, "CURRENCY_UNAVAILABLE")


def test_invoice_payment_links_and_filters(api: Api) -> None:
    invoice = json_of(api.post("/v1/invoice", {"price_amount": 250, "price_currency": "usd"}))
    answer = api.post("/v1/invoice-payment", {"iid": invoice["id"], "pay_currency": "eth"})
    assert answer.status_code == 201
    payment = json_of(answer)
    api.create_payment()
    status = api.status(payment["payment_id"])
    assert status["invoice_id"] == int(invoice["id"])
    assert status["price_amount"] == 250
    listed = json_of(api.get("/v1/payment/", jwt=True, params={"invoiceId": invoice["id"]}))
    assert [p["payment_id"] for p in listed["data"]] == [int(payment["payment_id"])]
    assert_error(
        api.post("/v1/invoice-payment", {"iid": "999", "pay_currency": "eth"}), 404, "NOT_FOUND"
    )


# -- the list --------------------------------------------------------------------------------


@pytest.fixture
def seven(sandbox: SandboxServer, api: Api) -> list[dict[str, object]]:
    """Seven payments one day apart (sandbox clock), prices 10..70 USD in reverse."""
    made = []
    for index in range(7):
        made.append(api.create_payment(price_amount=70 - 10 * index + 20, order_id=f"o{index}"))
        sandbox.control.advance_clock(86400)
    return made


def test_list_pagination(api: Api, seven: list[dict[str, object]]) -> None:
    first = json_of(api.get("/v1/payment/", jwt=True, params={"limit": 3, "page": 0}))
    assert (first["limit"], first["page"], first["pagesCount"], first["total"]) == (3, 0, 3, 7)
    ids = [p["payment_id"] for p in first["data"]]
    assert ids == [int(p["payment_id"]) for p in seven[:3]]
    last = json_of(api.get("/v1/payment/", jwt=True, params={"limit": 3, "page": 2}))
    assert [p["payment_id"] for p in last["data"]] == [int(seven[6]["payment_id"])]
    beyond = json_of(api.get("/v1/payment/", jwt=True, params={"limit": 3, "page": 5}))
    assert beyond["data"] == []
    default = json_of(api.get("/v1/payment/", jwt=True))
    assert default["limit"] == 10
    assert isinstance(default["data"][0]["payment_id"], int)


def test_list_sorting(api: Api, seven: list[dict[str, object]]) -> None:
    desc = json_of(api.get("/v1/payment/", jwt=True, params={"orderBy": "desc", "limit": 7}))
    assert [p["payment_id"] for p in desc["data"]] == [
        int(p["payment_id"]) for p in reversed(seven)
    ]
    by_price = json_of(api.get("/v1/payment/", jwt=True, params={"sortBy": "price_amount"}))
    prices = [p["price_amount"] for p in by_price["data"]]
    assert prices == sorted(prices)
    assert prices[0] == 30
    by_order = json_of(
        api.get("/v1/payment/", jwt=True, params={"sortBy": "order_id", "orderBy": "desc"})
    )
    assert [p["order_id"] for p in by_order["data"]][:2] == ["o6", "o5"]


def test_list_date_filters(
    sandbox: SandboxServer, api: Api, seven: list[dict[str, object]]
) -> None:
    day = [str(p["created_at"])[:10] for p in seven]
    one_day = json_of(
        api.get("/v1/payment/", jwt=True, params={"dateFrom": day[2], "dateTo": day[2]})
    )
    assert [p["payment_id"] for p in one_day["data"]] == [int(seven[2]["payment_id"])]
    span = json_of(api.get("/v1/payment/", jwt=True, params={"dateFrom": day[1], "dateTo": day[3]}))
    assert span["total"] == 3
    iso_from = json_of(
        api.get("/v1/payment/", jwt=True, params={"dateFrom": seven[5]["created_at"]})
    )
    assert iso_from["total"] == 2


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 501},
        {"limit": "x"},
        {"page": -1},
        {"sortBy": "nope"},
        {"orderBy": "up"},
        {"dateFrom": "yesterday"},
    ],
)
def test_list_validation(api: Api, params: dict[str, object]) -> None:
    assert_error(api.get("/v1/payment/", jwt=True, params=params), 400, "INVALID_REQUEST_PARAMS")


def test_list_limit_500_is_allowed(api: Api) -> None:
    assert json_of(api.get("/v1/payment/", jwt=True, params={"limit": 500}))["limit"] == 500


def test_body_without_json_content_type_is_ignored(api: Api) -> None:
    answer = api.request(
        "POST",
        "/v1/payment",
        data='{"price_amount": 100, "price_currency": "usd", "pay_currency": "btc"}',
        headers={"Content-Type": "text/plain"},
    )
    body = assert_error(answer, 400, "INVALID_REQUEST_PARAMS")
    assert body["message"] == '"price_amount" is required'
