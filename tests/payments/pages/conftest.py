"""Fixtures of the user pages' tests: users, a funded balance, a withdrawal currency, and fresh
throttle counters (the deposit and withdrawal rates and the sign-in lockout share the cache)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.core.cache import caches
from django.test import Client

from payments import ledger
from payments.models import WithdrawalRequest
from payments.services import withdrawals
from tests.factories import CurrencyFactory, UserFactory

TRON_ADDRESS = "TQn9Y2khEsLJW1ChVWFMSMeRDow5KcbLSE"
PASSWORD = "pw-for-tests-only"  # tests.factories.UserFactory's


@pytest.fixture(autouse=True)
def _fresh_throttles() -> Iterator[None]:
    caches["default"].clear()
    yield
    caches["default"].clear()


@pytest.fixture
def owner(db: Any) -> Any:
    return UserFactory(username="owner")


@pytest.fixture
def other(db: Any) -> Any:
    return UserFactory(username="other")


@pytest.fixture
def staff(db: Any) -> Any:
    return UserFactory(username="staffer", is_staff=True, is_superuser=True)


def client_for(user: Any | None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


@pytest.fixture
def owner_client(owner: Any) -> Client:
    return client_for(owner)


def fund(user: Any, amount: str, key: str = "funding") -> None:
    """Credit the user through the ledger, as a settled deposit would."""
    ledger.post(
        user_id=user.pk,
        kind="deposit",
        amount_usd=Decimal(amount),
        idempotency_key=f"{key}:{user.pk}",
        description="Test funding",
    )


@pytest.fixture
def trx(db: Any) -> Any:
    """A Tron currency for withdrawals: $1.00 network fee, $2.00 payout minimum."""
    return CurrencyFactory(
        code="USDTTRC20",
        token="USDT",
        network="TRC20",
        address_regex=r"^T[1-9A-HJ-NP-Za-km-z]{33}$",
        withdrawal_fee_usd=Decimal("1.00"),
        withdrawal_min_usd=Decimal("2.00"),
    )


def make_withdrawal(user: Any, currency: Any, amount: str = "20.00") -> WithdrawalRequest:
    return withdrawals.withdrawal_create(
        user_id=user.pk,
        amount_usd=Decimal(amount),
        currency_id=currency.pk,
        wallet_address=TRON_ADDRESS,
    )
