"""Turns domain errors into stable 4xx bodies: {"code": ..., "message": ...}."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from payments.errors import PaymentsError


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, PaymentsError):
        return Response(exc.as_dict(), status=exc.status_code)
    if isinstance(exc, DjangoValidationError):
        return Response({"code": "invalid", "message": " ".join(exc.messages)}, status=400)
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(response.data, dict) and "code" not in response.data:
        detail = response.data.get("detail")
        code = getattr(detail, "code", None) or "invalid"
        message = str(detail) if detail is not None else "The request is not valid."
        response.data = {"code": code, "message": message, "errors": response.data}
    return response
