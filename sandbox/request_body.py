"""Reading request bodies as Node/Express would: Content-Length or chunked transfer coding
(RFC 9112 section 7.1), and ``application/x-www-form-urlencoded`` parsed like ``qs``."""

from __future__ import annotations

import re
from typing import Any, Protocol
from urllib.parse import parse_qsl

MAX_BODY = 16 * 1024 * 1024  # bigger bodies are refused (413)
MAX_LINE = 8192
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_MAX_INDEX = 20  # like qs: a[21]=x becomes an object key, not a sparse array


class Reader(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...
    def readline(self, size: int = -1, /) -> bytes: ...


class BodyError(ValueError):
    """The body could not be framed; the connection must be closed after answering."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def read_body(rfile: Reader, transfer_encoding: str | None, content_length: str | None) -> bytes:
    """The request body. Chunked wins over Content-Length, as RFC 9112 6.3 says."""
    codings = [c.strip().lower() for c in (transfer_encoding or "").split(",") if c.strip()]
    if codings:
        if codings[-1] != "chunked":
            raise BodyError(400, "unsupported transfer coding")
        return read_chunked(rfile)
    if content_length is None or not content_length.strip():
        return b""
    text = content_length.strip()
    if not text.isascii() or not text.isdigit():
        raise BodyError(400, "invalid Content-Length")
    length = int(text)
    if length > MAX_BODY:
        raise BodyError(413, "request body too large")
    body = rfile.read(length) if length else b""
    if len(body) != length:
        raise BodyError(400, "truncated body")
    return body


def read_chunked(rfile: Reader) -> bytes:
    """Read chunks up to the last (zero-size) one and its trailer section, nothing more, so
    the next request on a keep-alive connection starts where it should."""
    parts: list[bytes] = []
    total = 0
    while True:
        line = rfile.readline(MAX_LINE)
        if not line.endswith(b"\n"):
            raise BodyError(400, "truncated chunk size line")
        size_text = line.split(b";", 1)[0].strip()  # chunk extensions are ignored
        if not _HEX.fullmatch(size_text):
            raise BodyError(400, "invalid chunk size")
        size = int(size_text, 16)
        if size == 0:
            break
        total += size
        if total > MAX_BODY:
            raise BodyError(413, "request body too large")
        data = rfile.read(size)
        if len(data) != size:
            raise BodyError(400, "truncated chunk")
        parts.append(data)
        if rfile.readline(MAX_LINE) not in (b"\r\n", b"\n"):
            raise BodyError(400, "chunk data not followed by CRLF")
    while True:  # trailer fields, up to the empty line
        line = rfile.readline(MAX_LINE)
        if line in (b"\r\n", b"\n"):
            break
        if not line.endswith(b"\n"):
            raise BodyError(400, "truncated trailer section")
    return b"".join(parts)


def parse_form(body: bytes) -> dict[str, Any]:
    """``a=1&w[0][x]=2&w[0][y]=3&l[]=4`` -> ``{"a": "1", "w": [{"x": "2", "y": "3"}],
    "l": ["4"]}``: the bracket syntax of ``qs`` (Express's extended urlencoded parser).
    Values stay strings. ValueError if the body is not UTF-8."""
    root: dict[str, Any] = {}
    for raw_key, value in parse_qsl(
        body.decode("utf-8"), keep_blank_values=True, strict_parsing=False
    ):
        found = _KEY.match(raw_key)
        if found is None:
            path = [raw_key]
        else:
            path = [found.group(1), *re.findall(r"\[([^\[\]]*)\]", found.group(2))]
        _assign(root, path, value)
    return _listify(root)


def _assign(node: dict[str, Any], path: list[str], value: str) -> None:
    for depth, key in enumerate(path):
        last = depth == len(path) - 1
        if key == "":
            key = str(sum(1 for k in node if k.isdigit()))
        if last:
            if key in node and not isinstance(node[key], dict):
                previous = node[key]
                node[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
            else:
                node[key] = value
            return
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {k: _listify(v) for k, v in node.items()}
    if converted and all(k.isdigit() and int(k) <= _MAX_INDEX for k in converted):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted
