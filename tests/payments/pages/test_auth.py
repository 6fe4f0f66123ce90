"""Signing in and out of the user pages: the form, where it leads, the lockout after repeated
failures (payments.security), and the demo user of ``manage.py demo_setup``."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import caches
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from payments.pages.auth import TOO_MANY_FAILURES
from tests.payments.pages.conftest import PASSWORD
from tests.payments.pages.html import Page

LOGIN = "/login/"


def sign_in(client: Client, username: str, password: str, **extra: str) -> Any:
    return client.post(LOGIN, {"username": username, "password": password, **extra})


def signed_in(client: Client) -> bool:
    return client.get("/").status_code == 200


@pytest.mark.django_db
def test_the_sign_in_form(client: Client) -> None:
    page = Page(client.get(LOGIN))
    assert page["id_username"].attrs["name"] == "username"
    assert page["id_password"].attrs["type"] == "password"
    assert "login-submit" in page
    assert page.controls_without_label() == []
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page.html
    assert "nav-account" not in page  # no navigation before signing in


@pytest.mark.django_db
def test_signing_in_leads_to_the_account_or_to_next(client: Client, owner: Any) -> None:
    response = sign_in(client, "owner", PASSWORD)
    assert response.status_code == 302
    assert response["Location"] == reverse("account")
    assert signed_in(client)
    # Signed in, the sign-in page leads on to the account.
    assert client.get(LOGIN)["Location"] == reverse("account")

    other = Client()
    assert sign_in(other, "owner", PASSWORD, next="/deposit/")["Location"] == "/deposit/"
    elsewhere = Client()
    answer = sign_in(elsewhere, "owner", PASSWORD, next="https://evil.example/")
    assert answer["Location"] == reverse("account")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("username", "password"),
    [("owner", "wrong"), ("nobody", PASSWORD), ("", ""), ("owner", ""), ("\x00", "x" * 5000)],
)
def test_a_failed_sign_in_is_a_form_error(
    client: Client, owner: Any, username: str, password: str
) -> None:
    response = sign_in(client, username, password)
    assert response.status_code == 200
    page = Page(response)
    assert "login-error" in page or "errorlist" in page.html
    assert not signed_in(client)


@pytest.mark.django_db
def test_a_wrong_password_says_so(client: Client, owner: Any) -> None:
    page = Page(sign_in(client, "owner", "wrong"))
    assert "correct username and password" in page.text("login-error")


@pytest.mark.django_db
def test_repeated_failures_lock_the_sign_in_out(client: Client, owner: Any) -> None:
    # At most 10 failures (PAYMENTS_AUTH_FAILURE_LIMIT): the next attempt is refused outright.
    for attempt in range(1, 12):
        page = Page(sign_in(client, "owner", f"wrong-{attempt}"))
        if page.text("login-error") == TOO_MANY_FAILURES:
            break
    assert page.text("login-error") == TOO_MANY_FAILURES
    assert attempt <= 11, attempt
    # Locked out, even the right password signs nobody in.
    refused = Page(sign_in(client, "owner", PASSWORD))
    assert refused.text("login-error") == TOO_MANY_FAILURES
    assert not signed_in(client)
    # Once the lockout is over (its counters gone), the right password works again.
    caches["default"].clear()
    assert sign_in(client, "owner", PASSWORD)["Location"] == reverse("account")


@pytest.mark.django_db
def test_signing_out_is_a_post_and_ends_the_session(owner_client: Client) -> None:
    page = Page(owner_client.get("/"))
    assert page["logout"].attrs["type"] == "submit"
    assert owner_client.get("/logout/").status_code == 405
    assert signed_in(owner_client)
    response = owner_client.post("/logout/")
    assert response.status_code == 302
    assert response["Location"] == LOGIN
    assert not signed_in(owner_client)


@pytest.mark.django_db(transaction=True)
def test_the_demo_user_of_demo_setup_signs_in_to_the_pages(
    sandbox: Any, settings: Any, tmp_path: Path, client: Client
) -> None:
    settings.DEBUG = True
    credentials = tmp_path / "demo-credentials.json"
    out = io.StringIO()
    call_command("demo_setup", credentials=credentials, web_url="http://127.0.0.1:8000", stdout=out)
    assert "User pages       http://127.0.0.1:8000/login/" in out.getvalue()
    demo = json.loads(credentials.read_text())["demo"]
    response = sign_in(client, demo["username"], demo["password"])
    assert response["Location"] == reverse("account")
    page = Page(client.get("/"))
    assert page.text("balance") == "$0.00"
    assert "nav-deposit" in page
    deposit = Page(client.get("/deposit/"))
    assert [e for e in deposit.elements if e.tag == "option"]  # the synced currencies
