"""A database that is down or restarting answers 503 with a stable code, never a 500.

When PostgreSQL restarts, fails over or ends a connection (``pg_terminate_backend``), the
request in flight and the next ones until it is back raise ``OperationalError`` or
``InterfaceError``. Django would answer those 500, which tells a client, and NowPayments
delivering an IPN, that the request itself was at fault. This middleware answers 503 with
``Retry-After`` instead: ``{"code": "database_unavailable", ...}`` for API clients and for
NowPayments, a short plain page for a browser (``Accept: text/html``: the admin). Nothing was
written: the request's transaction, if it had one, rolled back with the connection, and an IPN
not stored is delivered again. Django closes the broken connection at the end of the request,
so the next one reconnects. (The API's own exception handler answers the same for DRF views.)

Only connection-level errors are answered this way; an ``IntegrityError`` or a programming
error is still a bug and still a 500.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
CODE = "database_unavailable"
MESSAGE = "The database is unavailable; nothing was changed. Retry shortly."


def database_unavailable(exception: BaseException) -> bool:
    """Whether ``exception`` says the database connection is gone or refused (not a bug)."""
    return isinstance(exception, OperationalError | InterfaceError)


def log_unavailable(request: HttpRequest, exception: BaseException) -> None:
    text = str(exception).strip()
    logger.warning(
        "database unavailable during %s %s: %s; answered 503",
        request.method,
        request.path,
        text.splitlines()[0] if text else type(exception).__name__,
    )


class DatabaseUnavailableMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not database_unavailable(exception):
            return None
        log_unavailable(request, exception)
        response: HttpResponse
        if "text/html" not in request.headers.get("Accept", ""):
            response = JsonResponse({"code": CODE, "message": MESSAGE}, status=503)
        else:
            response = HttpResponse(MESSAGE, status=503, content_type="text/plain; charset=utf-8")
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
