"""NowPayments IPN signatures: JavaScript-compatible JSON serialisation and HMAC-SHA512.

NowPayments signs the IPN body after sorting its keys recursively and serialising it the way
JavaScript's ``JSON.stringify`` does (spec section 4.2). Python's ``json.dumps`` differs on
small and integral floats (``5e-05`` vs ``0.00005``, ``15.0`` vs ``15``), on non-ASCII text and
on key order, so this module reimplements the JavaScript rules exactly.

This module imports no Django; the ``sandbox`` simulator has its own independent signer.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

__all__ = [
    "canonical_ipn_body",
    "js_dumps",
    "js_number",
    "sign_ipn",
    "verified_canonical_body",
    "verify_ipn",
]

_SAFE_INTEGER = 2**53
_MAX_ARRAY_INDEX = 2**32 - 2

# JSON.stringify's QuoteJSONString: these get short escapes, other code units below U+0020 and
# lone surrogates get \uXXXX with lower-case hex; everything else is copied as is.
_SHORT_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}
_NEEDS_ESCAPE = re.compile(r'["\\\x00-\x1f\ud800-\udfff]')
_SURROGATE = re.compile(r"[\ud800-\udfff]")

# ECMAScript's String.prototype.trim: WhiteSpace and LineTerminator code points.
_JS_WHITESPACE = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)
_HEX_SIGNATURE = re.compile(r"[0-9a-f]{128}")


def js_number(value: Decimal | int) -> str:
    """Return ECMAScript ``Number::toString`` of the IEEE double nearest to ``value``.

    The float conversion only emulates how JavaScript would print the number; no arithmetic
    is done on it. NaN and infinities (including values too large for a double) raise
    ``ValueError``.
    """
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise TypeError(f"js_number expects Decimal or int, got {type(value).__name__}")
    if isinstance(value, int) and -_SAFE_INTEGER < value < _SAFE_INTEGER:
        return str(value)
    try:
        number = float(value)
    except OverflowError as exc:
        raise ValueError(f"{value!r} is too large for a JavaScript number") from exc
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError(f"{value!r} has no JSON representation")
    if number == 0:
        return "0"  # includes -0, which JavaScript prints as "0"
    sign = "-" if number < 0 else ""
    # repr() gives the shortest digit string that round-trips, the same digits as JavaScript.
    mantissa, _, exp_text = repr(abs(number)).partition("e")
    int_part, _, frac_part = mantissa.partition(".")
    all_digits = int_part + frac_part
    stripped = all_digits.lstrip("0")
    leading_zeros = len(all_digits) - len(stripped)
    digits = stripped.rstrip("0")
    k = len(digits)
    # value = 0.<digits> * 10**n
    n = len(int_part) + int(exp_text or 0) - leading_zeros
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = f"{digits[:n]}.{digits[n:]}"
    elif -6 < n <= 0:
        text = "0." + "0" * -n + digits
    else:
        exponent = n - 1
        exp_sign = "+" if exponent >= 0 else "-"
        head = digits if k == 1 else f"{digits[0]}.{digits[1:]}"
        text = f"{head}e{exp_sign}{abs(exponent)}"
    return sign + text


def _quote(text: str) -> str:
    if _SURROGATE.search(text):
        # A Python str may hold a surrogate pair as two code points; JavaScript sees the pair
        # as one character. Re-pair them so that only lone surrogates get escaped below.
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    if not _NEEDS_ESCAPE.search(text):
        return f'"{text}"'
    return '"' + _NEEDS_ESCAPE.sub(_escape_match, text) + '"'


def _escape_match(match: re.Match[str]) -> str:
    char = match.group()
    return _SHORT_ESCAPES.get(char) or f"\\u{ord(char):04x}"


def _is_array_index(key: str) -> bool:
    """Whether a JavaScript object would list ``key`` first, as an integer index."""
    if not key.isascii() or not key.isdigit() or (len(key) > 1 and key[0] == "0"):
        return False
    return int(key) <= _MAX_ARRAY_INDEX


def _utf16_order(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")


def _ordered_keys(obj: Mapping[str, Any], sort_keys: bool) -> list[str]:
    """Keys in the order JavaScript enumerates them: array indices ascending, then the rest."""
    indices: list[str] = []
    others: list[str] = []
    for key in obj:
        if not isinstance(key, str):
            raise TypeError(f"object keys must be str, got {type(key).__name__}")
        if key[:1].isdigit() and _is_array_index(key):
            indices.append(key)
        else:
            others.append(key)
    if sort_keys:
        others.sort(key=_utf16_order)
    if indices:
        indices.sort(key=int)
        return indices + others
    return others


def _encode(obj: Any, sort_keys: bool, parts: list[str]) -> None:
    if isinstance(obj, str):
        parts.append(_quote(obj))
    elif obj is None:
        parts.append("null")
    elif obj is True:
        parts.append("true")
    elif obj is False:
        parts.append("false")
    elif isinstance(obj, int | Decimal):
        parts.append(js_number(obj))
    elif isinstance(obj, Mapping):
        parts.append("{")
        first = True
        for key in _ordered_keys(obj, sort_keys):
            if not first:
                parts.append(",")
            first = False
            parts.append(_quote(key))
            parts.append(":")
            _encode(obj[key], sort_keys, parts)
        parts.append("}")
    elif isinstance(obj, list | tuple):
        parts.append("[")
        for index, item in enumerate(obj):
            if index:
                parts.append(",")
            _encode(item, sort_keys, parts)
        parts.append("]")
    else:
        raise TypeError(f"{type(obj).__name__} is not JSON serialisable here (use Decimal)")


def js_dumps(obj: Any, *, sort_keys: bool = False) -> str:
    """Serialise ``obj`` exactly as JavaScript's ``JSON.stringify`` would.

    Accepts Decimal, int, bool, None, str, list/tuple and dict (str keys). Floats are refused:
    money is Decimal. With ``sort_keys``, object keys are sorted recursively in JavaScript's
    default sort order (UTF-16 code units); arrays keep their order. As in JavaScript, keys that
    are array indices ("0", "42") come first in numeric order whatever the insertion order.
    """
    parts: list[str] = []
    _encode(obj, sort_keys, parts)
    return "".join(parts)


def _as_node_recipe_builds(obj: Any, arrays_as_objects: bool) -> Any:
    """The object the Node recipes build before JSON.stringify.

    Both recipes copy keys with ``result[key] = ...``, so a ``__proto__`` key sets the new
    object's prototype instead of an own property and vanishes from the output. The docs'
    ``sortObject`` also turns every array into an index-keyed object.
    """
    if isinstance(obj, Mapping):
        return {
            key: _as_node_recipe_builds(value, arrays_as_objects)
            for key, value in obj.items()
            if key != "__proto__"
        }
    if isinstance(obj, list | tuple):
        items = [_as_node_recipe_builds(value, arrays_as_objects) for value in obj]
        return {str(i): v for i, v in enumerate(items)} if arrays_as_objects else items
    return obj


def canonical_ipn_body(payload: Mapping[str, Any], *, arrays_as_objects: bool = False) -> str:
    """The string NowPayments signs: recursively key-sorted, compact, JavaScript formatting.

    By default arrays stay arrays (official SDK, PHP and Python recipes). With
    ``arrays_as_objects`` arrays become ``{"0": ..., "1": ...}`` as the docs' Node example does.
    """
    return js_dumps(_as_node_recipe_builds(payload, arrays_as_objects), sort_keys=True)


def _js_trim(text: str) -> str:
    return text.strip(_JS_WHITESPACE)


def sign_ipn(payload: Mapping[str, Any], secret: str, *, arrays_as_objects: bool = False) -> str:
    """Lower-case hex HMAC-SHA512 of the canonical body, keyed by the trimmed IPN secret."""
    body = canonical_ipn_body(payload, arrays_as_objects=arrays_as_objects)
    key = _js_trim(secret).encode("utf-8")
    return hmac.new(key, body.encode("utf-8"), hashlib.sha512).hexdigest()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _contains_array(obj: Any) -> bool:
    if isinstance(obj, list):
        return True
    if isinstance(obj, dict):
        return any(_contains_array(value) for value in obj.values())
    return False


def verify_ipn(raw_body: bytes, signature: str | None, secret: str) -> bool:
    """Whether ``signature`` (the ``x-nowpayments-sig`` header) signs ``raw_body``.

    Tries the array-preserving canonical form first, then the docs' arrays-as-objects form.
    Returns False, never raises, on a missing or malformed signature, secret or body.
    """
    if not isinstance(signature, str) or not isinstance(secret, str) or not _js_trim(secret):
        return False
    candidate = signature.strip().lower()
    if not _HEX_SIGNATURE.fullmatch(candidate):
        return False
    try:
        text = raw_body.decode("utf-8")
        payload = json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
        if not isinstance(payload, dict):
            return False
        if hmac.compare_digest(sign_ipn(payload, secret), candidate):
            return True
        if not _contains_array(payload):
            return False
        return hmac.compare_digest(sign_ipn(payload, secret, arrays_as_objects=True), candidate)
    except (AttributeError, ValueError, TypeError, RecursionError, UnicodeError):
        return False


def verified_canonical_body(
    payload: Mapping[str, Any], signature: str | None, secret: str
) -> str | None:
    """The canonical body of an already parsed IPN when ``signature`` signs it, else None.

    ``verify_ipn`` for a caller that has parsed the body already (the webhook: one parse and
    one canonical form per IPN, reused for the dedupe key). The same two forms are tried; the
    array-preserving canonical body is returned either way. Never raises.
    """
    if not isinstance(signature, str) or not isinstance(secret, str) or not _js_trim(secret):
        return None
    candidate = signature.strip().lower()
    if not _HEX_SIGNATURE.fullmatch(candidate):
        return None
    try:
        canonical = canonical_ipn_body(payload)
        key = _js_trim(secret).encode("utf-8")
        digest = hmac.new(key, canonical.encode("utf-8"), hashlib.sha512).hexdigest()
        if hmac.compare_digest(digest, candidate):
            return canonical
        if _contains_array(payload) and hmac.compare_digest(
            sign_ipn(payload, secret, arrays_as_objects=True), candidate
        ):
            return canonical
    except (AttributeError, ValueError, TypeError, RecursionError, UnicodeError):
        return None
    return None
