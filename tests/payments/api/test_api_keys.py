"""API keys: only their hash is kept, the key works until revoked, last use is noted at most once
a minute; the page that creates (shows once), lists and revokes them; the command; the admin."""

from __future__ import annotations

import datetime as dt
import hashlib
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from payments.errors import ApiKeyLimitReached, ApiKeyNotFound, InvalidApiKeyName
from payments.models import ApiKey
from payments.services import api_keys
from tests.factories import UserFactory
from tests.payments.api.conftest import API

pytestmark = pytest.mark.django_db


def test_a_key_is_shown_once_and_only_its_hash_is_kept(user):
    row, key = api_keys.api_key_create(user_id=user.pk, name="  shop   backend ")
    parts = api_keys.KEY_PATTERN.match(key)
    assert parts
    assert key.startswith(f"pk_{row.prefix}_")
    assert row.name == "shop backend"
    assert row.key_hash == hashlib.sha256(key.encode()).hexdigest()
    stored = ApiKey.objects.filter(pk=row.pk).values_list()[0]
    # The secret part is the whole tail: URL-safe base64 may itself contain "_".
    secret = parts.group(2)
    assert not any(key in str(value) or secret in str(value) for value in stored)


def test_a_key_authenticates_until_revoked(user):
    row, key = api_keys.api_key_create(user_id=user.pk, name="k")
    assert api_keys.api_key_authenticate(raw_key=key) == row
    assert (
        api_keys.api_key_authenticate(raw_key=key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    )
    assert api_keys.api_key_authenticate(raw_key=f"pk_{row.prefix}_") is None
    api_keys.api_key_revoke(api_key_id=row.pk, user=user)
    assert api_keys.api_key_authenticate(raw_key=key) is None
    again = api_keys.api_key_revoke(api_key_id=row.pk, user=user)  # a second revoke: no change
    assert again.revoked_at == ApiKey.objects.get(pk=row.pk).revoked_at


def test_an_inactive_users_key_does_not_authenticate(user):
    _, key = api_keys.api_key_create(user_id=user.pk, name="k")
    user.is_active = False
    user.save()
    assert api_keys.api_key_authenticate(raw_key=key) is None


def test_only_the_owner_or_staff_may_revoke(user):
    row, _ = api_keys.api_key_create(user_id=user.pk, name="k")
    with pytest.raises(ApiKeyNotFound):
        api_keys.api_key_revoke(api_key_id=row.pk, user=UserFactory())
    with pytest.raises(ApiKeyNotFound):
        api_keys.api_key_revoke(api_key_id=row.pk, user=UserFactory(is_staff=True))
    with pytest.raises(ApiKeyNotFound):
        api_keys.api_key_revoke(api_key_id=10**9, user=user)
    admin = UserFactory(is_staff=True, is_superuser=True)
    assert api_keys.api_key_revoke(api_key_id=row.pk, user=admin).revoked_at is not None


@pytest.mark.parametrize("name", ["", "   ", "x" * 101, "a\x00b"])
def test_a_key_needs_a_name(user, name):
    with pytest.raises(InvalidApiKeyName):
        api_keys.api_key_create(user_id=user.pk, name=name)
    assert not ApiKey.objects.exists()


def test_active_keys_per_user_are_bounded(user, settings):
    settings.PAYMENTS_API_KEYS_PER_USER = 2
    first, _ = api_keys.api_key_create(user_id=user.pk, name="a")
    api_keys.api_key_create(user_id=user.pk, name="b")
    with pytest.raises(ApiKeyLimitReached):
        api_keys.api_key_create(user_id=user.pk, name="c")
    api_keys.api_key_revoke(api_key_id=first.pk, user=user)
    api_keys.api_key_create(user_id=user.pk, name="c")


def test_last_use_is_noted_at_most_once_a_minute(user, api_key):
    client = APIClient(HTTP_AUTHORIZATION=f"Bearer {api_key}")
    assert client.get(f"{API}/balance/").status_code == 200
    first = ApiKey.objects.get().last_used_at
    assert first is not None
    assert client.get(f"{API}/balance/").status_code == 200
    assert ApiKey.objects.get().last_used_at == first
    ApiKey.objects.update(last_used_at=timezone.now() - dt.timedelta(minutes=2))
    assert client.get(f"{API}/balance/").status_code == 200
    assert ApiKey.objects.get().last_used_at > first


# --- the page ----------------------------------------------------------------------------


def test_the_page_needs_a_signed_in_user(db):
    response = Client().get("/api-keys/")
    assert response.status_code == 302
    assert "/login/" in response["Location"]


def test_the_page_creates_shows_once_lists_and_revokes(user):
    client = Client(enforce_csrf_checks=False)
    client.force_login(user)
    assert "You have no API key yet" in client.get("/api-keys/").content.decode()
    response = client.post("/api-keys/", {"action": "create", "name": "shop backend"})
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    html = response.content.decode()
    row = ApiKey.objects.get(user=user)
    key = next(
        word for word in html.replace('"', " ").split() if word.startswith("pk_") and len(word) > 20
    )
    assert api_keys.api_key_authenticate(raw_key=key) == row
    listed = client.get("/api-keys/").content.decode()
    assert "shop backend" in listed
    assert f"pk_{row.prefix}_" in listed
    assert key not in listed
    response = client.post("/api-keys/", {"action": "revoke", "key_id": str(row.pk)}, follow=True)
    assert "is revoked" in response.content.decode()
    assert ApiKey.objects.get().revoked_at is not None


def test_the_page_cannot_revoke_someone_elses_key(user):
    theirs, _ = api_keys.api_key_create(user_id=UserFactory().pk, name="theirs")
    client = Client()
    client.force_login(user)
    for key_id in (str(theirs.pk), "abc", "-1", "9" * 40, "\x00"):
        response = client.post("/api-keys/", {"action": "revoke", "key_id": key_id}, follow=True)
        assert response.status_code == 200
        assert "No API key of yours" in response.content.decode()
    assert ApiKey.objects.get().revoked_at is None


def test_the_page_refuses_a_post_without_csrf(user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post("/api-keys/", {"action": "create", "name": "k"}).status_code == 403
    assert not ApiKey.objects.exists()


def test_the_page_shows_a_bad_name_as_a_form_error(user):
    client = Client()
    client.force_login(user)
    response = client.post("/api-keys/", {"action": "create", "name": ""})
    assert response.status_code == 400
    assert "This field is required" in response.content.decode()
    assert not ApiKey.objects.exists()


# --- the command ----------------------------------------------------------------------------


def test_the_command_prints_a_working_key_once(user):
    out, err = StringIO(), StringIO()
    call_command("api_key_create", user.username, "--name", "cron", stdout=out, stderr=err)
    key = out.getvalue().strip()
    assert api_keys.api_key_authenticate(raw_key=key).name == "cron"
    assert "shown this once" in err.getvalue()
    assert key not in err.getvalue()


def test_the_command_refuses_an_unknown_user(db):
    with pytest.raises(CommandError, match="No user is named 'nobody'"):
        call_command("api_key_create", "nobody", stdout=StringIO(), stderr=StringIO())
    assert not ApiKey.objects.exists()


# --- the admin ------------------------------------------------------------------------------


def test_the_admin_lists_keys_without_hashes_and_revokes_them(user):
    row, key = api_keys.api_key_create(user_id=user.pk, name="integration")
    admin = UserFactory(is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(admin)
    listing = client.get("/admin/payments/apikey/").content.decode()
    assert "integration" in listing
    assert f"pk_{row.prefix}_" in listing
    assert row.key_hash not in listing
    assert key not in listing
    detail = client.get(f"/admin/payments/apikey/{row.pk}/change/").content.decode()
    assert row.key_hash not in detail
    assert client.get("/admin/payments/apikey/add/").status_code == 403
    response = client.post(
        "/admin/payments/apikey/",
        {"action": "revoke_selected", "_selected_action": [str(row.pk)]},
        follow=True,
    )
    assert "Revoked 1 key(s)" in response.content.decode()
    assert ApiKey.objects.get().revoked_at is not None
    assert APIClient(HTTP_AUTHORIZATION=f"Bearer {key}").get(f"{API}/balance/").status_code == 401
