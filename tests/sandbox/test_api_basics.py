"""Status, API key, JWT, currencies, minimums, estimates, balance and request counting."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from sandbox import SandboxServer
from tests.sandbox.conftest import EMAIL, PASSWORD, Api, assert_error, json_of

AUTH_MESSAGE = "Authorization header is empty (Bearer JWTtoken is required)"


def test_status_needs_no_key(api: Api) -> None:
    answer = api.get("/v1/status", key=False)
    assert answer.status_code == 200
    assert answer.text == '{"message":"OK"}'
    assert answer.headers["Content-Type"].startswith("application/json")
    assert answer.headers["x-request-id"]


@pytest.mark.parametrize("key", [None, "wrong-key"])
def test_api_key_is_enforced(api: Api, key: str | None) -> None:
    headers = {} if key is None else {"x-api-key": key}
    answer = api.get("/v1/currencies", key=False, headers=headers)
    assert_error(answer, 403, "INVALID_API_KEY")


def test_api_key_header_is_case_insensitive(api: Api) -> None:
    answer = api.get("/v1/currencies", key=False, headers={"X-API-KEY": api.api_key})
    assert answer.status_code == 200


def test_auth_returns_hs256_jwt_with_exp(api: Api) -> None:
    answer = api.post("/v1/auth", {"email": EMAIL, "password": PASSWORD}, key=False)
    assert answer.status_code == 200
    token = answer.json()["token"]
    assert re.fullmatch(r"[\w-]+\.[\w-]+\.[\w-]+", token)
    import base64
    import json

    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert header["alg"] == "HS256"
    assert claims["exp"] - claims["iat"] == 300


def test_auth_rejects_bad_credentials(api: Api) -> None:
    assert_error(
        api.post("/v1/auth", {"email": EMAIL, "password": "nope"}), 401, "INVALID_CREDENTIALS"
    )
    assert_error(api.post("/v1/auth", {"email": EMAIL}), 400, "INVALID_REQUEST_PARAMS")
    body = "{not json"
    answer = api.request(
        "POST", "/v1/auth", data=body, headers={"Content-Type": "application/json"}
    )
    assert_error(answer, 400, "INVALID_REQUEST_PARAMS")


def test_jwt_required_on_list_with_exact_message(api: Api) -> None:
    body = assert_error(api.get("/v1/payment/"), 401, "AUTH_REQUIRED")
    assert body["message"] == AUTH_MESSAGE
    bad = api.get("/v1/payment/", headers={"Authorization": "Bearer a.b.c"})
    assert_error(bad, 401, "AUTH_REQUIRED")
    assert api.get("/v1/payment/", jwt=True).status_code == 200


def test_jwt_also_needs_the_api_key(api: Api) -> None:
    answer = api.get("/v1/payment/", key=False, headers={"Authorization": f"Bearer {api.token()}"})
    assert_error(answer, 403, "INVALID_API_KEY")


def test_jwt_expires_on_the_sandbox_clock(sandbox: SandboxServer, api: Api) -> None:
    token = api.token()
    sandbox.control.advance_clock(299)
    assert api.get("/v1/payment/", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    sandbox.control.advance_clock(2)
    expired = api.get("/v1/payment/", headers={"Authorization": f"Bearer {token}"})
    assert_error(expired, 401, "AUTH_REQUIRED")
    assert api.get("/v1/payment/", headers={"Authorization": f"Bearer {api.token(fresh=True)}"}).ok


def test_jwt_ttl_is_configurable() -> None:
    with SandboxServer(jwt_ttl=10) as server:
        client = Api(server.url, api_key="sandbox-api-key")
        token = client.token()
        server.control.advance_clock(11)
        answer = client.get("/v1/payment/", headers={"Authorization": f"Bearer {token}"})
        assert_error(answer, 401, "AUTH_REQUIRED")


def test_currencies_and_fixed_rate(api: Api) -> None:
    codes = api.get("/v1/currencies").json()["currencies"]
    assert {"btc", "eth", "ltc", "trx", "usdttrc20", "usdterc20", "usdtbsc", "bnbbsc"} <= set(codes)
    assert {"usdc", "sol", "usdtmatic", "xrp"} <= set(codes)
    assert "doge" not in codes  # disabled
    assert all(code == code.lower() for code in codes)
    fixed = api.get("/v1/currencies", params={"fixed_rate": "true"}).json()["currencies"]
    assert set(fixed) < set(codes)
    assert "usdtmatic" not in fixed


FULL_FIELDS = {
    "id", "code", "name", "enable", "wallet_regex", "priority", "extra_id_exists",
    "extra_id_regex", "logo_url", "track", "cg_id", "is_maxlimit", "network", "smart_contract",
    "network_precision", "explorer_link_hash", "precision", "ticker", "is_defi", "is_popular",
    "is_stable", "available_for_to_conversion",
}  # fmt: skip


def test_full_currencies_fields(api: Api) -> None:
    entries = json_of(api.get("/v1/full-currencies"))["currencies"]
    assert len(entries) == 14
    by_code = {e["code"]: e for e in entries}
    for entry in entries:
        assert set(entry) == FULL_FIELDS
        assert entry["code"] == entry["code"].upper()
    assert by_code["DOGE"]["enable"] is False
    assert by_code["USDTTRC20"]["network"] == "trx"
    assert by_code["USDTERC20"]["network"] == "eth"
    assert by_code["USDTBSC"]["network"] == "bsc"
    assert by_code["USDTMATIC"]["network"] == "matic"
    assert by_code["XRP"]["extra_id_exists"] is True
    assert by_code["XRP"]["extra_id_regex"]
    assert by_code["XLM"]["extra_id_exists"] is True
    assert by_code["BTC"]["explorer_link_hash"].endswith("/:hash")
    assert by_code["SOL"]["explorer_link_hash"] is None
    assert by_code["ETH"]["network_precision"] == "18"
    assert by_code["USDTTRC20"]["is_stable"] is True


def test_merchant_coins_are_a_subset(api: Api) -> None:
    body = api.get("/v1/merchant/coins").json()
    assert list(body) == ["selectedCurrencies"]
    assert set(body["selectedCurrencies"]) < set(api.get("/v1/currencies").json()["currencies"])


def test_min_amount(api: Api) -> None:
    answer = json_of(api.get("/v1/min-amount", params={"currency_from": "btc"}))
    assert answer == {
        "currency_from": "btc",
        "currency_to": "btc",
        "min_amount": Decimal("0.00016667"),
    }
    with_fiat = json_of(
        api.get(
            "/v1/min-amount",
            params={"currency_from": "eth", "currency_to": "trx", "fiat_equivalent": "usd"},
        )
    )
    assert set(with_fiat) == {"currency_from", "currency_to", "min_amount", "fiat_equivalent"}
    fixed = json_of(
        api.get("/v1/min-amount", params={"currency_from": "eth", "is_fixed_rate": "true"})
    )
    fee_user = json_of(
        api.get("/v1/min-amount", params={"currency_from": "eth", "is_fee_paid_by_user": "true"})
    )
    plain = json_of(api.get("/v1/min-amount", params={"currency_from": "eth"}))
    assert plain["min_amount"] < fixed["min_amount"] < fee_user["min_amount"]


def test_min_amount_errors(api: Api) -> None:
    assert_error(api.get("/v1/min-amount"), 400, "INVALID_REQUEST_PARAMS")
    unknown = api.get("/v1/min-amount", params={"currency_from": "nope"})
    assert assert_error(unknown, 400, "INVALID_REQUEST_PARAMS")["message"] == (
        "Currency nope was not found"
    )
    disabled = api.get("/v1/min-amount", params={"currency_from": "doge"})
    assert_error(disabled, 400, "CURRENCY_UNAVAILABLE")


def test_estimate(api: Api) -> None:
    params = {"amount": "3999.5", "currency_from": "usd", "currency_to": "btc"}
    answer = api.get("/v1/estimate", params=params)
    assert answer.text == (
        '{"currency_from":"usd","amount_from":3999.5,"currency_to":"btc",'
        '"estimated_amount":0.06665833}'
    )
    crypto = json_of(
        api.get(
            "/v1/estimate", params={"amount": 1, "currency_from": "eth", "currency_to": "usdttrc20"}
        )
    )
    assert crypto["estimated_amount"] == Decimal("3000")
    assert_error(
        api.get("/v1/estimate", params={"currency_from": "usd"}), 400, "INVALID_REQUEST_PARAMS"
    )


def test_balance_is_keyed_by_ticker(api: Api) -> None:
    body = json_of(api.get("/v1/balance"))
    assert set(body["btc"]) == {"amount", "pendingAmount"}
    assert body["btc"]["pendingAmount"] == 0
    assert "doge" not in body


def test_unknown_route_is_a_404_envelope(api: Api) -> None:
    assert_error(api.get("/v1/nothing-here"), 404, "NOT_FOUND")


def test_request_counts_by_pattern(sandbox: SandboxServer, api: Api) -> None:
    sandbox.control.reset_requests()
    created = api.create_payment()
    api.status(created["payment_id"])
    api.status(created["payment_id"])
    api.get("/v1/payment/", jwt=True)
    counts = sandbox.control.requests()
    assert counts["POST /v1/payment"] == 1
    assert counts["GET /v1/payment/{id}"] == 2
    assert counts["GET /v1/payment/"] == 1
    assert counts["POST /v1/auth"] == 1
    sandbox.control.reset_requests()
    assert sandbox.control.requests() == {}
