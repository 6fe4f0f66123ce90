"""Lenient readers for NowPayments' loosely typed JSON (numbers as strings, ids as numbers)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from payments.errors import ProviderUnavailable

# Strings the API uses to mean "no value" (``burning_percent`` is literally "null").
_NULLISH = {"", "null", "none", "undefined"}


class MalformedResponse(ProviderUnavailable):
    """NowPayments answered with a body this client cannot read."""


def loads(text: str | bytes) -> Any:
    """Parse a JSON body with every non-integer number as a Decimal; ints stay int."""
    try:
        return json.loads(text, parse_float=Decimal, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise MalformedResponse("NowPayments sent a body that is not valid JSON.") from exc


def _refuse_constant(token: str) -> Any:
    raise ValueError(f"non-finite number {token} in JSON")


def dumps(value: Any) -> str:
    """Compact JSON in which Decimals are written as exact plain numbers (never via float)."""
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"cannot send a non-finite amount: {value}")
        return format(value, "f")
    if isinstance(value, float):
        raise TypeError("floats are not allowed in NowPayments requests; use Decimal")
    if isinstance(value, Mapping):
        items = (f"{json.dumps(str(k), ensure_ascii=False)}:{dumps(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def first(data: Mapping[str, Any], *keys: str) -> Any:
    """The value of the first key present (for ``created_at``/``createdAt`` style pairs)."""
    for key in keys:
        if key in data:
            return data[key]
    return None


def is_null(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in _NULLISH)


def decimal_or_none(value: Any, *, name: str = "amount") -> Decimal | None:
    """A Decimal from a JSON number or numeric string; None for null and "null"."""
    if is_null(value):
        return None
    if isinstance(value, bool):
        raise MalformedResponse(f"NowPayments sent a boolean for {name}.")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float):  # only reachable if a caller bypassed loads()
        result = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            raise MalformedResponse(f"NowPayments sent a non-numeric {name}.") from None
    else:
        raise MalformedResponse(f"NowPayments sent a {type(value).__name__} for {name}.")
    if not result.is_finite():
        raise MalformedResponse(f"NowPayments sent a non-finite {name}.")
    return result


def decimal_required(value: Any, *, name: str) -> Decimal:
    result = decimal_or_none(value, name=name)
    if result is None:
        raise MalformedResponse(f"NowPayments left out {name}.")
    return result


def id_or_none(value: Any) -> str | None:
    """An id as a string, whether the API sent ``"5745459419"`` or ``5745459419``."""
    if is_null(value):
        return None
    if isinstance(value, bool):
        raise MalformedResponse("NowPayments sent a boolean where an id belongs.")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        if value.is_finite() and value == value.to_integral_value():
            return str(int(value))
        raise MalformedResponse("NowPayments sent a fractional id.")
    if isinstance(value, str):
        return value.strip()
    raise MalformedResponse(f"NowPayments sent a {type(value).__name__} where an id belongs.")


def id_required(value: Any, *, name: str) -> str:
    result = id_or_none(value)
    if not result:
        raise MalformedResponse(f"NowPayments left out {name}.")
    return result


def int_or_none(value: Any) -> int | None:
    """An int from a number or numeric string (``network_precision`` comes as both)."""
    if is_null(value) or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    if not number.is_finite() or number != number.to_integral_value():
        return None
    return int(number)


def str_or_none(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def lower_or_none(value: Any) -> str | None:
    text = str_or_none(value)
    return text.strip().lower() if text is not None else None


def bool_or_none(value: Any) -> bool | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in {"true", "1", "yes"}:
            return True
        if text in {"false", "0", "no"}:
            return False
        return None
    if isinstance(value, int):
        return value != 0
    return None


def datetime_or_none(value: Any) -> datetime | None:
    """An aware datetime from ISO-8601 (``2020-12-22T15:00:22.742Z``); naive means UTC.

    A value that is not a timestamp gives None rather than an error: the ``raw`` dict keeps it,
    and a cosmetic field must not break a status poll.
    """
    if is_null(value):
        return None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        seconds = Decimal(value)
        if seconds > 10**11:  # epoch milliseconds
            seconds /= 1000
        try:
            return datetime.fromtimestamp(int(seconds), tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return None


def query_value(value: Any) -> str:
    """How a Python value goes into a query string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return dumps(value)
    if isinstance(value, float):
        raise TypeError("floats are not allowed in NowPayments requests; use Decimal")
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous; pass an aware datetime")
        return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def as_mapping(value: Any, *, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise MalformedResponse(f"NowPayments sent {type(value).__name__} where {what} belongs.")
    return value


def as_list(value: Any, *, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise MalformedResponse(f"NowPayments sent {type(value).__name__} where {what} belongs.")
    return value
