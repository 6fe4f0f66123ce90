"""The rate limits: creates over their rate answer 429 (with Retry-After) and create nothing;
wrong API keys and wrong passwords lock the client address (and the username) out."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client, RequestFactory
from rest_framework.test import APIClient

from payments import ledger, security
from payments.models import ApiKey, Payment, WithdrawalRequest
from project import settings as project_settings
from tests.factories import UserFactory
from tests.payments.api.conftest import API

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "pw-for-tests-only"  # tests.factories.UserFactory's
DEPOSIT = {"amount_usd": "25.00", "currency": "USDTTRC20"}


def _throttled(response: Any) -> None:
    assert response.status_code == 429, response.content[:300]
    assert response.json()["code"] == "throttled"
    assert response.json()["message"]
    assert int(response["Retry-After"]) >= 1


def test_deposit_creates_beyond_the_rate_are_429_and_reach_nobody(
    key_client, user, sandbox, usdt, settings
):
    settings.PAYMENTS_THROTTLE_RATES = {
        **settings.PAYMENTS_THROTTLE_RATES,
        "deposit_create": "3/min",
    }
    answers = [key_client.post(f"{API}/payments/", DEPOSIT).status_code for _ in range(3)]
    assert answers == [201, 201, 201]
    calls = sandbox.control.requests()
    for _ in range(5):
        _throttled(key_client.post(f"{API}/payments/", DEPOSIT))
    assert Payment.objects.count() == 3
    assert len(sandbox.control.payments()) == 3
    assert sandbox.control.requests() == calls  # NowPayments heard nothing of them
    # Reading is not a create: never throttled by it.
    assert all(key_client.get(f"{API}/payments/").status_code == 200 for _ in range(20))
    # Another user has a count of their own.
    other = APIClient()
    other.force_authenticate(UserFactory())
    assert other.post(f"{API}/payments/", DEPOSIT).status_code == 201


def test_the_default_rates_refuse_the_issues_40_creates_in_8_seconds(
    key_client, sandbox, usdt, settings
):
    settings.PAYMENTS_THROTTLE_RATES = project_settings.PAYMENTS_THROTTLE_RATES
    assert settings.PAYMENTS_THROTTLE_RATES["deposit_create"] == "10/min"
    answers = [key_client.post(f"{API}/payments/", DEPOSIT).status_code for _ in range(40)]
    assert answers.count(201) <= 20  # 10 a minute, at most twice that across a window's edge
    assert answers.count(429) >= 20
    assert Payment.objects.count() == answers.count(201)


def test_withdrawal_creates_beyond_the_rate_are_429_and_hold_nothing(
    key_client, user, usdt, settings
):
    settings.PAYMENTS_THROTTLE_RATES = {
        **settings.PAYMENTS_THROTTLE_RATES,
        "withdrawal_create": "2/min",
    }
    ledger.post(user_id=user.pk, kind="deposit", amount_usd=Decimal("100.00"), idempotency_key="t")
    body = {"amount_usd": "10.00", "currency": "USDTTRC20", "wallet_address": "T1"}
    assert [key_client.post(f"{API}/withdrawals/", body).status_code for _ in range(2)] == [
        201,
        201,
    ]
    _throttled(key_client.post(f"{API}/withdrawals/", body))
    assert WithdrawalRequest.objects.count() == 2
    # Cancelling is not a create.
    for withdrawal in WithdrawalRequest.objects.all():
        assert key_client.post(f"{API}/withdrawals/{withdrawal.pk}/cancel/").status_code == 200


def test_wrong_api_keys_lock_the_address_out_then_it_opens_again(user, api_key, settings):
    settings.PAYMENTS_AUTH_FAILURE_LIMIT = 3
    settings.PAYMENTS_AUTH_LOCKOUT_SECONDS = 2
    wrong = APIClient(HTTP_AUTHORIZATION="Bearer pk_000000000000_" + "x" * 43)
    assert [wrong.get(f"{API}/balance/").status_code for _ in range(3)] == [401, 401, 401]
    _throttled(wrong.get(f"{API}/balance/"))
    # While locked, no key from this address is even checked, the right one included.
    right = APIClient(HTTP_AUTHORIZATION=f"Bearer {api_key}")
    _throttled(right.get(f"{API}/balance/"))
    assert ApiKey.objects.get().last_used_at is None
    # A session is no key: it still works.
    session = APIClient()
    session.force_login(user)
    assert session.get(f"{API}/balance/").status_code == 200
    time.sleep(2.2)
    assert right.get(f"{API}/balance/").status_code == 200


def test_wrong_keys_from_another_address_do_not_lock_this_one(api_key, settings):
    settings.PAYMENTS_AUTH_FAILURE_LIMIT = 2
    wrong = APIClient(HTTP_X_API_KEY="nope", REMOTE_ADDR="198.51.100.7")
    for _ in range(3):
        wrong.get(f"{API}/balance/")
    _throttled(wrong.get(f"{API}/balance/"))
    right = APIClient(HTTP_X_API_KEY=api_key, REMOTE_ADDR="198.51.100.8")
    assert right.get(f"{API}/balance/").status_code == 200


def test_a_forwarded_for_header_is_trusted_only_as_far_as_the_proxies_go(settings):
    factory = RequestFactory()
    request = factory.get("/", HTTP_X_FORWARDED_FOR="203.0.113.9, 10.0.0.1", REMOTE_ADDR="10.0.0.2")
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 0}
    assert security.client_address(request) == "10.0.0.2"
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    assert security.client_address(request) == "10.0.0.1"


def test_the_login_page_locks_out_after_wrong_passwords(settings):
    settings.PAYMENTS_AUTH_FAILURE_LIMIT = 3
    user = UserFactory()
    client = Client()
    for _ in range(3):
        response = client.post("/login/", {"username": user.username, "password": "wrong"})
        assert response.status_code == 200
        assert not response.wsgi_request.user.is_authenticated
    # The right password is refused now, from this address ...
    response = client.post("/login/", {"username": user.username, "password": PASSWORD})
    assert "Too many failed sign-ins" in response.content.decode()
    assert "_auth_user_id" not in client.session
    # ... and for this username from anywhere else.
    elsewhere = Client(REMOTE_ADDR="198.51.100.20")
    response = elsewhere.post("/login/", {"username": user.username, "password": PASSWORD})
    assert "Too many failed sign-ins" in response.content.decode()
    # Someone else, from elsewhere, signs in.
    other = UserFactory()
    response = elsewhere.post("/login/", {"username": other.username, "password": PASSWORD})
    assert response.status_code == 302
    assert elsewhere.session["_auth_user_id"] == str(other.pk)


def test_the_lockout_counts_usernames_whatever_their_case(settings):
    settings.PAYMENTS_AUTH_FAILURE_LIMIT = 2
    factory = RequestFactory()
    for i, name in enumerate(["Alice", "alice "]):
        request = factory.post("/login/", REMOTE_ADDR=f"198.51.100.{30 + i}")
        assert not security.auth_failures_exceeded(request, "ALICE")
        security.auth_failure_record(request, name)
    assert security.auth_failures_exceeded(factory.post("/", REMOTE_ADDR="192.0.2.1"), "alice")
    assert not security.auth_failures_exceeded(factory.post("/", REMOTE_ADDR="192.0.2.1"), "bob")


def test_api_key_creates_on_the_page_are_rate_limited(user, settings):
    settings.PAYMENTS_THROTTLE_RATES = {
        **settings.PAYMENTS_THROTTLE_RATES,
        "api_key_create": "2/hour",
    }
    client = Client()
    client.force_login(user)
    for n in range(2):
        assert client.post("/api-keys/", {"action": "create", "name": f"k{n}"}).status_code == 200
    response = client.post("/api-keys/", {"action": "create", "name": "k3"})
    assert response.status_code == 429
    assert "try again" in response.content.decode()
    assert ApiKey.objects.filter(user=user).count() == 2


@pytest.mark.parametrize(
    ("text", "count", "seconds"),
    [("10/min", 10, 60), ("5/15m", 5, 900), ("100/day", 100, 86400), ("3/s", 3, 1)],
)
def test_rates_read_as_count_per_period(text, count, seconds):
    assert security.parse_rate(text) == security.Rate(count=count, seconds=seconds)


@pytest.mark.parametrize("text", ["", "10", "0/min", "ten/min", "10/fortnight"])
def test_a_rate_that_does_not_read_is_refused(text):
    with pytest.raises(ValueError, match="rate"):
        security.parse_rate(text)
