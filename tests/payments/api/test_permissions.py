"""Who may call what: every API operation for anonymous, the owner (by API key and by session),
another user, a staff superuser who owns nothing here, a revoked key and an inactive user's
key. The API is each user's own: staff see others' rows in the admin, never here."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from rest_framework.test import APIClient

from payments import ledger
from payments.models import Payment, Transaction, WithdrawalRequest
from payments.services import withdrawals as withdrawal_service
from payments.services.api_keys import api_key_create, api_key_revoke
from tests.factories import PaymentFactory, UserFactory
from tests.payments.api.conftest import API

pytestmark = pytest.mark.django_db(transaction=True)

CSRF_SECRET = "a" * 32  # an unmasked CSRF secret, as the cookie carries it

# (method, path template, what the owner gets, what another signed-in user gets)
OPERATIONS = [
    ("GET", "/currencies/", 200, 200),
    ("GET", "/currencies/{currency}/", 200, 200),
    ("GET", "/balance/", 200, 200),
    ("GET", "/payments/", 200, 200),
    ("GET", "/payments/{payment}/", 200, 404),
    ("POST", "/payments/", 201, 201),
    ("GET", "/transactions/", 200, 200),
    ("GET", "/transactions/{transaction}/", 200, 404),
    ("GET", "/withdrawals/", 200, 200),
    ("GET", "/withdrawals/{withdrawal}/", 200, 404),
    ("GET", "/withdrawals/quote/?currency=USDTTRC20&amount_usd=20.00", 200, 200),
    ("POST", "/withdrawals/", 201, 409),  # another user has no balance to hold
    ("POST", "/withdrawals/{withdrawal}/cancel/", 200, 404),
]
BODIES = {
    "/payments/": {"amount_usd": "25.00", "currency": "USDTTRC20"},
    "/withdrawals/": {"amount_usd": "10.00", "currency": "USDTTRC20", "wallet_address": "T1"},
}
ACTORS = [
    "anonymous",
    "owner_key",
    "owner_x_api_key",
    "owner_session",
    "other_key",
    "staff_key",
    "staff_session",
    "revoked_key",
    "inactive_key",
]


@pytest.fixture
def world(user: Any, sandbox: Any, usdt: Any) -> dict[str, Any]:
    ledger.post(user_id=user.pk, kind="deposit", amount_usd=Decimal("50.00"), idempotency_key="w")
    withdrawal = withdrawal_service.withdrawal_create(
        user_id=user.pk, amount_usd=Decimal("20.00"), currency_id=usdt.pk, wallet_address="T1"
    )
    return {
        "owner": user,
        "other": UserFactory(),
        "staff": UserFactory(is_staff=True, is_superuser=True),
        "inactive": UserFactory(),
        "currency": usdt.code,
        "payment": PaymentFactory(user=user, currency=usdt).pk,
        "transaction": Transaction.objects.filter(user=user).order_by("sequence").first().pk,
        "withdrawal": withdrawal.pk,
    }


def client_as(actor: str, world: dict[str, Any]) -> APIClient:
    if actor == "anonymous":
        return APIClient()
    who, how = actor.split("_", 1)
    user = world.get(who)
    if how == "session":
        client = APIClient(enforce_csrf_checks=True, HTTP_X_CSRFTOKEN=CSRF_SECRET)
        client.cookies["csrftoken"] = CSRF_SECRET
        client.force_login(user)
        return client
    user = world["owner"] if who == "revoked" else user
    key_row, key = api_key_create(user_id=user.pk, name=actor)
    if who == "revoked":
        api_key_revoke(api_key_id=key_row.pk, user=user)
    if who == "inactive":
        user.is_active = False
        user.save(update_fields=["is_active"])
    if how == "x_api_key":
        return APIClient(HTTP_X_API_KEY=key)
    return APIClient(HTTP_AUTHORIZATION=f"Bearer {key}")


def expected(actor: str, owner_gets: int, other_gets: int) -> int:
    if actor in ("anonymous", "revoked_key", "inactive_key"):
        return 401
    if actor.startswith("owner"):
        return owner_gets
    return other_gets


@pytest.mark.parametrize("actor", ACTORS)
def test_the_permission_matrix(world, actor, settings):
    """Each operation in turn (the owner's cancel last, so the rest find the withdrawal)."""
    settings.PAYMENTS_AUTH_FAILURE_LIMIT = 100  # a wrong key per operation: no lockout here
    client = client_as(actor, world)
    wrong = []
    for method, template, owner_gets, other_gets in OPERATIONS:
        path = API + template.format(**world)
        before = (Payment.objects.count(), WithdrawalRequest.objects.count())
        if method == "GET":
            response = client.get(path)
        else:
            response = client.post(path, BODIES.get(template.split("?")[0]), format="json")
        want = expected(actor, owner_gets, other_gets)
        body = response.json()
        if response.status_code != want:
            wrong.append(f"{method} {path}: {response.status_code}, expected {want}: {body}")
            continue
        if want >= 400:
            assert body["code"], body
            assert body["message"], body
            assert (Payment.objects.count(), WithdrawalRequest.objects.count()) == before
        if want == 401:
            assert response["WWW-Authenticate"].startswith("Bearer")
            assert body["code"] in ("not_authenticated", "authentication_failed")
    assert not wrong, "\n".join(wrong)


def test_lists_show_only_your_own_rows_whoever_you_are(world):
    for actor in ("other_key", "staff_key", "staff_session"):
        client = client_as(actor, world)
        for path in ("/payments/", "/transactions/", "/withdrawals/"):
            assert client.get(f"{API}{path}").json()["results"] == [], (actor, path)
    owner = client_as("owner_key", world)
    assert [p["id"] for p in owner.get(f"{API}/payments/").json()["results"]] == [
        str(world["payment"])
    ]


def test_a_session_post_needs_its_csrf_token(world):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(world["owner"])
    response = client.post(f"{API}/withdrawals/{world['withdrawal']}/cancel/")
    assert (response.status_code, response.json()["code"]) == (403, "permission_denied")
    assert "CSRF" in response.json()["message"]
    assert WithdrawalRequest.objects.get(pk=world["withdrawal"]).status == "pending"


def test_an_api_key_needs_no_csrf_token_and_wins_over_the_session(world):
    client = client_as("owner_key", world)
    client.force_login(world["other"])  # a session of someone else beside the key
    response = client.post(f"{API}/withdrawals/{world['withdrawal']}/cancel/")
    assert (response.status_code, response.json()["status"]) == (200, "cancelled")


def test_the_schema_and_docs_are_public(db):
    for path in ("/schema/", "/docs/", "/redoc/"):
        assert APIClient().get(f"{API}{path}").status_code == 200, path
