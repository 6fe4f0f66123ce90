"""The settlement routine: a batch costs the same statements whatever its size."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from payments.models import Payment, Transaction
from payments.services import deposits
from tests.factories import PaymentFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _completed(n: int, usdt: Any) -> list[Payment]:
    user = UserFactory()
    made = [PaymentFactory(user=user, currency=usdt) for _ in range(n)]
    Payment._base_manager.filter(pk__in=[p.pk for p in made]).update(status="completed")
    return made


def _queries_to_settle(payments: list[Payment]) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert deposits.payments_settle_many(payment_ids=[p.pk for p in payments]) == len(payments)
    return len(captured.captured_queries)


def test_a_settlement_batch_runs_the_same_queries_at_2_and_at_40_payments(usdt: Any) -> None:
    small, large = _completed(2, usdt), _completed(40, usdt)
    assert _queries_to_settle(small) == _queries_to_settle(large)
    assert Transaction.objects.filter(transaction_type="deposit").count() == 42
    assert sum(t.amount_usd for t in Transaction.objects.all()) == Decimal("99.99") * 42
