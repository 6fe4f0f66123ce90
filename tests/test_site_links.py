"""Links that lead somewhere: "/" is the user pages (sign in first), the admin's "View site"
leads there, and the favicon is no warning."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.django_db
def test_the_root_is_the_account_page_behind_the_sign_in_and_the_favicon_is_no_warning(
    client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    root = client.get("/")
    assert root.status_code == 302
    assert root["Location"] == "/login/?next=/"
    assert client.get(root["Location"]).status_code == 200
    with caplog.at_level("WARNING", logger="django.request"):
        assert client.get("/favicon.ico").status_code == 204
    assert caplog.records == []


@pytest.mark.django_db
def test_the_admins_view_site_link_leads_to_the_user_pages(admin_client: Any) -> None:
    from django.contrib import admin

    assert admin.site.site_url == "/"
    page = admin_client.get("/admin/")
    assert page.status_code == 200
    assert '<a href="/">View site</a>' in page.content.decode()
    assert admin_client.get("/").status_code == 200


def test_payments_site_url_moves_or_hides_the_link() -> None:
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

    assert site_url() == "'/'"
    assert site_url(PAYMENTS_SITE_URL="https://pay.example.com/") == "'https://pay.example.com/'"
    assert site_url(PAYMENTS_SITE_URL="") == "None"
