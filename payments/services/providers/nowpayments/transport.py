"""HTTP to NowPayments: one session, timeouts, retried reads, a JWT cache, errors mapped to ours."""

from __future__ import annotations

import base64
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import requests

from payments.errors import (
    ConfigurationError,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
)
from payments.services.providers.nowpayments.config import NowPaymentsConfig
from payments.services.providers.nowpayments.parsing import (
    MalformedResponse,
    dumps,
    loads,
    query_value,
)

logger = logging.getLogger(__name__)

# Refresh the JWT this long before it expires; assume this lifetime when it carries no exp.
JWT_REFRESH_MARGIN = 30.0
JWT_FALLBACK_TTL = 240.0
# A Retry-After longer than this is not slept through inside a request: the caller (a Celery
# task) gets ProviderUnavailable(retry_after=...) and can come back later instead.
MAX_INLINE_RETRY_AFTER = 10.0
_MAX_ERROR_TEXT = 200
_TRANSIENT = (requests.Timeout, requests.ConnectionError, requests.exceptions.ChunkedEncodingError)


class Transport:
    """Sends one logical call, with the retry, auth and error rules every endpoint shares.

    Only idempotent reads (GET) are retried on timeouts, connection errors, 5xx and 429. A POST
    is never retried automatically (a repeated create could make a second payment), except once
    after a 401, when NowPayments refused it before doing anything.
    """

    def __init__(
        self,
        config: NowPaymentsConfig,
        *,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.base_url = config.api_url.rstrip("/")
        self.session = session or requests.Session()
        self._clock = clock
        self._sleep = sleep
        self._token_lock = threading.Lock()
        self._jwt: str | None = None
        self._jwt_refresh_at = 0.0

    def close(self) -> None:
        self.session.close()

    # --- the one entry point ---------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        api_key: bool = True,
        jwt: bool = False,
        text_ok: bool = False,
        auth_retry: bool = True,
    ) -> Any:
        """Send the call and return its parsed body (JSON with Decimals, or "OK" when text_ok)."""
        if not self.config.enabled:
            raise ConfigurationError(
                "Payments are disabled (PAYMENTS_ENABLED is False); NowPayments calls are refused."
            )
        query = {k: query_value(v) for k, v in (params or {}).items() if v is not None}
        payload = None if body is None else dumps(body).encode("utf-8")
        retry_reads = method == "GET"
        attempt = 0
        while True:
            try:
                token = self.token() if jwt else None
            except ProviderError as exc:
                exc.no_effect = True  # this call's own request never went out
                raise
            try:
                response = self._send(method, path, query, payload, api_key=api_key, token=token)
            except _TRANSIENT as exc:
                if retry_reads and attempt < self.config.max_retries:
                    self._wait(method, path, type(exc).__name__, attempt, None)
                    attempt += 1
                    continue
                raise self._unavailable(method, path, exc) from None
            except requests.RequestException as exc:
                raise self._unavailable(method, path, exc) from None

            status = response.status_code
            if status == 401 and auth_retry and self._auth_would_help(token, response):
                if token is not None:
                    self.invalidate_token(token)
                jwt, auth_retry = True, False
                continue
            if status == 429 or status >= 500:
                retry_after = _retry_after(response)
                wait_ok = retry_after is None or retry_after <= MAX_INLINE_RETRY_AFTER
                if retry_reads and wait_ok and attempt < self.config.max_retries:
                    self._wait(method, path, f"HTTP {status}", attempt, retry_after)
                    attempt += 1
                    continue
                raise ProviderUnavailable(
                    f"NowPayments answered {method} {path} with HTTP {status}.",
                    retry_after=retry_after,
                    http_status=status,
                )
            if 400 <= status < 500:
                raise _rejected(method, path, response)
            if not 200 <= status < 300:
                raise ProviderUnavailable(
                    f"NowPayments answered {method} {path} with unexpected HTTP {status}.",
                    http_status=status,
                )
            return _decode(response, text_ok=text_ok)

    # --- JWT -------------------------------------------------------------------------------

    def token(self) -> str:
        """A valid JWT, logging in (``POST /auth``) when there is none or it is about to expire."""
        if not self.config.has_jwt_credentials:
            raise ConfigurationError(
                "NOWPAYMENTS_EMAIL and NOWPAYMENTS_PASSWORD must be set: listing payments and "
                "payouts need a NowPayments login."
            )
        with self._token_lock:
            now = self._clock()
            if self._jwt is not None and now < self._jwt_refresh_at:
                return self._jwt
            body = self.call(
                "POST",
                "/auth",
                body={"email": self.config.email, "password": self.config.password},
                api_key=False,
                auth_retry=False,
            )
            token = body.get("token") if isinstance(body, Mapping) else None
            if not isinstance(token, str) or not token:
                raise MalformedResponse("NowPayments' /auth answer carried no token.")
            self._jwt = token
            self._jwt_refresh_at = (
                now + _token_lifetime(token, JWT_FALLBACK_TTL) - JWT_REFRESH_MARGIN
            )
            return token

    def invalidate_token(self, token: str) -> None:
        with self._token_lock:
            if self._jwt == token:
                self._jwt = None

    # --- internals -------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        payload: bytes | None,
        *,
        api_key: bool,
        token: str | None,
    ) -> requests.Response:
        headers = {"Accept": "application/json"}
        if api_key:
            headers["x-api-key"] = self.config.api_key
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if payload is not None:
            headers["Content-Type"] = "application/json"
        started = time.perf_counter()
        status: int | str = "error"
        try:
            response = self.session.request(
                method,
                self.base_url + path,
                params=query or None,
                data=payload,
                headers=headers,
                timeout=(self.config.connect_timeout, self.config.timeout),
                allow_redirects=False,
            )
            status = response.status_code
            return response
        finally:
            logger.debug(
                "nowpayments %s %s -> %s in %.0f ms",
                method,
                path,
                status,
                (time.perf_counter() - started) * 1000,
            )

    def _auth_would_help(self, token: str | None, response: requests.Response) -> bool:
        """A 401 on a call that sent a JWT (expired?) or that NowPayments says needs one."""
        if not self.config.has_jwt_credentials:
            return False
        return token is not None or _error_code(response) == "AUTH_REQUIRED"

    def _wait(
        self, method: str, path: str, reason: str, attempt: int, retry_after: float | None
    ) -> None:
        if retry_after is not None:
            delay = retry_after
        else:
            base = self.config.backoff * (2**attempt)
            delay = base / 2 + random.uniform(0, base / 2)  # noqa: S311 - jitter, not crypto
        logger.warning(
            "nowpayments %s %s failed (%s); retry %d/%d in %.2f s",
            method,
            path,
            reason,
            attempt + 1,
            self.config.max_retries,
            delay,
        )
        self._sleep(delay)

    def _unavailable(self, method: str, path: str, exc: Exception) -> ProviderUnavailable:
        kind = "timed out" if isinstance(exc, requests.Timeout) else "failed"
        note = "" if method == "GET" else " (it may or may not have been applied)"
        return ProviderUnavailable(
            f"NowPayments {method} {path} {kind}: {type(exc).__name__}{note}.",
            error=type(exc).__name__,
        )


def _decode(response: requests.Response, *, text_ok: bool) -> Any:
    if text_ok:
        text = response.text.strip()
        if text.strip('"').upper() == "OK":
            return "OK"
    if not response.content.strip():
        raise MalformedResponse("NowPayments sent an empty body.", http_status=response.status_code)
    return loads(response.content)


def _error_body(response: requests.Response) -> Mapping[str, Any]:
    try:
        body = json.loads(response.content or b"null")
    except ValueError:
        return {}
    return body if isinstance(body, Mapping) else {}


def _error_code(response: requests.Response) -> str:
    code = _error_body(response).get("code")
    return str(code) if code else ""


def _rejected(method: str, path: str, response: requests.Response) -> ProviderRejected:
    body = _error_body(response)
    message = body.get("message") or body.get("error") or response.text.strip()
    if not isinstance(message, str):
        message = json.dumps(message, ensure_ascii=False)
    rejected = ProviderRejected(
        message[:_MAX_ERROR_TEXT] or f"HTTP {response.status_code}",
        provider_code=str(body.get("code") or ""),
        http_status=response.status_code,
        method=method,
        path=path,
    )
    rejected.no_effect = response.status_code == 401  # refused before anything was done
    return rejected


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _token_lifetime(token: str, fallback: float) -> float:
    """Seconds the JWT lives, from its own ``iat``/``exp`` (no signature check).

    Using ``exp - iat`` rather than ``exp - now`` makes the refresh immune to clock skew
    between NowPayments and this host.
    """
    try:
        part = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
        exp = claims["exp"]
    except (IndexError, KeyError, TypeError, ValueError):
        return fallback
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        return fallback
    iat = claims.get("iat")
    if isinstance(iat, int | float) and not isinstance(iat, bool) and exp > iat:
        return float(exp - iat)
    remaining = float(exp) - time.time()
    return remaining if remaining > 0 else fallback
