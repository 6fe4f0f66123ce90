"""The HTTP layer: a threading stdlib server, routing, API-key/JWT checks, faults and counts."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sandbox import api, api_payout_terms, api_payouts, control, control_cases, ticker, tokens
from sandbox.errors import ApiError, ControlError
from sandbox.request_body import BodyError, read_body
from sandbox.routing import Request, Response, Router, json_response, raw_json_response
from sandbox.state import SandboxState

logger = logging.getLogger(__name__)

API_PREFIX = "/v1"
CONTROL_PREFIX = "/_sandbox"


API_ROUTER = Router()
# The payout fee route comes before ``GET /v1/payout/{id}``, which would take "fee" for an id.
API_ROUTER.routes = [
    *api.router.routes,
    *api_payout_terms.router.routes,
    *api_payouts.router.routes,
]
CONTROL_ROUTER = Router()
CONTROL_ROUTER.routes = [*control.router.routes, *control_cases.router.routes]
READ_ONLY = frozenset({"GET", "HEAD"})


class SandboxApp:
    """Turns a Request into a Response; knows nothing about sockets."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.stopping = threading.Event()

    def handle(self, request: Request) -> Response:
        try:
            if request.path.startswith(CONTROL_PREFIX + "/"):
                return self._control(request)
            return self._api(request)
        finally:
            if request.method not in READ_ONLY:
                self.state.mark_changed()

    def _control(self, request: Request) -> Response:
        route, params, path_known = CONTROL_ROUTER.match(request.method, request.path)
        if route is None:
            status = 405 if path_known else 404
            return json_response(status, {"error": "not_found", "message": "no such control call"})
        request.params = params
        try:
            ticker.process_due(self.state)
            return route.handler(self.state, request)
        except ControlError as exc:
            return json_response(exc.status, exc.body())
        except ApiError as exc:
            return json_response(exc.status, {"error": exc.code, "message": exc.message})

    def _api(self, request: Request) -> Response:
        state = self.state
        route, params, _ = API_ROUTER.match(request.method, request.path)
        pattern = route.pattern if route else "(unmatched)"
        with state.lock:
            state.request_counts[f"{request.method} {pattern}"] += 1
        fault = state.take_fault(request.method, request.path)
        if fault is not None and fault["mode"] in ("http_500", "http_429"):
            return _fault_response(fault["mode"])
        if fault is not None and fault["mode"] == "timeout":
            self.stopping.wait(fault["delay"])
        try:
            if route is None:
                raise ApiError(404, "NOT_FOUND", f"Cannot {request.method} {request.path}")
            request.params = params
            ticker.process_due(state)
            if route.auth in ("key", "jwt"):
                _require_key(state, request)
            if route.auth == "jwt":
                tokens.require(state, request.headers.get("authorization"))
            response = route.handler(state, request)
        except ApiError as exc:
            response = json_response(exc.status, exc.body())
        if fault is not None and fault["mode"] == "malformed_json":
            response = _malformed(response)
        return response


def _require_key(state: SandboxState, request: Request) -> None:
    given = request.headers.get("x-api-key")
    if given is None or given.strip() != state.config.api_key:
        raise ApiError(403, "INVALID_API_KEY", "Invalid api key")


def _fault_response(mode: str) -> Response:
    if mode == "http_429":
        body = {
            "status": False,
            "statusCode": 429,
            "code": "TOO_MANY_REQUESTS",
            "message": "Too many requests",
        }
        response = json_response(429, body)
        response.headers["Retry-After"] = "1"
        return response
    body = {"status": False, "statusCode": 500, "code": "INTERNAL_ERROR", "message": "Server error"}
    return json_response(500, body)


def _malformed(response: Response) -> Response:
    """Cut the body in half: a truncated JSON document under a JSON content type."""
    text = response.body.decode("utf-8", errors="replace")
    cut = text[: max(len(text) // 2, 2)] if len(text) > 2 else '{"'
    return raw_json_response(response.status, cut)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "nowpayments-sandbox"
    sys_version = ""
    timeout = 120  # an idle keep-alive connection is dropped after this many seconds
    server: _Server

    def setup(self) -> None:
        super().setup()
        # One write per response and no Nagle delay: keep-alive clients would otherwise
        # wait ~40 ms per request for a delayed ACK.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, add=False)

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET  # noqa: N815

    def _dispatch(self) -> None:
        parts = urlsplit(self.path)
        try:
            body = read_body(
                self.rfile,
                self.headers.get("Transfer-Encoding"),
                self.headers.get("Content-Length"),
            )
        except BodyError as exc:
            # The framing is lost: answer, then close rather than misread the next request.
            error = ApiError(exc.status, "BAD_REQUEST", str(exc))
            self._send(json_response(exc.status, error.body()), close=True)
            return
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        headers = {name.lower(): value for name, value in self.headers.items()}
        request = Request(self.command, parts.path, query, headers, body)
        try:
            response = self.server.app.handle(request)
        except Exception:
            logger.exception("sandbox failed on %s %s", self.command, parts.path)
            response = _fault_response("http_500")
        self._send(response)

    def _send(self, response: Response, *, close: bool = False) -> None:
        self.send_response(response.status)
        if close:
            self.send_header("Connection", "close")
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("x-request-id", uuid.uuid4().hex)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self._headers_buffer.append(b"\r\n")
        self.wfile.write(b"".join(self._headers_buffer) + response.body)
        self._headers_buffer = []

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: SandboxApp) -> None:
        self.app = app
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, connection: socket.socket, *, add: bool) -> None:
        with self._connections_lock:
            if add:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


def make_server(host: str, port: int, app: SandboxApp) -> _Server:
    return _Server((host, port), app)
