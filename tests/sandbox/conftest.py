"""Fixtures for the sandbox tests: a fresh simulator per test, an API client, an IPN receiver,
and the Node reference that the sandbox's JSON writer and signer are checked against."""

from __future__ import annotations

import decimal
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from sandbox import SandboxServer

API_KEY = "test-api-key"
IPN_SECRET = "test-ipn-secret"
EMAIL = "merchant@sandbox.local"
PASSWORD = "sandbox-password"
TRON_ADDRESS = "TEmGwPeRTPiLFLVfBxXkSP91yc5GMNQhfS"
NODE_REFERENCE_JS = Path(__file__).resolve().parents[1] / "vectors" / "ipn_reference.js"

NodeReference = Callable[[list[str], str], list[dict[str, Any]]]


class Api:
    """A thin requests wrapper speaking to the sandbox's /v1 like a merchant would."""

    def __init__(self, base_url: str, api_key: str = API_KEY) -> None:
        self.base_url = base_url
        self.api_key = api_key
        self.session = requests.Session()
        self.session.trust_env = False
        self._token: str | None = None

    def request(
        self, method: str, path: str, *, jwt: bool = False, key: bool = True, **kwargs: Any
    ) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}))
        if key:
            headers.setdefault("x-api-key", self.api_key)
        if jwt:
            headers.setdefault("Authorization", f"Bearer {self.token()}")
        kwargs.setdefault("timeout", 10)
        return self.session.request(method, self.base_url + path, headers=headers, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, json=body, **kwargs)

    def token(self, *, fresh: bool = False) -> str:
        if self._token is None or fresh:
            answer = self.session.post(
                self.base_url + "/v1/auth", json={"email": EMAIL, "password": PASSWORD}, timeout=10
            )
            answer.raise_for_status()
            self._token = answer.json()["token"]
        return self._token

    def create_payment(self, **fields: Any) -> dict[str, Any]:
        body = {"price_amount": 100, "price_currency": "usd", "pay_currency": "btc", **fields}
        answer = self.post("/v1/payment", body)
        assert answer.status_code == 201, answer.text
        return answer.json(parse_float=Decimal)

    def status(self, payment_id: int | str) -> dict[str, Any]:
        answer = self.get(f"/v1/payment/{payment_id}")
        assert answer.status_code == 200, answer.text
        return answer.json(parse_float=Decimal)


def json_of(response: requests.Response) -> Any:
    return response.json(parse_float=Decimal)


def assert_error(response: requests.Response, status: int, code: str) -> dict[str, Any]:
    """The NowPayments error envelope, with HTTP status == statusCode."""
    assert response.status_code == status, response.text
    body = json_of(response)
    assert body["status"] is False
    assert body["statusCode"] == status
    assert body["code"] == code
    assert isinstance(body["message"], str)
    assert body["message"]
    return body


@pytest.fixture(autouse=True)
def _trap_float_operations() -> Iterator[None]:
    """Mixing float and Decimal raises, here and in every thread the sandbox starts meanwhile."""
    default = decimal.DefaultContext
    saved = default.traps[decimal.FloatOperation]
    default.traps[decimal.FloatOperation] = True
    with decimal.localcontext() as context:
        context.traps[decimal.FloatOperation] = True
        yield
    default.traps[decimal.FloatOperation] = saved


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    with SandboxServer(
        port=0,
        api_key=API_KEY,
        ipn_secret=IPN_SECRET,
        ipn_retry_interval=0.2,
        ipn_retries=3,
    ) as server:
        yield server


@pytest.fixture
def api(sandbox: SandboxServer) -> Iterator[Api]:
    client = Api(sandbox.url)
    yield client
    client.session.close()


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A local IPN endpoint. ``plan`` scripts answers: (status, delay seconds) per request."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    plan: list[tuple[int, float]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_answer(self) -> tuple[int, float]:
        with self.lock:
            return self.plan.pop(0) if self.plan else (200, 0.0)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.02)
        raise AssertionError(f"expected {count} IPNs, got {len(self.received)}")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, delay = state.next_answer()
            with state.lock:
                state.received.append(
                    Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
            if delay:
                time.sleep(delay)
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}/ipn"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def node_reference() -> NodeReference:
    """``run(bodies, secret)``: tests/vectors/ipn_reference.js over raw JSON texts, in one Node
    process. Without ``node`` the test is skipped, except in CI (``CI=true``) where it fails."""
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI") == "true":
            pytest.fail(
                "CI=true but `node` is not on PATH: the Node reference tests must not skip in "
                "CI (.ci/run installs nodejs)",
                pytrace=False,
            )
        pytest.skip("node is not installed (with CI=true this is a failure)")

    def run(bodies: list[str], secret: str) -> list[dict[str, Any]]:
        request = json.dumps({"secret": secret, "bodies": bodies})
        output = subprocess.check_output(
            [node, str(NODE_REFERENCE_JS)], input=request, text=True, encoding="utf-8", timeout=60
        )
        vectors: list[dict[str, Any]] = json.loads(output)
        return vectors

    return run
