"""The API's JSON parser: any body it cannot take is a 4xx with a code, never a 500.

Refused with ``parse_error`` (400): bytes that are not UTF-8 (or the declared charset), JSON
that is not well-formed, NaN and Infinity, nesting deeper than Python can follow, numbers too
long to convert, and strings with lone surrogates (PostgreSQL cannot store them). A body over
MAX_BODY_BYTES is ``request_too_large`` (413). Numbers with a fraction become Decimal.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from rest_framework import exceptions, status
from rest_framework.parsers import BaseParser

MAX_BODY_BYTES = 256 * 1024
# Far more than any request here needs, and far less than the interpreter's recursion limit.
MAX_DEPTH = 32
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


class RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = f"The request body is larger than {MAX_BODY_BYTES} bytes."
    default_code = "request_too_large"


class JSONParser(BaseParser):
    media_type = "application/json"

    def parse(
        self,
        stream: Any,
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        raw = stream.read(MAX_BODY_BYTES + 1) if stream is not None else b""
        if len(raw) > MAX_BODY_BYTES:
            raise RequestTooLarge()
        text = _decode(raw, (parser_context or {}).get("encoding") or "utf-8")
        if _too_deep(text):
            raise _parse_error(f"The JSON body is nested more than {MAX_DEPTH} levels deep.")
        try:
            data = json.loads(text, parse_float=Decimal, parse_constant=_refuse_constant)
        except (ValueError, RecursionError) as exc:
            raise _parse_error(f"The body is not valid JSON: {exc}") from None
        try:
            json.dumps(data, ensure_ascii=False, default=str).encode("utf-8")
        except UnicodeEncodeError:
            raise _parse_error("The JSON body has a string that is not valid Unicode.") from None
        return data


def _decode(raw: bytes, encoding: str) -> str:
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise _parse_error(f"The body's charset {encoding[:40]!r} is not one we read.") from None
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError:
        raise _parse_error(f"The body is not valid {encoding[:40]} text.") from None


def _too_deep(text: str) -> bool:
    """Whether brackets outside strings nest deeper than MAX_DEPTH (checked before parsing,
    so a 100,000-deep body costs one scan and no recursion)."""
    depth = 0
    for match in _BRACKET.finditer(_STRING.sub('""', text)):
        if match[0] in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return True
        else:
            depth -= 1
    return False


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _parse_error(message: str) -> exceptions.ParseError:
    return exceptions.ParseError(detail=message, code="parse_error")
