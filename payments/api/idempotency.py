"""Idempotency-Key on the API's POSTs: a replay gets the first response and has no second effect.

``IdempotentMixin`` goes first in the bases of every API view. A POST (PUT, PATCH, DELETE)
that carries an ``Idempotency-Key`` header is, after DRF's authentication, permission and
throttle checks, claimed under that key for the signed-in user (payments.services.idempotency):

- a key first seen runs the request and keeps its answer when it is a 2xx, 3xx or 4xx other
  than 429 (the same request gets the same answer);
- the same key with the same method, path and body replays the kept status and body, with
  ``Idempotent-Replayed: true``, and runs nothing;
- the same key with another request is a 409 ``idempotency_key_reused``; while the first
  request runs, a 409 ``idempotency_in_progress`` with ``Retry-After``.

A request that ends in a 5xx, a 429 or an exception is given back (a retry runs again) when it
wrote nothing to the database, which is how every refusal of ours ends (a provider outage
stores nothing). One that failed after a committed write keeps the failure
(``idempotent_request_failed``): running it again could do its effect twice. A deposit that
NowPayments created but whose answer never came back (a timeout) wrote nothing here, so the
retry creates a new one; the first stays unknown to everyone and expires at the provider.

Throttles run before the key is looked at, so a replay counts against its create's rate, and
a 429 keeps nothing. A request whose process was killed mid-way leaves its key in progress
(409) until the key expires (PAYMENTS_IDEMPOTENCY_TTL_HOURS): whether it had its effect is
unknown, so the key is never run again blindly.

The body is compared as parsed: ``request.data`` serialised with sorted keys (with the query
string), so the same JSON sent with other spacing or key order is the same request.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any

from django.db import connections, transaction
from django.http import HttpRequest, HttpResponseBase, QueryDict
from rest_framework.exceptions import ParseError
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from payments.errors import IdempotencyInProgress, IdempotencyKeyInvalid
from payments.services.idempotency import (
    idempotency_key_claim,
    idempotency_key_complete,
    idempotency_key_fail,
    idempotency_key_release,
    idempotency_request_hash,
)

if TYPE_CHECKING:
    from rest_framework.views import APIView

    _Base = APIView
else:
    _Base = object

logger = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Printable ASCII without the space (servers strip a header's outer spaces), as the schema says.
_VALID_KEY = re.compile(r"[!-~]{1,255}")
# Answers that say nothing about the request itself: never kept.
_NOT_KEPT = frozenset({429})
# First words of SQL that change no data; anything else counts as a write.
_READS = frozenset(
    {"SELECT", "SHOW", "SET", "SAVEPOINT", "RELEASE", "ROLLBACK", "BEGIN", "COMMIT", "EXPLAIN"}
)


class _Replay(Exception):
    """Not an error: carries the kept answer out of initial() to handle_exception()."""

    def __init__(self, response: Response) -> None:
        super().__init__("idempotent replay")
        self.response = response


class _WriteWatch:
    """Notes, while armed, whether the database committed a write (an execute wrapper)."""

    def __init__(self) -> None:
        self.armed = False
        self.committed = False

    @contextmanager
    def installed(self) -> Iterator[None]:
        with ExitStack() as stack:
            for alias in connections:
                stack.enter_context(connections[alias].execute_wrapper(self))
            yield

    def __call__(self, execute: Any, sql: Any, params: Any, many: bool, context: Any) -> Any:
        result = execute(sql, params, many, context)
        if self.armed and _is_write(sql):
            connection = context["connection"]
            if connection.in_atomic_block:
                transaction.on_commit(self._mark, using=connection.alias)
            else:
                self.committed = True
        return result

    def _mark(self) -> None:
        self.committed = True


def _is_write(sql: Any) -> bool:
    if not isinstance(sql, str):
        return True
    words = sql.lstrip(" \t\r\n(").split(None, 1)
    return not words or words[0].upper() not in _READS


def _canonical_body(request: Request) -> bytes:
    """The parsed body and query string as key-sorted JSON; a body that cannot be is a 400."""
    data = request.data  # a body that does not parse raises ParseError (400) here
    if isinstance(data, QueryDict):
        data = {name: data.getlist(name) for name in data}
    query = {name: request.query_params.getlist(name) for name in request.query_params}
    try:
        text = json.dumps(
            {"body": data, "query": query},
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            default=str,
        )
    except (TypeError, ValueError, RecursionError):
        raise ParseError("The request body cannot be compared for its Idempotency-Key.") from None
    return text.encode("utf-8", "surrogatepass")


def _kept_body(response: Response) -> Any:
    """The response body exactly as the JSON renderer writes it, as JSON data."""
    return json.loads(JSONRenderer().render(response.data))


class IdempotentMixin(_Base):
    """Idempotency-Key handling for an API view; the first of its bases (see module doc)."""

    _idempotency_watch: _WriteWatch | None = None
    _idempotency_record: int | None = None

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if request.method not in METHODS or HEADER not in request.headers:
            return super().dispatch(request, *args, **kwargs)
        watch = self._idempotency_watch = _WriteWatch()
        with watch.installed():
            try:
                return super().dispatch(request, *args, **kwargs)
            except BaseException:
                self._idempotency_settle(None)
                raise

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        watch = self._idempotency_watch
        user = request.user
        if watch is None or user is None or not user.is_authenticated or user.pk is None:
            return  # no key, or nobody to scope it to (views open to anonymous callers)
        key = request.headers.get(HEADER, "")
        if not _VALID_KEY.fullmatch(key):
            raise IdempotencyKeyInvalid()
        method = str(request.method)
        request_hash = idempotency_request_hash(
            method=method, path=request.path, canonical_body=_canonical_body(request)
        )
        claim = idempotency_key_claim(
            user_id=int(user.pk),
            key=key,
            method=method,
            path=request.path,
            request_hash=request_hash,
        )
        if claim.replay:
            assert claim.status is not None  # noqa: S101 - a completed record has its status
            raise _Replay(
                Response(claim.body, status=claim.status, headers={REPLAYED_HEADER: "true"})
            )
        self._idempotency_record = claim.record_id
        watch.armed = True

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, _Replay):
            return exc.response
        response = super().handle_exception(exc)
        if isinstance(exc, IdempotencyInProgress):
            response["Retry-After"] = "1"
        return response

    def finalize_response(
        self, request: Request, response: Response, *args: Any, **kwargs: Any
    ) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        self._idempotency_settle(response)
        return response

    def _idempotency_settle(self, response: HttpResponseBase | None) -> None:
        """Keep the answer, give the key back, or keep the failure (see the module doc)."""
        record_id, watch = self._idempotency_record, self._idempotency_watch
        if record_id is None or watch is None:
            return
        self._idempotency_record = None
        watch.armed = False
        try:
            if (
                isinstance(response, Response)
                and response.status_code < 500
                and response.status_code not in _NOT_KEPT
            ):
                idempotency_key_complete(
                    record_id=record_id, status=response.status_code, body=_kept_body(response)
                )
                return
            if watch.committed:
                idempotency_key_fail(record_id=record_id)
            else:
                idempotency_key_release(record_id=record_id)
        except Exception:
            # The answer goes out all the same; the key stays in progress until it expires, so a
            # retry is told to wait rather than run twice.
            logger.exception("idempotency record=%s could not be settled", record_id)
