"""The OpenAPI schema's shared parts: the error body, the error responses every operation can
give, the Idempotency-Key header of the POSTs, and the documentation pages (local files only).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse
from drf_spectacular.views import SpectacularRedocView

ERROR_COMPONENT = "Error"
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": (
        "Every error. `code` is stable and machine-readable, `message` a sentence for a "
        "person; a validation error (`code` invalid) adds `errors`, the messages per field."
    ),
    "properties": {
        "code": {"type": "string", "example": "invalid"},
        "message": {"type": "string", "example": "amount_usd: A valid number is required."},
        "errors": {
            "type": "object",
            "additionalProperties": {},
            "description": "Per field, its messages (validation errors only).",
        },
    },
    "required": ["code", "message"],
}

_EVERY_OPERATION = {
    "400": "A parameter, header or body the operation cannot take (code tells which kind).",
    "401": "No credentials, or an API key that is not valid (code authentication_failed).",
    "403": "Not allowed: e.g. a session POST without its CSRF token.",
    "404": "No such object among yours, no such page, or no such endpoint (code not_found).",
    "429": (
        "Too many requests: a create over its rate, or wrong API keys from this address "
        "(code throttled); the Retry-After header says how many seconds to wait."
    ),
}
_WITH_BODY = {
    "409": "Refused in the current state (e.g. insufficient_funds, invalid_transition), or an "
    "Idempotency-Key already used with another request.",
    "413": "The body is larger than the API takes (code request_too_large).",
    "415": "The body is not application/json (code unsupported_media_type).",
}
IDEMPOTENCY_HEADER: dict[str, Any] = {
    "in": "header",
    "name": "Idempotency-Key",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},
    "description": (
        "Any unique string of yours, up to 255 printable ASCII characters: a retry with the "
        "same key and body gets the first response and has no second effect; the same key "
        "with another body is a 409."
    ),
}


def add_error_responses(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: the shared error responses on every operation."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas[ERROR_COMPONENT] = ERROR_SCHEMA
    for operations in result.get("paths", {}).values():
        for method, operation in operations.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            responses = operation.setdefault("responses", {})
            extra = dict(_EVERY_OPERATION)
            if method != "get":
                extra.update(_WITH_BODY)
                parameters = operation.setdefault("parameters", [])
                if not any(p.get("name") == "Idempotency-Key" for p in parameters):
                    parameters.append(IDEMPOTENCY_HEADER)
            for status, description in extra.items():
                responses.setdefault(status, _error_response(description))
            if "429" in responses:
                responses["429"].setdefault(
                    "headers",
                    {
                        "Retry-After": {
                            "schema": {"type": "integer"},
                            "description": "Seconds to wait before trying again.",
                        }
                    },
                )
    return result


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{ERROR_COMPONENT}"}}
        },
    }


def error_responses(described: dict[int, str]) -> dict[int, Any]:
    """Operation-specific error responses for ``extend_schema(responses=...)``."""
    from payments.api.serializers import ErrorSerializer

    return {
        status: OpenApiResponse(ErrorSerializer, description=text)
        for status, text in described.items()
    }


class RedocView(SpectacularRedocView):
    """ReDoc without its default web fonts from Google: every file comes from this site."""

    template_name = "payments/api/redoc.html"
