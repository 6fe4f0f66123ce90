"""Request and response values and a small regex router shared by the API and control routes."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sandbox import jsjson

if TYPE_CHECKING:
    from sandbox.state import SandboxState

JSON_TYPE = "application/json; charset=utf-8"
TEXT_TYPE = "text/html; charset=utf-8"  # what Express's res.send("OK") answers with


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes = b""
    params: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        """The body parsed with Decimal floats; an empty body is ``{}``. ValueError if invalid."""
        if not self.body.strip():
            return {}
        return json.loads(self.body.decode("utf-8"), parse_float=Decimal)


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)


def json_response(status: int, obj: Any) -> Response:
    return Response(status, jsjson.dumps(obj).encode("utf-8"))


def raw_json_response(status: int, text: str) -> Response:
    return Response(status, text.encode("utf-8"))


def text_response(status: int, text: str) -> Response:
    return Response(status, text.encode("utf-8"), content_type=TEXT_TYPE)


Handler = Callable[["SandboxState", Request], Response]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: str  # e.g. "/v1/payment/{id}", also the key of the request counts
    regex: re.Pattern[str]
    handler: Handler
    auth: str  # "none", "key" or "jwt" (key and Bearer token)


class Router:
    def __init__(self) -> None:
        self.routes: list[Route] = []

    def route(
        self, method: str, pattern: str, *, auth: str = "none"
    ) -> Callable[[Handler], Handler]:
        escaped = re.escape(_normalise(pattern))
        regex = re.compile("^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", escaped) + "$")

        def register(handler: Handler) -> Handler:
            self.routes.append(Route(method, pattern, regex, handler, auth))
            return handler

        return register

    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
        """(route, path params, whether the path exists under another method)."""
        path_known = False
        path = _normalise(path)
        for route in self.routes:
            found = route.regex.match(path)
            if found:
                if route.method == method:
                    return route, found.groupdict(), True
                path_known = True
        return None, {}, path_known


def _normalise(path: str) -> str:
    """Express routes ignore one trailing slash (``/v1/payment/`` is ``/v1/payment``)."""
    return path[:-1] if len(path) > 1 and path.endswith("/") else path
