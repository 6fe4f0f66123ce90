"""What the real API accepts: form-encoded bodies, chunked bodies on keep-alive connections,
and the refusal of an unknown currency."""

from __future__ import annotations

import http.client
import json
import socket
from decimal import Decimal
from typing import Any, BinaryIO

import pytest

from sandbox import SandboxServer
from sandbox.request_body import parse_form
from tests.sandbox.conftest import API_KEY, TRON_ADDRESS, Api, assert_error, json_of

FORM = "application/x-www-form-urlencoded"


def test_form_encoded_payment(api: Api) -> None:
    form = {
        "price_amount": "100",
        "price_currency": "usd",
        "pay_currency": "btc",
        "order_id": "form-1",
        "order_description": "Café",
        "is_fixed_rate": "true",
    }
    answer = api.request("POST", "/v1/payment", data=form)
    assert answer.request.headers["Content-Type"] == FORM
    assert answer.status_code == 201, answer.text
    body = json_of(answer)
    assert body["price_amount"] == 100
    assert body["order_id"] == "form-1"
    assert body["order_description"] == "Café"
    assert body["is_fixed_rate"] is True
    missing = api.request("POST", "/v1/payment", data={"price_currency": "usd"})
    assert_error(missing, 400, "INVALID_REQUEST_PARAMS")


def test_form_encoded_payout_with_nested_withdrawals(api: Api) -> None:
    form = (
        f"withdrawals[0][address]={TRON_ADDRESS}&withdrawals[0][currency]=usdttrc20"
        f"&withdrawals[0][amount]=5&withdrawals[1][address]={TRON_ADDRESS}"
        "&withdrawals[1][currency]=trx&withdrawals[1][amount]=7.5&payout_description=form"
    )
    headers = {"Content-Type": FORM}
    answer = api.request("POST", "/v1/payout", data=form, headers=headers, jwt=True)
    assert answer.status_code == 200, answer.text
    first, second = json_of(answer)["withdrawals"]
    assert (first["amount"], second["amount"]) == ("5", "7.5")
    assert second["currency"] == "trx"
    assert first["payout_description"] == "form"


def test_parse_form_follows_qs() -> None:
    parsed = parse_form(b"a=1&a=2&l[]=x&l[]=y&o[k]=v&w[1][x]=b&w[0][x]=a&e=&plus=a+b%21")
    assert parsed == {
        "a": ["1", "2"],
        "l": ["x", "y"],
        "o": {"k": "v"},
        "w": [{"x": "a"}, {"x": "b"}],
        "e": "",
        "plus": "a b!",
    }


def _create_body() -> bytes:
    return json.dumps(
        {"price_amount": 100, "price_currency": "usd", "pay_currency": "eth"}
    ).encode()


def test_chunked_post_then_a_second_request_on_the_same_connection(
    sandbox: SandboxServer,
) -> None:
    connection = http.client.HTTPConnection(str(sandbox.host), sandbox.port, timeout=10)
    body = _create_body()
    chunks = iter([body[:7], body[7:20], body[20:]])
    headers = {"x-api-key": API_KEY, "Content-Type": "application/json"}
    connection.request("POST", "/v1/payment", body=chunks, headers=headers, encode_chunked=True)
    first = connection.getresponse()
    created = json.loads(first.read(), parse_float=Decimal)
    assert first.status == 201, created
    assert created["pay_currency"] == "eth"
    sock = connection.sock
    connection.request("GET", f"/v1/payment/{created['payment_id']}", headers=headers)
    second = connection.getresponse()
    assert connection.sock is sock  # the same keep-alive connection
    status = json.loads(second.read(), parse_float=Decimal)
    assert second.status == 200
    assert status["payment_id"] == int(created["payment_id"])
    connection.close()


def _read_response(stream: BinaryIO) -> tuple[int, dict[str, str], bytes]:
    status_line = stream.readline().decode()
    headers: dict[str, str] = {}
    while (line := stream.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    body = stream.read(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers, body


def _raw(sandbox: SandboxServer, data: bytes, responses: int) -> list[tuple[int, Any, bytes]]:
    with socket.create_connection((str(sandbox.host), sandbox.port), timeout=10) as sock:
        sock.sendall(data)
        stream = sock.makefile("rb")
        return [_read_response(stream) for _ in range(responses)]


def test_raw_chunked_with_extensions_and_trailers_then_pipelined_get(
    sandbox: SandboxServer,
) -> None:
    body = _create_body()
    head = (
        "POST /v1/payment HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"x-api-key: {API_KEY}\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    chunked = (
        f"{10:x};ext=1\r\n".encode()
        + body[:10]
        + b"\r\n"
        + f"{len(body) - 10:X}\r\n".encode()
        + body[10:]
        + b"\r\n0\r\nX-Trailer: yes\r\n\r\n"
    )
    follow = b"GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n"
    (status1, _, body1), (status2, _, body2) = _raw(sandbox, head + chunked + follow, 2)
    assert status1 == 201, body1
    assert json.loads(body1)["pay_currency"] == "eth"
    assert (status2, json.loads(body2)) == (200, {"message": "OK"})


@pytest.mark.parametrize(
    "framing",
    [
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
        b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}XX0\r\n\r\n",
        b"Content-Length: ten\r\n\r\n{}",
    ],
)
def test_broken_framing_is_a_400_and_the_connection_closes(
    sandbox: SandboxServer, framing: bytes
) -> None:
    request = b"POST /v1/payment HTTP/1.1\r\nHost: x\r\n" + framing
    [(status, headers, body)] = _raw(sandbox, request, 1)
    assert status == 400
    assert headers["connection"] == "close"
    assert json.loads(body)["statusCode"] == 400


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("POST", "/v1/payment", {"json": {"price_amount": 100, "price_currency": "usd"}}),
        ("POST", "/v1/invoice", {"json": {"price_amount": 100, "price_currency": "usd"}}),
        ("GET", "/v1/estimate", {"params": {"amount": 1, "currency_from": "usd"}}),
        ("GET", "/v1/min-amount", {"params": {}}),
    ],
)
def test_unknown_currency_is_not_found(
    api: Api, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    if "json" in kwargs:
        kwargs = {"json": {**kwargs["json"], "pay_currency": "XYZ1"}}
    else:
        key = "currency_to" if path == "/v1/estimate" else "currency_from"
        kwargs = {"params": {**kwargs["params"], key: "XYZ1"}}
    body = assert_error(api.request(method, path, **kwargs), 400, "INVALID_REQUEST_PARAMS")
    assert body["message"] == "Currency XYZ1 was not found"
    assert list(body) == ["status", "statusCode", "code", "message"]


def test_unknown_price_currency_and_disabled_coin(api: Api) -> None:
    unknown = {"price_amount": 100, "price_currency": "zzz", "pay_currency": "btc"}
    body = assert_error(api.post("/v1/payment", unknown), 400, "INVALID_REQUEST_PARAMS")
    assert body["message"] == "Currency zzz was not found"
    disabled = {"price_amount": 100, "price_currency": "usd", "pay_currency": "doge"}
    body = assert_error(api.post("/v1/payment", disabled), 400, "CURRENCY_UNAVAILABLE")
    assert body["message"] == "Currency doge is not available"
