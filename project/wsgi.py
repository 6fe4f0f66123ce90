"""WSGI entry point for gunicorn."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

application = get_wsgi_application()

from django.conf import settings  # noqa: E402 - after the app registry is ready

from payments.config import require_configuration  # noqa: E402

require_configuration()
if settings.SECRET_KEY_MISSING:
    raise RuntimeError(
        "DJANGO_SECRET_KEY is not set. Set it to a long random string, "
        "or set DJANGO_DEBUG=1 for a local development run."
    )
