"""Filters and paging of the API's lists: status, type, currency, the creation date range, and
a bounded page_size (more than 200 is served as 200)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from payments import ledger
from payments.services import withdrawals as withdrawal_service
from tests.factories import CurrencyFactory, PaymentFactory
from tests.payments.api.conftest import API

pytestmark = pytest.mark.django_db


def _ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.json()
    return [str(row["id"]) for row in response.json()["results"]]


@pytest.fixture
def payments(user: Any, usdt: Any, btc: Any) -> dict[str, Any]:
    return {
        "pending": PaymentFactory(user=user, currency=usdt),
        "expired": PaymentFactory(user=user, currency=usdt, status="expired"),
        "failed": PaymentFactory(user=user, currency=btc, status="failed"),
    }


def test_payments_by_status_and_currency(key_client, payments):
    assert _ids(key_client.get(f"{API}/payments/?status=expired")) == [str(payments["expired"].pk)]
    both = set(_ids(key_client.get(f"{API}/payments/?status=expired,failed")))
    assert both == {str(payments["expired"].pk), str(payments["failed"].pk)}
    assert _ids(key_client.get(f"{API}/payments/?currency=btc")) == [str(payments["failed"].pk)]
    assert _ids(key_client.get(f"{API}/payments/?status=completed")) == []
    assert len(_ids(key_client.get(f"{API}/payments/"))) == 3


def test_lists_by_creation_date(key_client, payments):
    now = timezone.now()
    later = (now + dt.timedelta(minutes=5)).isoformat()
    earlier = (now - dt.timedelta(minutes=5)).isoformat()
    for path in ("/payments/", "/withdrawals/", "/transactions/"):
        assert _ids(key_client.get(f"{API}{path}", {"created_after": later})) == [], path
    assert len(_ids(key_client.get(f"{API}/payments/", {"created_after": earlier}))) == 3
    assert len(_ids(key_client.get(f"{API}/payments/", {"created_before": later}))) == 3
    assert _ids(key_client.get(f"{API}/payments/", {"created_before": earlier})) == []
    today = now.date().isoformat()
    assert len(_ids(key_client.get(f"{API}/payments/", {"created_after": today}))) == 3
    assert _ids(key_client.get(f"{API}/payments/", {"created_before": today})) == []
    # An offset given with an unescaped "+" arrives as a space, and is still understood.
    raw = (now + dt.timedelta(hours=1)).astimezone(dt.timezone(dt.timedelta(hours=1)))
    stamp = raw.strftime("%Y-%m-%dT%H:%M:%S+01:00").replace("+", " ")
    assert len(_ids(key_client.get(f"{API}/payments/?created_before={stamp}"))) == 3


def test_transactions_by_type(key_client, user):
    for i, kind in enumerate(["deposit", "bonus", "deposit"]):
        ledger.post(user_id=user.pk, kind=kind, amount_usd=Decimal("5.00"), idempotency_key=f"{i}")
    rows = key_client.get(f"{API}/transactions/?type=deposit").json()["results"]
    assert [row["transaction_type"] for row in rows] == ["deposit", "deposit"]
    rows = key_client.get(f"{API}/transactions/?type=bonus,deposit").json()["results"]
    assert len(rows) == 3
    response = key_client.get(f"{API}/transactions/?type=gift")
    assert (response.status_code, response.json()["code"]) == (400, "invalid_filter")
    assert "deposit" in response.json()["message"]


def test_withdrawals_by_status(key_client, user, usdt):
    ledger.post(user_id=user.pk, kind="deposit", amount_usd=Decimal("90.00"), idempotency_key="f")
    made = [
        withdrawal_service.withdrawal_create(
            user_id=user.pk, amount_usd=Decimal("20.00"), currency_id=usdt.pk, wallet_address="T1"
        )
        for _ in range(3)
    ]
    withdrawal_service.withdrawal_cancel(withdrawal_id=made[0].pk, user=user)
    assert _ids(key_client.get(f"{API}/withdrawals/?status=cancelled")) == [str(made[0].pk)]
    assert len(_ids(key_client.get(f"{API}/withdrawals/?status=pending"))) == 2
    other = CurrencyFactory(code="LTC", name="Litecoin", token="LTC", network="LTC")
    assert _ids(key_client.get(f"{API}/withdrawals/?currency={other.code}")) == []


def test_page_size_default_bounded_and_paged(key_client, user):
    ledger.post_many(
        [
            ledger.Posting(
                user_id=user.pk, kind="bonus", amount_usd=Decimal("0.01"), idempotency_key=f"p{i}"
            )
            for i in range(205)
        ]
    )
    body = key_client.get(f"{API}/transactions/").json()
    assert (body["count"], len(body["results"])) == (205, 50)
    body = key_client.get(f"{API}/transactions/?page_size=7&page=2").json()
    assert len(body["results"]) == 7
    assert "page=3" in body["next"]
    assert "page_size=7" in body["next"]
    body = key_client.get(f"{API}/transactions/?page_size=500").json()
    assert len(body["results"]) == 200  # served as the most a page holds
    body = key_client.get(f"{API}/transactions/?page_size=200&page=2").json()
    assert (len(body["results"]), body["next"]) == (5, None)
    for bad in ("0", "-3", "ten", "2.5"):
        response = key_client.get(f"{API}/transactions/?page_size={bad}")
        assert (response.status_code, response.json()["code"]) == (400, "invalid_filter"), bad


def test_unknown_parameters_are_ignored(key_client, payments):
    assert len(_ids(key_client.get(f"{API}/payments/?colour=blue&ordering=-x"))) == 3
