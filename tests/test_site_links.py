"""Links that lead somewhere: "/" goes to the admin, and "View site" only where user pages exist."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.django_db
def test_the_root_leads_to_the_admin_and_the_favicon_is_no_warning(
    client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    root = client.get("/")
    assert root.status_code == 302
    assert root["Location"] == "/admin/"
    with caplog.at_level("WARNING", logger="django.request"):
        assert client.get("/favicon.ico").status_code == 204
    assert caplog.records == []


@pytest.mark.django_db
def test_the_admin_has_no_view_site_link_until_the_user_pages_exist(admin_client: Any) -> None:
    from django.contrib import admin

    assert admin.site.site_url is None
    page = admin_client.get("/admin/")
    assert page.status_code == 200
    assert "View site" not in page.content.decode()


def test_payments_site_url_brings_the_link_back() -> None:
    show = "from django.contrib import admin; print(repr(admin.site.site_url))"

    def site_url(**extra: str) -> str:
        env = {k: v for k, v in os.environ.items() if k != "PAYMENTS_SITE_URL"}
        env.update(DJANGO_DEBUG="1", **extra)
        result = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", show],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return result.stdout.strip().splitlines()[-1]

    assert site_url() == "None"
    assert site_url(PAYMENTS_SITE_URL="https://pay.example.com/") == "'https://pay.example.com/'"
