"""Gunicorn's access log without the static files it served well (``--logger-class`` of make run).

Every admin page pulls a dozen CSS, JavaScript and image files through whitenoise; one access
line each buries the requests that matter. A static file answered with an error (404, 500) is
still logged, and so is every other request.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from gunicorn.glogging import Logger


def static_prefix() -> str:
    """The path static files are served under, from Django's STATIC_URL ("/static/")."""
    from django.conf import settings

    path = urlsplit(str(getattr(settings, "STATIC_URL", None) or "static/")).path
    return "/" + path.strip("/") + "/"


class AccessLogWithoutStatic(Logger):  # type: ignore[misc]
    """gunicorn's logger, skipping successful requests for static files in the access log."""

    _prefix: str | None = None

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        if self._is_static_success(resp, environ):
            return
        super().access(resp, req, environ, request_time)

    def _is_static_success(self, resp: Any, environ: dict[str, Any]) -> bool:
        if self._prefix is None:
            self._prefix = static_prefix()
        status = getattr(resp, "status_code", None)
        path = str(environ.get("PATH_INFO") or "")
        return isinstance(status, int) and status < 400 and path.startswith(self._prefix)
