"""The sandbox's own JavaScript-style JSON writer and NowPayments IPN signer.

The simulator plays a Node.js service, so its bodies are written the way ``JSON.stringify``
writes them, and its IPN signatures are made the way NowPayments' Node recipes make them
(spec 4.2). The rules come from ECMAScript itself: ``Number::toString`` (6.1.6.1.20),
``QuoteJSONString`` (25.5.2.3), ``OrdinaryOwnPropertyKeys`` (10.1.11.1, array indices first)
and ``Array.prototype.sort``'s default comparison (UTF-16 code units).

The sandbox is the oracle the product is tested against, so this module is written
independently of the product's signer and must never import it.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import unicodedata
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

__all__ = ["canonical", "dumps", "number", "sign"]

# JSON.stringify's string escapes: seven characters have a two-character form, the other
# C0 controls become \u00XX with lower-case hex digits. Surrogates are dealt with separately.
_ESCAPES = str.maketrans({chr(code): f"\\u{code:04x}" for code in range(0x20)})
_ESCAPES.update({ord(c): "\\" + e for c, e in zip('"\\\b\t\n\f\r', '"\\btnfr', strict=True)})
_MUST_ESCAPE = re.compile('[\\x00-\\x1f"\\\\]')
# A high surrogate followed by a low one is one JavaScript character (a Python str may hold
# the two halves separately); any other surrogate code point is "lone".
_SURROGATES = re.compile("[\\ud800-\\udbff][\\udc00-\\udfff]|[\\ud800-\\udfff]")

# String.prototype.trim removes WhiteSpace (TAB, VT, FF, ZWNBSP and every Zs space) and
# LineTerminator (LF, CR, LS, PS) code points from both ends.
_TRIMMED = (
    "".join(chr(code) for code in range(0x3001) if unicodedata.category(chr(code)) == "Zs")
    + "\t\v\f\n\r\u2028\u2029\ufeff"
)

_EXACT_INTEGERS = 2**53  # below this every int is a double and prints as its digits
_LAST_ARRAY_INDEX = 2**32 - 2
_LOST_KEY = "__proto__"  # ``result[key] = v`` sets the prototype: the key never shows


def number(value: int | Decimal) -> str:
    """ECMAScript ``Number::toString`` of the double JavaScript would hold for ``value``.

    ``float`` is only the model of that double, never used for arithmetic. Floats themselves
    are refused (the sandbox keeps money in Decimal); NaN, infinities and anything beyond the
    double range raise ValueError, where JavaScript would quietly write ``null``.
    """
    if type(value) is int and -_EXACT_INTEGERS < value < _EXACT_INTEGERS:
        return str(value)
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise TypeError(f"not a JSON number here: {type(value).__name__} (use Decimal)")
    try:
        double = float(value)
    except OverflowError as exc:
        raise ValueError(f"{value} does not fit a JavaScript number") from exc
    if not math.isfinite(double):
        raise ValueError(f"{value} is not finite: JSON has no such number")
    if not double:
        return "0"  # negative zero too
    # repr() is the shortest round-tripping decimal, nearest the double: the digits s of the
    # spec. As a Decimal, it gives them and their power of ten without any float arithmetic.
    negative, coefficient, power = Decimal(repr(double)).as_tuple()
    digits = "".join(map(str, coefficient))
    significant = digits.rstrip("0")
    # The spec's n: the decimal point sits n digits after the first significant one.
    point = len(digits) + int(power)
    sign = "-" if negative else ""
    if -6 < point <= 0:
        return f"{sign}0.{'0' * -point}{significant}"
    if point <= -6 or point > 21:
        head, tail = significant[0], significant[1:]
        mantissa = f"{head}.{tail}" if tail else head
        return f"{sign}{mantissa}e{point - 1:+d}"
    whole = significant.ljust(point, "0")
    fraction = significant[point:]
    return f"{sign}{whole[:point]}.{fraction}" if fraction else f"{sign}{whole}"


def _surrogate(match: re.Match[str]) -> str:
    found = match.group()
    if len(found) == 1:
        return f"\\u{ord(found):04x}"
    high, low = ord(found[0]) - 0xD800, ord(found[1]) - 0xDC00
    return chr(0x10000 + (high << 10) + low)


def _string(text: str) -> str:
    if _MUST_ESCAPE.search(text):
        text = text.translate(_ESCAPES)
    if not text.isascii():
        text = _SURROGATES.sub(_surrogate, text)
    return f'"{text}"'


def _is_index(key: str) -> bool:
    """Whether ``key`` is an array index (canonical decimal of 0 .. 2**32 - 2)."""
    return (
        key.isdigit()
        and key.isascii()
        and (key == "0" or not key.startswith("0"))
        and int(key) <= _LAST_ARRAY_INDEX
    )


def _code_units(key: str) -> list[int]:
    """``key`` as JavaScript sees it: UTF-16 code units, the order its default sort uses."""
    units: list[int] = []
    for char in key:
        code = ord(char)
        if code > 0xFFFF:
            code -= 0x10000
            units += (0xD800 | code >> 10, 0xDC00 | code & 0x3FF)
        else:
            units.append(code)
    return units


def _index_rank(key: str) -> tuple[bool, int]:
    """Sort key that moves array indices to the front, in numeric order, and leaves the rest."""
    return (False, int(key)) if key[:1].isdigit() and _is_index(key) else (True, 0)


def _property_order(obj: Mapping[str, Any], *, sort: bool) -> list[str]:
    """The order JavaScript lists an object's keys once a recipe has copied them in ``sort``ed
    or in insertion order: array indices always come first, ascending (both sorts are stable,
    as the object keeps the order in which the other keys arrived)."""
    keys = list(obj)
    if not all(isinstance(key, str) for key in keys):
        raise TypeError("object keys are strings in JSON (found a non-str key)")
    if sort:
        wide = any(char >= "\ud800" for key in keys for char in key)
        keys.sort(key=_code_units if wide else None)  # code points = code units below U+D800
    if any(key[:1].isdigit() for key in keys):
        keys.sort(key=_index_rank)
    return keys


class _Writer:
    """One serialisation: plain ``JSON.stringify``, or the string a signing recipe hashes."""

    def __init__(self, *, sort: bool, recipe: bool, arrays_as_objects: bool) -> None:
        self.sort = sort
        self.recipe = recipe  # the Node recipes copy keys into new objects: __proto__ is lost
        self.arrays_as_objects = arrays_as_objects

    def write(self, value: Any) -> str:
        if isinstance(value, str):
            return _string(value)
        if value is None:
            return "null"
        if value is True or value is False:
            return "true" if value else "false"
        if isinstance(value, int | Decimal):
            return number(value)
        if isinstance(value, Mapping):
            return self._object(value)
        if isinstance(value, list | tuple):
            if self.arrays_as_objects:  # the docs' sortObject copies an array like an object
                return "{" + ",".join(f'"{i}":{self.write(v)}' for i, v in enumerate(value)) + "}"
            return "[" + ",".join(map(self.write, value)) + "]"
        raise TypeError(f"cannot write {type(value).__name__} as JSON (money is Decimal)")

    def _object(self, obj: Mapping[str, Any]) -> str:
        keys = _property_order(obj, sort=self.sort)
        members = (
            f"{_string(key)}:{self.write(obj[key])}"
            for key in keys
            if not (self.recipe and key == _LOST_KEY)
        )
        return "{" + ",".join(members) + "}"


_PLAIN = _Writer(sort=False, recipe=False, arrays_as_objects=False)
_SDK = _Writer(sort=True, recipe=True, arrays_as_objects=False)
_DOCS = _Writer(sort=True, recipe=True, arrays_as_objects=True)


def dumps(value: Any, *, sort_keys: bool = False) -> str:
    """``JSON.stringify(value)``, compact, for Decimal/int/bool/None/str/list/tuple/dict.

    With ``sort_keys``: ``JSON.stringify(sortObjectDeep(value))``, the official SDK's
    recursive key sort, which keeps arrays in order and, like any key-copying Node code,
    loses ``__proto__`` keys. Keys that are array indices come first in numeric order either
    way, as they do in every JavaScript object.
    """
    return (_SDK if sort_keys else _PLAIN).write(value)


def canonical(payload: Any, *, arrays_as_objects: bool = False) -> str:
    """The text NowPayments signs: ``dumps(payload, sort_keys=True)``, or with
    ``arrays_as_objects`` the docs' Node ``sortObject`` form where ``[a, b]`` is written
    ``{"0":a,"1":b}``."""
    return (_DOCS if arrays_as_objects else _SDK).write(payload)


def _as_node_encodes(text: str) -> bytes:
    """UTF-8 as Node encodes a JavaScript string: a lone surrogate becomes U+FFFD."""
    if text.isascii():
        return text.encode("ascii")
    paired = _SURROGATES.sub(lambda m: _surrogate(m) if len(m.group()) == 2 else "\ufffd", text)
    return paired.encode("utf-8")


def sign(payload: Any, secret: str, *, arrays_as_objects: bool = False) -> str:
    """The ``x-nowpayments-sig`` value: lower-case hex HMAC-SHA512 of ``canonical(payload)``
    keyed with ``secret.trim()``."""
    key = _as_node_encodes(secret.strip(_TRIMMED))
    message = _as_node_encodes(canonical(payload, arrays_as_objects=arrays_as_objects))
    return hmac.new(key, message, hashlib.sha512).hexdigest()
