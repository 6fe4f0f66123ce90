"""sandbox.jsjson against Node's JSON.stringify and the NowPayments recipes, and the product."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from payments.services.providers.nowpayments.signature import sign_ipn, verify_ipn
from sandbox import SandboxServer, jsjson
from tests.sandbox.conftest import IPN_SECRET, Api, NodeReference, Receiver

SECRET = "\u3000\ufeff sandbox-secret-Ω \t\n"  # JavaScript's trim() removes all of the padding

# Raw bodies, as a sender might write them: the literals are the point.
PAYMENT = """{
  "payment_id": 4409701815, "payment_status": "partially_paid", "pay_currency": "btc",
  "price_amount": 250.0, "pay_amount": 0.00375, "actually_paid": 7e-05,
  "actually_paid_at_fiat": 4.6700, "outcome_amount": 6.899E-5, "purchase_id": "6084744717",
  "order_description": "Thé — ünïcödé 🚀 / 注文", "order_id": null,
  "payment_extra_ids": [4409701816, 4409701817],
  "fee": {"withdrawalFee": 0, "depositFee": 2.5e-6, "serviceFee": 3.5E-7, "currency": "btc"},
  "ipn_callback_url": "https://shop.example/ipn?x=1&y=/2",
  "tiny": 1e-7, "small": 0.000001, "round": 1.0e2, "wide": 1e21, "almost": 999999999999999999999,
  "precise": 0.1000000000000000055511151231257827, "negzero": -0.0, "neg": -1.5E+300
}"""
PAYOUT = (
    '{"id":"5003417402","batch_withdrawal_id":"5003417401","status":"SENDING","error":null,'
    '"currency":"usdterc20","amount":"12.345678","address":"0x9f7a0b2c","fee":1.25,'
    '"extra_id":"","hash":null,"created_at":"2024-02-29T23:59:59.999Z"}'
)
TRICKY = (
    '{"z":[[1,[2,{"k":[]}]],{"b":2,"a":1}],"esc":"\\u0001\\u001b\\u007f\\b\\t\\n\\u000b\\f\\r"'
    ',"q":"\\"quoted\\" \\\\ back","lone":["\\udbff","\\udc00a","\\ud83d\\ude80"],'
    '"\\ud83d\\ude80":"astral key","\\uffff":"last bmp","\\ue000":"private use",'
    '"4294967294":"last index","4294967295":"not an index","007":"zeros","-3":"negative",'
    '"1.5":"fraction","3":"three","0":"zero","__proto__":[1,2],'
    '"inner":[{"__proto__":"dropped","keep":true}],"seps":"\\u2028\\u2029"}'
)
BODIES = [PAYMENT, PAYOUT, TRICKY]


def parsed(text: str) -> Any:
    return json.loads(text, parse_float=Decimal)


@pytest.fixture(scope="module")
def vectors(node_reference: NodeReference) -> list[dict[str, Any]]:
    return node_reference(BODIES, SECRET)


# --- Number::toString ------------------------------------------------------------------------


# Decimal literal -> what JavaScript prints for the double it parses to; "|" between pairs.
NUMBERS = """
    5e-05 0.00005 | 15.0 15 | 1e21 1e+21 | 1e20 100000000000000000000 | 1e-7 1e-7 |
    1.2e-7 1.2e-7 | 0.000001 0.000001 | 123e18 123000000000000000000 | 1.5e21 1.5e+21 |
    -4.20 -4.2 | -0.0 0 | 0E-12 0 | -2e-324 0 | 4.9e-324 5e-324 | 1E+2 100 | 0.1e-5 0.000001 |
    1.7976931348623157e308 1.7976931348623157e+308 | 0.30000000000000004 0.30000000000000004 |
    9007199254740993 9007199254740992 | 999999999999999999999 1e+21 | -1.5E+300 -1.5e+300
"""


@pytest.mark.parametrize(("literal", "text"), [pair.split() for pair in NUMBERS.split("|")])
def test_number_follows_ecmascript(literal: str, text: str) -> None:
    assert jsjson.number(Decimal(literal)) == text


@pytest.mark.parametrize(
    ("value", "text"), [(2**53 + 1, "9007199254740992"), (-(10**21) + 1, "-1e+21"), (7, "7")]
)
def test_integers_become_doubles(value: int, text: str) -> None:
    assert jsjson.number(value) == text


@pytest.mark.parametrize("value", [Decimal("NaN"), Decimal("sNaN"), Decimal("-Inf"), 10**309])
def test_number_refuses_what_json_cannot_hold(value: Decimal | int) -> None:
    with pytest.raises(ValueError, match=r"finite|JavaScript|NaN"):
        jsjson.number(value)


@pytest.mark.parametrize("value", [0.5, [Decimal(1), 2.0], object(), {1: "x"}, {"a": {None: 1}}])
def test_non_json_values_are_refused(value: Any) -> None:
    with pytest.raises(TypeError):
        jsjson.dumps(value)


# --- strings and keys ------------------------------------------------------------------------


def test_strings_are_quoted_as_quote_json_string() -> None:
    text = 'a"b\\c\b\t\n\f\r\x00\x1f\x7f é \u2028 \U0001f600 \ud800 \ud83d\ude00 /'
    assert jsjson.dumps(text) == (
        '"a\\"b\\\\c\\b\\t\\n\\f\\r\\u0000\\u001f\x7f é \u2028 \U0001f600 \\ud800 \U0001f600 /"'
    )


def test_index_keys_come_first_whatever_the_order() -> None:
    body = {"b": 1, "10": 2, "2": 3, "02": 4, "a": 5, "4294967295": 6, "4294967294": 7}
    assert jsjson.dumps(body) == ('{"2":3,"10":2,"4294967294":7,"b":1,"02":4,"a":5,"4294967295":6}')
    assert jsjson.dumps(body, sort_keys=True) == (
        '{"2":3,"10":2,"4294967294":7,"02":4,"4294967295":6,"a":5,"b":1}'
    )


def test_sorting_compares_utf16_code_units() -> None:
    body = {"\uff5e": 1, "\U0001f600": 2, "\ue000": 3, "z": 4}
    assert jsjson.dumps(body, sort_keys=True) == '{"z":4,"\U0001f600":2,"\ue000":3,"\uff5e":1}'


def test_canonical_forms() -> None:
    payload = {"b": [{"d": 1, "c": [2, 3]}], "a": {"__proto__": 1, "y": 0, "x": []}}
    assert jsjson.dumps(payload) == '{"b":[{"d":1,"c":[2,3]}],"a":{"__proto__":1,"y":0,"x":[]}}'
    assert jsjson.canonical(payload) == '{"a":{"x":[],"y":0},"b":[{"c":[2,3],"d":1}]}'
    assert jsjson.canonical(payload, arrays_as_objects=True) == (
        '{"a":{"x":{},"y":0},"b":{"0":{"c":{"0":2,"1":3},"d":1}}}'
    )


# --- against Node ----------------------------------------------------------------------------


@pytest.mark.parametrize("index", range(len(BODIES)))
def test_dumps_is_json_stringify(vectors: list[dict[str, Any]], index: int) -> None:
    value, node = parsed(BODIES[index]), vectors[index]
    assert jsjson.dumps(value) == node["stringify"]
    assert jsjson.dumps(value, sort_keys=True) == node["sorted"]
    assert jsjson.canonical(value) == node["sorted"]
    assert jsjson.canonical(value, arrays_as_objects=True) == node["sorted_docs"]


@pytest.mark.parametrize("index", range(len(BODIES)))
def test_sign_is_the_node_recipes(vectors: list[dict[str, Any]], index: int) -> None:
    value, node = parsed(BODIES[index]), vectors[index]
    assert jsjson.sign(value, SECRET) == node["sig"]
    assert jsjson.sign(value, SECRET, arrays_as_objects=True) == node["sig_docs"]


def test_vectors_hit_the_pitfalls(vectors: list[dict[str, Any]]) -> None:
    """The bodies really exercise what a naive serialiser gets wrong."""
    payment, tricky = vectors[0]["sorted"], vectors[2]["stringify"]
    for fragment in ('"actually_paid":0.00007', '"price_amount":250,', '"wide":1e+21'):
        assert fragment in payment
    assert '"outcome_amount":0.00006899' in payment
    assert '"almost":1e+21' in payment
    assert '"fee":{"currency":"btc","depositFee":0.0000025,"serviceFee":3.5e-7' in payment
    assert tricky.startswith('{"0":"zero","3":"three","4294967294":"last index","z":')
    assert '"__proto__":[1,2]' in tricky
    assert '"__proto__"' not in vectors[2]["sorted"]
    assert vectors[0]["sig"] != vectors[0]["sig_docs"]  # payment_extra_ids is signed two ways
    assert '"lone":["\\udbff","\\udc00a","\U0001f680"]' in tricky


def test_sandbox_ipns_are_signed_as_node_signs(
    sandbox: SandboxServer, api: Api, receiver: Receiver, node_reference: NodeReference
) -> None:
    """What the running simulator sends, checked by the reference (both array forms)."""
    payment = api.create_payment(ipn_callback_url=receiver.url, order_description="Thé 🚀")
    sandbox.control.complete(payment["payment_id"])
    sandbox.control.redeposit(payment["payment_id"], "0.00005")
    received = receiver.wait_for(6)
    node = node_reference([item.body.decode() for item in received], IPN_SECRET)
    for item, vector in zip(received, node, strict=True):
        assert item.body.decode() == vector["stringify"]
        assert item.headers["x-nowpayments-sig"] == vector["sig"]
    sandbox.control.set_quirks(ipn_arrays_as_objects=True)
    sandbox.control.resend_ipn(payment["payment_id"])
    resent, count = None, len(received)
    while resent is None:  # the re-deposit child may still be notifying meanwhile
        count += 1
        last = receiver.wait_for(count)[-1]
        if json.loads(last.body)["payment_id"] == int(payment["payment_id"]):
            resent = last
    (vector,) = node_reference([resent.body.decode()], IPN_SECRET)
    assert json.loads(resent.body)["payment_extra_ids"]
    assert resent.headers["x-nowpayments-sig"] == vector["sig_docs"] != vector["sig"]


# --- against the product's signer ------------------------------------------------------------


@pytest.mark.parametrize("index", range(len(BODIES)))
@pytest.mark.parametrize("arrays_as_objects", [False, True])
def test_product_and_sandbox_agree(index: int, arrays_as_objects: bool) -> None:
    raw, value = BODIES[index], parsed(BODIES[index])
    ours = jsjson.sign(value, SECRET, arrays_as_objects=arrays_as_objects)
    theirs = sign_ipn(value, SECRET, arrays_as_objects=arrays_as_objects)
    assert ours == theirs
    assert verify_ipn(raw.encode(), ours, SECRET)
    assert verify_ipn(jsjson.dumps(value).encode(), ours, SECRET)


# --- properties ------------------------------------------------------------------------------

_decimals = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False).filter(lambda d: -300 < d.adjusted() < 300),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: Decimal(repr(f))),
    st.builds(
        Decimal,
        st.from_regex(r"-?[1-9][0-9]{0,20}(\.[0-9]{1,12})?(e[-+]?[0-9]{1,2})?", fullmatch=True),
    ),
)
_strings = st.text(st.characters(exclude_categories=["Cn"], codec=None), max_size=10)
_index_like = st.sampled_from([0, 1, 9, 10, 2**31, 2**32 - 2, 2**32 - 1, 2**32, 2**53]).map(str)
_names = st.one_of(_strings, _index_like, st.sampled_from(["__proto__", "00", "-0", "1e3"]))
_payloads = st.recursive(
    st.one_of(st.none(), st.booleans(), _decimals, st.integers(-(10**22), 10**22), _strings),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(_names, children, max_size=5)
    ),
    max_leaves=15,
)
_objects = st.dictionaries(_names, _payloads, min_size=1, max_size=6)


def _node_text(value: Any) -> str:
    """JSON text for Node: Decimal literals as written, strings escaped to ASCII."""
    if isinstance(value, dict):
        return "{" + ",".join(json.dumps(k) + ":" + _node_text(v) for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(map(_node_text, value)) + "]"
    return str(value) if isinstance(value, Decimal) else json.dumps(value)


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(_objects, min_size=25, max_size=25))
def test_random_payloads_match_node(node_reference: NodeReference, payloads: list[Any]) -> None:
    texts = [_node_text(payload) for payload in payloads]
    for text, node in zip(texts, node_reference(texts, SECRET), strict=True):
        value = parsed(text)
        assert jsjson.dumps(value) == node["stringify"], text
        assert jsjson.canonical(value) == node["sorted"], text
        assert jsjson.canonical(value, arrays_as_objects=True) == node["sorted_docs"], text
        assert jsjson.sign(value, SECRET) == node["sig"], text
        assert jsjson.sign(value, SECRET, arrays_as_objects=True) == node["sig_docs"], text


@settings(max_examples=4, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=250, max_size=250))
def test_random_numbers_match_node(node_reference: NodeReference, floats: list[float]) -> None:
    (node,) = node_reference(["[" + ",".join(map(repr, floats)) + "]"], SECRET)
    expected = json.loads(node["stringify"], parse_float=str, parse_int=str)
    assert [jsjson.number(Decimal(repr(f))) for f in floats] == expected


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_objects, st.booleans())
def test_random_payloads_cross_verify_with_product(payload: Any, arrays_as_objects: bool) -> None:
    raw = jsjson.dumps(payload).encode()
    value = parsed(raw.decode())
    ours = jsjson.sign(value, SECRET, arrays_as_objects=arrays_as_objects)
    assert ours == sign_ipn(value, SECRET, arrays_as_objects=arrays_as_objects)
    assert verify_ipn(raw, ours, SECRET)
