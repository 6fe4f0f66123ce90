"""API-key authentication of the user API: ``Authorization: Bearer pk_...`` or ``X-API-Key``.

A request without a key is left to the next authenticator (the pages' session). A wrong key
is a 401 and counts as a failed sign-in of the client address (payments/security.py); once the
address is locked out, every key it presents is refused with a 429 until the lockout ends.
"""

from __future__ import annotations

import math
from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from payments import security
from payments.services.api_keys import api_key_authenticate

HEADER = "X-API-Key"
_KEYWORD = "bearer"


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        raw_key = _presented_key(request)
        if raw_key is None:
            return None
        locked_for = security.auth_lockout_remaining(request._request, None)
        if locked_for > 0:
            seconds = max(math.ceil(locked_for), 1)
            raise exceptions.Throttled(
                wait=seconds,
                detail="Too many requests with a wrong API key came from this address.",
            )
        api_key = api_key_authenticate(raw_key=raw_key)
        if api_key is None:
            security.auth_failure_record(request._request, None)
            raise exceptions.AuthenticationFailed(
                "The API key is not valid: it is unknown, revoked, or its user is inactive."
            )
        return api_key.user, api_key

    def authenticate_header(self, request: Request) -> str:
        # Makes a request without credentials a 401 (with this challenge), not a 403.
        return 'Bearer realm="api"'


def _presented_key(request: Request) -> str | None:
    """The key the request carries, if it carries one (an empty one is a wrong one)."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if header:
        keyword, _, value = header.strip().partition(" ")
        if keyword.lower() == _KEYWORD:
            return value.strip()
    value = request.META.get("HTTP_X_API_KEY")
    if value is not None:
        return value.strip()
    return None


class ApiKeyScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    """The two ways of presenting a key, as OpenAPI security schemes (either will do)."""

    target_class = ApiKeyAuthentication
    name = ["bearerAuth", "apiKeyHeader"]

    def get_security_definition(self, auto_schema: Any) -> list[dict[str, Any]]:
        return [
            {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "pk_<prefix>_<secret>",
                "description": "An API key from the API keys page, as a bearer token.",
            },
            {
                "type": "apiKey",
                "in": "header",
                "name": HEADER,
                "description": "The same key in a header of its own.",
            },
        ]

    def get_security_requirement(self, auto_schema: Any) -> list[dict[str, list[Any]]]:
        return [{"bearerAuth": []}, {"apiKeyHeader": []}]
