"""Every API error as a stable 4xx body: {"code": ..., "message": ...}, plus "errors" per
field for a validation error. A bug is logged and answered with a JSON 500, never an HTML one.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, JsonResponse
from django.urls import Resolver404, resolve
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from payments.errors import PaymentsError
from payments.middleware import CODE as UNAVAILABLE_CODE
from payments.middleware import MESSAGE as UNAVAILABLE_MESSAGE
from payments.middleware import RETRY_AFTER_SECONDS, database_unavailable, log_unavailable

logger = logging.getLogger(__name__)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, PaymentsError):
        return Response(exc.as_dict(), status=exc.status_code)
    if database_unavailable(exc):  # a restart or failover: retry, not a bug (payments/middleware)
        log_unavailable(context["request"], exc)
        return Response(
            {"code": UNAVAILABLE_CODE, "message": UNAVAILABLE_MESSAGE},
            status=503,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    if isinstance(exc, DjangoValidationError):
        return Response({"code": "invalid", "message": " ".join(exc.messages)}, status=400)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or None)
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    response = drf_exception_handler(exc, context)
    if response is None:
        if settings.DEBUG:
            return None  # the debug page, with its traceback
        view = context.get("view")
        logger.exception("unexpected error in %s", type(view).__name__ if view else "the API")
        return Response(
            {"code": "server_error", "message": "Something went wrong on our side."}, status=500
        )
    if isinstance(exc, exceptions.ValidationError):
        response.data = _validation_body(response.data)
    elif isinstance(exc, exceptions.APIException):
        response.data = _error_body(exc, response.data)
    return response


def _validation_body(data: Any) -> dict[str, Any]:
    errors = data if isinstance(data, dict) else {"non_field_errors": data}
    return {"code": "invalid", "message": _first_message(errors), "errors": errors}


def _first_message(errors: dict[str, Any]) -> str:
    for field, messages in errors.items():
        first = messages
        while isinstance(first, list | dict) and first:
            first = first[0] if isinstance(first, list) else next(iter(first.values()))
        if isinstance(first, str) and first:
            return first if field == "non_field_errors" else f"{field}: {first}"
    return "The request is not valid."


def _error_body(exc: exceptions.APIException, data: Any) -> dict[str, Any]:
    detail = data.get("detail") if isinstance(data, dict) else None
    code = getattr(detail, "code", None) or exc.default_code
    message = str(detail) if detail else str(exc.default_detail)
    return {"code": str(code), "message": message}


def not_found(request: HttpRequest, path: str = "") -> JsonResponse:
    """Any path under the API that names no endpoint: a JSON 404, never Django's HTML one."""
    message = "No API endpoint has this path."
    if not request.path.endswith("/"):
        try:
            match = resolve(request.path + "/")
        except Resolver404:
            match = None
        if match is not None and match.func is not not_found:
            message = f"No API endpoint has this path; did you mean {request.path}/ ?"
    return JsonResponse({"code": "not_found", "message": message}, status=404)
