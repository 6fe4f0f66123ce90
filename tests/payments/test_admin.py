"""The operators' admin: every page loads, money is read-only, reviews follow the rules."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages

from payments import ledger
from payments.models import LedgerDrift, Transaction, UserBalance, WithdrawalRequest
from payments.services import withdrawals
from tests.factories import CurrencyFactory, PaymentFactory, UserFactory

pytestmark = pytest.mark.django_db

URL = "/admin/payments/"


@pytest.fixture
def reviewer(client):
    user = UserFactory(username="reviewer", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="payments"))
    client.force_login(user)
    return user


@pytest.fixture
def withdrawal():
    user = UserFactory()
    ledger.post(user_id=user.pk, kind="deposit", amount_usd=Decimal("50.00"), idempotency_key="d")
    return withdrawals.withdrawal_create(
        user_id=user.pk,
        amount_usd=Decimal("20.00"),
        currency_id=CurrencyFactory().pk,
        wallet_address="TAddr1",
    )


def act(client, action: str, objects: list, **extra: str) -> list[str]:
    response = client.post(
        f"{URL}withdrawalrequest/",
        {"action": action, "_selected_action": [str(o.pk) for o in objects], **extra},
        follow=True,
    )
    assert response.status_code == 200
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_every_admin_page_loads(client, reviewer, withdrawal):
    PaymentFactory()
    LedgerDrift.objects.create(kind="unsettled_payment", subject="payment:x")
    for model in (
        "payment",
        "currency",
        "userbalance",
        "transaction",
        "withdrawalrequest",
        "providerevent",
        "periodicrun",
        "ledgerdrift",
    ):
        assert client.get(f"{URL}{model}/").status_code == 200, model
        assert client.get(f"{URL}{model}/?q=x").status_code == 200, model
    assert client.get(f"{URL}withdrawalrequest/{withdrawal.pk}/change/").status_code == 200
    txn = Transaction.objects.first()
    assert client.get(f"{URL}transaction/{txn.pk}/change/").status_code == 200


def test_ledger_rows_and_balances_cannot_be_edited(client, reviewer, withdrawal):
    txn = Transaction.objects.first()
    response = client.post(f"{URL}transaction/{txn.pk}/change/", {"amount_usd": "1000.00"})
    assert response.status_code == 403
    balance = UserBalance.objects.get(user=withdrawal.user)
    response = client.post(f"{URL}userbalance/{balance.pk}/change/", {"balance_usd": "1000.00"})
    assert response.status_code == 403
    assert client.post(f"{URL}transaction/{txn.pk}/delete/", {"post": "yes"}).status_code == 403
    balance.refresh_from_db()
    assert balance.balance_usd == Decimal("30.00")


def test_approve_then_complete_with_the_hash(client, reviewer, withdrawal):
    assert act(client, "approve_selected", [withdrawal], apply="1") == ["1 withdrawal(s) approved."]
    withdrawal.refresh_from_db()
    assert (withdrawal.status, withdrawal.admin_user) == ("approved", reviewer)
    messages = act(client, "mark_completed", [withdrawal])
    assert "needs its blockchain transaction hash" in messages[0]
    form = client.get(f"{URL}withdrawalrequest/{withdrawal.pk}/change/")
    assert 'name="transaction_hash"' in form.content.decode()
    response = client.post(
        f"{URL}withdrawalrequest/{withdrawal.pk}/change/",
        {
            "transaction_hash": "ab" * 32,
            "admin_notes": "sent from hot wallet",
            "failure_reason": "",
        },
    )
    assert response.status_code == 302
    assert "1 withdrawal(s) completed." in act(client, "mark_completed", [withdrawal])
    withdrawal.refresh_from_db()
    assert (withdrawal.status, withdrawal.transaction_hash) == ("completed", "ab" * 32)
    assert UserBalance.objects.get(user=withdrawal.user).balance_usd == Decimal("30.00")


def test_reject_asks_why_then_refunds_and_shows_a_message(client, reviewer, withdrawal):
    page = client.post(
        f"{URL}withdrawalrequest/",
        {"action": "reject_selected", "_selected_action": [str(withdrawal.pk)]},
    )
    assert 'name="reason"' in page.content.decode()
    assert WithdrawalRequest.objects.get(pk=withdrawal.pk).status == "pending"
    assert act(client, "reject_selected", [withdrawal], apply="1", reason=" ") == [
        "Say why the withdrawals are rejected."
    ]
    assert act(client, "reject_selected", [withdrawal], apply="1", reason="KYC failed") == [
        "1 withdrawal(s) rejected."
    ]
    assert UserBalance.objects.get(user=withdrawal.user).balance_usd == Decimal("50.00")
    messages = act(client, "reject_selected", [withdrawal], apply="1", reason="again")
    assert "already rejected" in messages[0]
    assert Transaction.objects.filter(transaction_type="refund").count() == 1


def test_nobody_approves_their_own_request_in_the_admin(client, reviewer):
    ledger.post(
        user_id=reviewer.pk, kind="deposit", amount_usd=Decimal("50.00"), idempotency_key="own"
    )
    own = withdrawals.withdrawal_create(
        user_id=reviewer.pk,
        amount_usd=Decimal("20.00"),
        currency_id=CurrencyFactory().pk,
        wallet_address="TAddr1",
    )
    messages = act(client, "approve_selected", [own], apply="1")
    assert "their own withdrawal" in messages[0]
    own.refresh_from_db()
    assert own.status == "pending"


def test_staff_without_the_permission_cannot_approve(client, withdrawal):
    staff = UserFactory(username="viewer", is_staff=True)
    staff.user_permissions.add(
        *Permission.objects.filter(
            codename__in=["view_withdrawalrequest", "change_withdrawalrequest"]
        )
    )
    client.force_login(staff)
    page = client.get(f"{URL}withdrawalrequest/").content.decode()
    assert "approve_selected" not in page
    act(client, "approve_selected", [withdrawal], apply="1")
    assert WithdrawalRequest.objects.get(pk=withdrawal.pk).status == "pending"


def test_drift_is_resolved_by_an_operator(client, reviewer):
    drift = LedgerDrift.objects.create(kind="balance_mismatch", subject="user:1")
    client.post(f"{URL}ledgerdrift/", {"action": "mark_resolved", "_selected_action": [drift.pk]})
    drift.refresh_from_db()
    assert drift.resolved_at is not None
    assert drift.resolved_by == reviewer
