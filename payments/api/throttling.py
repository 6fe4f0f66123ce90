"""The API's throttle: each view names the scope of each create it rate-limits.

A view sets ``throttle_scopes = {"create": "deposit_create"}``; the rates are
PAYMENTS_THROTTLE_RATES, read at each request (so a test or a deployment may change them).
"""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from payments import security


class CreateThrottle(BaseThrottle):
    def __init__(self) -> None:
        self._wait: float | None = None

    def allow_request(self, request: Request, view: Any) -> bool:
        scopes: dict[str, str] = getattr(view, "throttle_scopes", {})
        scope = scopes.get(getattr(view, "action", None) or (request.method or "").lower())
        if scope is None:
            return True
        self._wait = security.create_rate_wait(request._request, scope)
        return self._wait is None

    def wait(self) -> float | None:
        return self._wait
