"""IPN canonical JSON and HMAC, checked byte for byte against Node running the docs' recipes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from payments.services.providers.nowpayments.signature import (
    canonical_ipn_body,
    js_dumps,
    js_number,
    sign_ipn,
    verify_ipn,
)

NODE = shutil.which("node")
REFERENCE_JS = Path(__file__).resolve().parents[4] / "vectors" / "ipn_reference.js"
SECRET = "  ipn-secret-Ωmega  "  # surrounding spaces: both sides must trim it

# Without node the Node tests skip locally; in CI (CI=true) they run and fail in run_node.
needs_node = pytest.mark.skipif(
    NODE is None and os.environ.get("CI") != "true", reason="node is not installed"
)

# Raw IPN bodies as NowPayments-like senders write them; the literals are what matters.
PAYMENT_IPN = """{
  "payment_id": 5077125051, "parent_payment_id": null, "invoice_id": null,
  "payment_status": "finished", "pay_address": "bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh",
  "payin_extra_id": null, "price_amount": 15.0, "price_currency": "usd",
  "pay_amount": 0.00024836, "actually_paid": 1.23e-06, "actually_paid_at_fiat": 0,
  "pay_currency": "btc", "order_id": "ORD-1/2", "order_description": "Café ☕ — 日本",
  "purchase_id": "5312822613", "outcome_amount": 5e-05, "outcome_currency": "btc",
  "payment_extra_ids": [5513339153, 42, 7, 8, 9, 10, 11, 12, 13, 14, 15],
  "fee": {"currency": "btc", "withdrawalFee": 1.5e-7, "serviceFee": 0.000001,
          "depositFee": 1.0E-5},
  "ipn_callback_url": "https://example.com/ipn/nowpayments/?a=1&b=2",
  "is_fixed_rate": false, "is_fee_paid_by_user": true,
  "big": 123456789012345678901, "huge": 1e21, "neg": -0.0, "exp": 2E+3
}"""
PAYOUT_IPN = (
    '{"id":"5000000000","batch_withdrawal_id":"5000000713","status":"FINISHED","error":null,'
    '"currency":"usdttrc20","amount":"200","address":"TEmGwPeRTPiLFLVfBxXkSP91yc5GMNQhfS",'
    '"fee":0.4,"extra_id":null,"hash":"abc","ipn_callback_url":"https://example.com/a/b",'
    '"created_at":"2020-11-12T17:06:12.791Z","requested_at":null,"updated_at":null}'
)
ODD_IPN = (
    '{"b":[{"z":1,"a":[3,{"y":null,"x":true}]}],"a":"\\u0000\\u001f\\b\\f\\n\\r\\t\\"\\\\/",'
    '"\\ud83d\\ude00":"astral","\\uff5e":"bmp high","10":"ten","2":"two","01":"zero-one",'
    '"lone":"\\ud800x\\udfff","ls":"\\u2028\\u2029\\u007f","empty":{},"none":[],'
    '"__proto__":{"polluted":true},"n":{"__proto__":null}}'
)
BODIES = [PAYMENT_IPN, PAYOUT_IPN, ODD_IPN]


def run_node(bodies: list[str], secret: str = SECRET) -> list[dict[str, Any]]:
    """Run the Node reference over raw JSON texts in one process."""
    if NODE is None:
        pytest.fail(
            "CI=true but `node` is not on PATH: the Node reference tests must not skip in CI "
            "(.ci/run installs nodejs)",
            pytrace=False,
        )
    request = json.dumps({"secret": secret, "bodies": bodies})
    done = subprocess.run(
        [NODE, str(REFERENCE_JS)],
        input=request,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout)


def parse(body: str) -> Any:
    return json.loads(body, parse_float=Decimal)


@pytest.fixture(scope="module")
def node_vectors() -> list[dict[str, Any]]:
    return run_node(BODIES)


# --- js_number -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("15.0"), "15"),
        (Decimal("0.000001"), "0.000001"),
        (Decimal("1.5e-7"), "1.5e-7"),
        (Decimal("1e21"), "1e+21"),
        (Decimal("1e20"), "100000000000000000000"),
        (Decimal("123456789012345678901"), "123456789012345680000"),
        (123456789012345678901, "123456789012345680000"),
        (Decimal("-0"), "0"),
        (Decimal("-0.0"), "0"),
        (0, "0"),
        (Decimal("5e-05"), "0.00005"),
        (Decimal("1.23e-06"), "0.00000123"),
        (Decimal("0.1"), "0.1"),
        (Decimal("-2.5E+3"), "-2500"),
        (Decimal("0.17070286"), "0.17070286"),
        (Decimal("1.7976931348623157e308"), "1.7976931348623157e+308"),
        (Decimal("5e-324"), "5e-324"),
        (Decimal("0.30000000000000004"), "0.30000000000000004"),
        (2**53, "9007199254740992"),
        (-(2**53) - 1, "-9007199254740992"),
    ],
)
def test_js_number_known_values(value: Decimal | int, expected: str) -> None:
    assert js_number(value) == expected


@pytest.mark.parametrize("value", [Decimal("NaN"), Decimal("Infinity"), Decimal("-1e400"), 10**400])
def test_js_number_rejects_non_finite(value: Decimal | int) -> None:
    with pytest.raises(ValueError, match=r"JSON|JavaScript"):
        js_number(value)


@pytest.mark.parametrize("value", [1.5, True, "1"])
def test_js_number_rejects_other_types(value: Any) -> None:
    with pytest.raises(TypeError):
        js_number(value)


def test_js_dumps_refuses_floats() -> None:
    with pytest.raises(TypeError):
        js_dumps({"amount": 0.1})


def test_canonical_body_drops_proto_like_node() -> None:
    payload = {"b": 1, "__proto__": {"x": 1}, "a": [{"__proto__": None}]}
    assert canonical_ipn_body(payload) == '{"a":[{}],"b":1}'
    assert js_dumps(payload) == '{"b":1,"__proto__":{"x":1},"a":[{"__proto__":null}]}'


def test_js_dumps_basics() -> None:
    body = {"url": "https://a/b", "text": "é\n\u2028", "list": [1, None, True], "t": (Decimal(1),)}
    assert (
        js_dumps(body) == '{"url":"https://a/b","text":"é\\n\u2028","list":[1,null,true],"t":[1]}'
    )
    assert js_dumps({"b": {"d": 1, "c": 2}, "a": [{"f": 1, "e": 2}]}, sort_keys=True) == (
        '{"a":[{"e":2,"f":1}],"b":{"c":2,"d":1}}'
    )


# --- against Node --------------------------------------------------------------------------


@needs_node
@pytest.mark.parametrize("index", range(len(BODIES)))
def test_js_dumps_matches_node(node_vectors: list[dict[str, Any]], index: int) -> None:
    payload = parse(BODIES[index])
    vector = node_vectors[index]
    assert js_dumps(payload) == vector["stringify"]
    assert canonical_ipn_body(payload) == vector["sorted"]
    assert canonical_ipn_body(payload, arrays_as_objects=True) == vector["sorted_docs"]


@needs_node
@pytest.mark.parametrize("index", range(len(BODIES)))
def test_sign_ipn_matches_node(node_vectors: list[dict[str, Any]], index: int) -> None:
    payload = parse(BODIES[index])
    vector = node_vectors[index]
    assert sign_ipn(payload, SECRET) == vector["sig"]
    assert sign_ipn(payload, SECRET, arrays_as_objects=True) == vector["sig_docs"]


@needs_node
def test_node_vector_shows_the_pitfalls(node_vectors: list[dict[str, Any]]) -> None:
    """The payment vector really exercises what Python's json.dumps gets wrong."""
    sorted_body = node_vectors[0]["sorted"]
    for fragment in (
        '"actually_paid":0.00000123',
        '"outcome_amount":0.00005',
        '"price_amount":15,',
    ):
        assert fragment in sorted_body
    assert '"withdrawalFee":1.5e-7' in sorted_body
    assert '"big":123456789012345680000' in sorted_body
    assert "Café ☕ — 日本" in sorted_body
    assert "https://example.com/ipn/nowpayments/" in sorted_body
    assert '"fee":{"currency":"btc","depositFee":0.00001,"serviceFee":0.000001,' in sorted_body
    assert '"payment_extra_ids":{"0":5513339153,"1":42,' in node_vectors[0]["sorted_docs"]
    naive = json.dumps(json.loads(PAYMENT_IPN), separators=(",", ":"), sort_keys=True)
    assert naive != sorted_body


@needs_node
@pytest.mark.parametrize("index", range(len(BODIES)))
def test_verify_ipn_accepts_both_array_forms(
    node_vectors: list[dict[str, Any]], index: int
) -> None:
    raw = BODIES[index].encode()
    assert verify_ipn(raw, node_vectors[index]["sig"], SECRET)
    assert verify_ipn(raw, node_vectors[index]["sig_docs"], SECRET)
    assert verify_ipn(raw, node_vectors[index]["sig"].upper(), SECRET.strip())


@needs_node
def test_verify_ipn_rejects_tampering(node_vectors: list[dict[str, Any]]) -> None:
    signature = node_vectors[0]["sig"]
    raw = PAYMENT_IPN.encode()
    tampered = PAYMENT_IPN.replace('"finished"', '"confirmed"').encode()
    assert not verify_ipn(tampered, signature, SECRET)
    assert not verify_ipn(PAYMENT_IPN.replace("1.23e-06", "1.24e-06").encode(), signature, SECRET)
    assert not verify_ipn(raw, signature, "other-secret")
    assert not verify_ipn(raw, None, SECRET)
    assert not verify_ipn(raw, "", SECRET)
    assert not verify_ipn(raw, signature[:-2], SECRET)
    assert not verify_ipn(raw, "z" * 128, SECRET)
    assert not verify_ipn(raw, signature, "")


@pytest.mark.parametrize(
    "raw",
    [b"", b"not json", b"[1,2]", b'"text"', b'{"a":NaN}', b'{"a":1e999}', b"\xff\xfe", b"[" * 5000],
)
def test_verify_ipn_never_raises(raw: bytes) -> None:
    assert verify_ipn(raw, "a" * 128, SECRET) is False


def test_verify_ipn_roundtrip_without_node() -> None:
    payload = parse(PAYMENT_IPN)
    raw = js_dumps(payload).encode()
    assert verify_ipn(raw, sign_ipn(payload, SECRET), SECRET)
    assert verify_ipn(raw, sign_ipn(payload, SECRET, arrays_as_objects=True), SECRET)


# --- property: js_dumps == JSON.stringify ---------------------------------------------------

_finite = st.floats(allow_nan=False, allow_infinity=False)
_numbers = st.one_of(
    _finite.map(lambda f: Decimal(repr(f))),
    st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(
        lambda d: abs(d.adjusted()) < 300
    ),
    st.integers(min_value=-(10**25), max_value=10**25),
)
_text = st.text(st.characters(codec=None, exclude_categories=["Cn"]), max_size=12)
_keys = st.one_of(
    _text, st.integers(min_value=0, max_value=2**33).map(str), st.sampled_from(["01", "-1"])
)
_json = st.recursive(
    st.one_of(st.none(), st.booleans(), _numbers, _text),
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(_keys, inner, max_size=5)),
    max_leaves=12,
)


def _to_json_text(value: Any) -> str:
    """Encode for Node: Decimal literals verbatim, strings ASCII-escaped (lone surrogates too)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        items = (f"{json.dumps(k)}:{_to_json_text(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_to_json_text(v) for v in value) + "]"
    return json.dumps(value)


@needs_node
@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(_json, min_size=30, max_size=40))
def test_js_dumps_equals_node_stringify(values: list[Any]) -> None:
    texts = [_to_json_text(v) for v in values]
    vectors = run_node(texts)
    for text, vector in zip(texts, vectors, strict=True):
        parsed = parse(text)
        assert js_dumps(parsed) == vector["stringify"], text
        if "__proto__" not in text:  # the Node recipes drop that key; canonical_ipn_body too
            assert js_dumps(parsed, sort_keys=True) == vector["sorted"], text
        if isinstance(parsed, dict):
            assert canonical_ipn_body(parsed) == vector["sorted"], text
            assert canonical_ipn_body(parsed, arrays_as_objects=True) == vector["sorted_docs"]
            assert sign_ipn(parsed, SECRET) == vector["sig"]


@needs_node
@settings(max_examples=3, deadline=None)
@given(st.lists(_finite, min_size=200, max_size=200))
def test_js_number_equals_node_string(floats: list[float]) -> None:
    body = "[" + ",".join(repr(f) for f in floats) + "]"
    (vector,) = run_node([body])
    expected = vector["stringify"][1:-1].split(",")
    assert [js_number(Decimal(repr(f))) for f in floats] == expected
