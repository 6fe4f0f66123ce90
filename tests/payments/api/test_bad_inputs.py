"""Malformed requests to every endpoint: a 4xx with {code, message}, nothing created, never a
5xx (the issue's two 500s first: a 100,000-deep JSON body, and a NUL in a currency lookup)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from rest_framework.test import APIClient

from payments import ledger
from payments.models import Payment, UserBalance, WithdrawalRequest
from tests.payments.api.conftest import API

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def funded(user: Any) -> Any:
    ledger.post(user_id=user.pk, kind="deposit", amount_usd=Decimal("50.00"), idempotency_key="f")
    return user


def _raw(client: APIClient, path: str, body: bytes | str, content_type: str) -> Any:
    return client.generic("POST", f"{API}{path}", body, content_type=content_type)


def _error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert isinstance(body["code"], str)
    assert body["code"]
    assert isinstance(body["message"], str)
    assert body["message"]
    if code is not None:
        assert body["code"] == code, body
    return body


def _nothing_created(user: Any) -> None:
    assert not Payment.objects.exists()
    assert not WithdrawalRequest.objects.exists()
    assert UserBalance.objects.get(user=user).balance_usd == Decimal("50.00")


def test_a_100000_deep_json_body_is_a_parse_error(key_client, funded, usdt):
    body = "[" * 100_000 + "]" * 100_000
    for path in ("/payments/", "/withdrawals/"):
        _error(_raw(key_client, path, body, "application/json"), 400, "parse_error")
    _nothing_created(funded)


def test_a_nul_in_a_currency_lookup_is_a_404(key_client, usdt):
    _error(key_client.get(f"{API}/currencies/%00/"), 404, "not_found")
    _error(key_client.get(f"{API}/currencies/USDT%00TRC20/"), 404, "not_found")
    assert key_client.get(f"{API}/currencies/usdttrc20/").json()["code"] == "USDTTRC20"


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        ('{"amount_usd": NaN, "currency": "USDTTRC20"}', "application/json", 400, "parse_error"),
        ('{"amount_usd": Infinity, "currency": "X"}', "application/json", 400, "parse_error"),
        ('{"amount_usd": "NaN", "currency": "USDTTRC20"}', "application/json", 400, "invalid"),
        (
            '{"amount_usd": "-Infinity", "currency": "USDTTRC20"}',
            "application/json",
            400,
            "invalid",
        ),
        (
            '{"amount_usd": 1e999999999, "currency": "USDTTRC20"}',
            "application/json",
            400,
            "invalid",
        ),
        (
            '{"amount_usd": ' + "9" * 5000 + ', "currency": "X"}',
            "application/json",
            400,
            "parse_error",
        ),
        ('{"amount_usd": "1e-999999999", "currency": "USDTTRC20"}', "application/json", 400, None),
        ('["amount_usd", "25.00"]', "application/json", 400, "invalid"),
        ('"25.00"', "application/json", 400, "invalid"),
        ("null", "application/json", 400, "invalid"),
        ("", "application/json", 400, None),
        ("{", "application/json", 400, "parse_error"),
        ('{"amount_usd": "25.00", "currency": "\\ud800"}', "application/json", 400, "parse_error"),
        ('{"amount_usd": "25.00", "currency": "USDT\\u0000"}', "application/json", 400, "invalid"),
        (
            '{"amount_usd": "25.00", "currency": "USDTTRC20", "description": "\\u0000"}',
            "application/json",
            400,
            "invalid",
        ),
        (b'{"amount_usd": "25.00", "currency": "\xff"}', "application/json", 400, "parse_error"),
        ('{"amount_usd": "25.00"}', "application/json; charset=nonsense", 400, None),
        (
            "amount_usd=25.00&currency=USDTTRC20",
            "application/x-www-form-urlencoded",
            415,
            "unsupported_media_type",
        ),
        ("<xml/>", "text/xml", 415, "unsupported_media_type"),
        ('{"amount_usd": "' + "1" * 300_000 + '"}', "application/json", 413, "request_too_large"),
    ],
)
def test_bad_deposit_bodies(key_client, funded, sandbox, usdt, body, content_type, status, code):
    _error(_raw(key_client, "/payments/", body, content_type), status, code)
    _nothing_created(funded)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ({"amount_usd": "abc", "currency": "USDTTRC20", "wallet_address": "T1"}, "invalid"),
        ({"amount_usd": "0", "currency": "USDTTRC20", "wallet_address": "T1"}, "invalid"),
        ({"amount_usd": "-5.00", "currency": "USDTTRC20", "wallet_address": "T1"}, "invalid"),
        ({"amount_usd": "1e12", "currency": "USDTTRC20", "wallet_address": "T1"}, "invalid"),
        ({"amount_usd": "5.00", "currency": "NOPE", "wallet_address": "T1"}, "invalid"),
        ({"amount_usd": "5.00", "currency": "USDTTRC20"}, "invalid"),
        ({"amount_usd": "5.00", "currency": "USDTTRC20", "wallet_address": "T\x00"}, "invalid"),
        ({"amount_usd": "5.00", "currency": ["USDTTRC20"], "wallet_address": "T1"}, "invalid"),
        (
            {"amount_usd": "999.00", "currency": "USDTTRC20", "wallet_address": "T1"},
            "insufficient_funds",
        ),
        (
            {"amount_usd": "1.00", "currency": "USDTTRC20", "wallet_address": "T1"},
            "fees_exceed_amount",
        ),
    ],
)
def test_bad_withdrawal_requests(key_client, funded, usdt, data, code):
    response = key_client.post(f"{API}/withdrawals/", data, format="json")
    assert response.status_code in (400, 409)
    _error(response, response.status_code, code)
    _nothing_created(funded)


@pytest.mark.parametrize(
    "path",
    [
        "/payments/not-a-uuid/",
        "/payments/00000000-0000-0000-0000-000000000000/",
        "/payments/%00/",
        "/withdrawals/not-a-uuid/",
        "/withdrawals/%E2%80%AE/",
        "/transactions/abc/",
        "/transactions/-1/",
        "/transactions/99999999999999999999999999999/",
        "/currencies/a.b/",
        "/currencies/" + "A" * 500 + "/",
        "/currencies/%F0%9F%92%B8/",
        "/no-such-endpoint/",
        "/payments/a%2Fb/",
        "/payments",
    ],
)
def test_bad_lookups_are_json_404s(key_client, path):
    _error(key_client.get(f"{API}{path}"), 404, "not_found")


def test_a_missing_trailing_slash_says_so(key_client):
    assert "/payments/api/balance/" in key_client.get(f"{API}/balance").json()["message"]


@pytest.mark.parametrize(
    "path",
    [
        "/withdrawals/not-a-uuid/cancel/",
        "/withdrawals/00000000-0000-0000-0000-000000000000/cancel/",
    ],
)
def test_cancelling_what_is_not_there_is_a_404(key_client, funded, path):
    _error(key_client.post(f"{API}{path}"), 404, "not_found")


@pytest.mark.parametrize(
    "query",
    [
        "status=nope",
        "status=",  # empty: no filter, fine -- checked below as a 200
        "status=%00",
        "status=,,",
        "created_after=yesterday",
        "created_after=2025-13-45",
        "created_before=2025-02-30T25:61:00",
        "created_after=%00",
        "created_before=9999-12-31T23:59:59-23:59",
        "currency=%00",
        "currency=" + "X" * 100,
        "page_size=0",
        "page_size=-1",
        "page_size=abc",
        "page_size=1e3",
        "page_size=99999999999999999999",
        "page=0",
        "page=abc",
    ],
)
def test_bad_filters_are_400s(key_client, query):
    for path in ("/payments/", "/withdrawals/", "/transactions/"):
        response = key_client.get(f"{API}{path}?{query}")
        if query == "status=" or (
            query.startswith(("status", "currency")) and path == "/transactions/"
        ):
            assert response.status_code == 200, (path, query)  # not a filter of this list
            continue
        _error(response, 400, "invalid_filter")


def test_a_page_past_the_end_is_a_404(key_client):
    _error(key_client.get(f"{API}/payments/?page=2"), 404, "not_found")


@pytest.mark.parametrize(
    "query",
    [
        "",
        "currency=USDTTRC20",
        "amount_usd=20.00",
        "currency=USDTTRC20&amount_usd=abc",
        "currency=USDTTRC20&amount_usd=NaN",
        "currency=USDTTRC20&amount_usd=-1",
        "currency=%00&amount_usd=20.00",
        "currency=NOPE&amount_usd=20.00",
        "currency=USDTTRC20&amount_usd=1.00",
    ],
)
def test_bad_quotes_are_400s(key_client, usdt, query):
    _error(key_client.get(f"{API}/withdrawals/quote/?{query}"), 400)


def test_a_good_quote(key_client, usdt):
    quote = key_client.get(f"{API}/withdrawals/quote/?currency=usdttrc20&amount_usd=20.00").json()
    assert (quote["total_fee_usd"], quote["final_amount_usd"]) == ("1.50", "18.50")
    assert quote["currency"] == "USDTTRC20"


def test_bad_authorization_headers_are_401s_never_500s(db):
    for header in ("Bearer", "Bearer ", "Bearer pk_\x00", "Bearer " + "x" * 5000, "Bearer é"):
        response = APIClient(HTTP_AUTHORIZATION=header).get(f"{API}/balance/")
        _error(response, 401, "authentication_failed")
    response = APIClient(HTTP_X_API_KEY="pk_000000000000_" + "a" * 43).get(f"{API}/balance/")
    _error(response, 401, "authentication_failed")


def test_a_json_number_amount_is_read_as_a_decimal(key_client, funded, usdt):
    body = json.dumps({"currency": "USDTTRC20", "wallet_address": "T1", "amount_usd": 20.5})
    response = _raw(key_client, "/withdrawals/", body, "application/json")
    assert response.status_code == 201, response.json()
    assert response.json()["amount_usd"] == "20.50"
