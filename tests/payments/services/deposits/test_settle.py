"""The settlement routine: a batch costs the same statements whatever its size."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from payments import ledger, ledger_pg
from payments.errors import IdempotencyConflict
from payments.models import Payment, Transaction
from payments.services import deposits
from payments.services.deposits import settle
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


# --- one payment per transaction ----------------------------------------------------------


def _statements(call: Any) -> tuple[Any, list[str]]:
    with CaptureQueriesContext(connection) as captured:
        result = call()
    return result, [" ".join(q["sql"].split()) for q in captured.captured_queries]


def _balance_locks(statements: list[str]) -> list[str]:
    """Statements that lock balance rows on their own (not with the payment)."""
    return [s for s in statements if s.startswith("SELECT user_id, balance_usd")]


def _endpoint_checks(statements: list[str]) -> list[str]:
    """Statements of their own asking whether a webhook endpoint is active (the lock asks)."""
    return [s for s in statements if s.startswith("SELECT 1 FROM payments_webhookendpoint")]


def test_payment_settle_locks_the_payment_and_its_balance_in_one_statement(usdt: Any) -> None:
    first, second = _completed(2, usdt)
    # The user's first credit: no balance row yet, so the ledger creates and locks it.
    deposit, _ = _statements(lambda: deposits.payment_settle(payment_id=first.pk))
    assert deposit is not None
    assert deposit.balance_after == Decimal("99.99")
    deposit, statements = _statements(lambda: deposits.payment_settle(payment_id=second.pk))
    assert deposit is not None
    assert deposit.balance_after == Decimal("199.98")
    assert deposit.sequence == 2
    assert _balance_locks(statements) == []
    assert _endpoint_checks(statements) == []
    lock = next(s for s in statements if "FOR UPDATE" in s)
    assert "JOIN payments_userbalance" in lock
    assert "FOR UPDATE OF p, b" in lock
    # A replay posts nothing and returns the stored deposit.
    again = deposits.payment_settle(payment_id=second.pk)
    assert again is not None
    assert again.pk == deposit.pk
    assert Transaction.objects.filter(transaction_type="deposit").count() == 2


def test_a_finished_report_locks_payment_currency_and_balance_in_one_statement(
    usdt: Any,
) -> None:
    from payments.services.providers.nowpayments.types import ProviderPayment

    first = _completed(1, usdt)[0]
    # The same user, so the second report finds a balance row to lock with its payment.
    second = PaymentFactory(currency=usdt, user=first.user)
    Payment._base_manager.filter(pk=second.pk).update(
        provider_payment_id="7700001", pay_amount=Decimal("99.99")
    )
    deposits.payment_settle(payment_id=first.pk)
    report = ProviderPayment.from_dict(
        {
            "payment_id": 7700001,
            "payment_status": "finished",
            "pay_address": "TX",
            "price_amount": 99.99,
            "price_currency": "usd",
            "pay_amount": 99.99,
            "actually_paid": 99.99,
            "pay_currency": "usdttrc20",
            "order_id": second.internal_payment_id,
            "payin_hash": 'h"a\\sh{1}',
        }
    )
    result, statements = _statements(
        lambda: deposits.payment_apply_report(report=report, source="ipn")
    )
    assert result.outcome == "applied"
    assert result.status == "completed"
    assert result.deposit is not None
    assert result.deposit.balance_after == Decimal("199.98")
    assert _balance_locks(statements) == []
    assert _endpoint_checks(statements) == []
    lock = next(s for s in statements if "FOR UPDATE" in s)
    assert "JOIN payments_currency" in lock
    assert "FOR UPDATE OF p, b" in lock
    stored = Payment.objects.get(pk=second.pk)
    assert stored.status == "completed"
    assert stored.credited_usd == Decimal("99.99")
    assert stored.transaction_hash == 'h"a\\sh{1}'  # through the array parameters intact
    assert stored.provider_data["payment_status"] == "finished"
    # The same report again changes nothing and credits nothing more.
    again = deposits.payment_apply_report(report=report, source="ipn")
    assert again.outcome == "unchanged"
    assert Transaction.objects.filter(payment=second, transaction_type="deposit").count() == 1


@pytest.mark.parametrize(
    ("count", "refusal"),
    [(0, IdempotencyConflict), (1, IntegrityError)],
    ids=["sequence-taken", "chain-broken"],
)
def test_a_balance_the_caller_says_it_locked_is_still_checked_by_the_database(
    usdt: Any, count: int, refusal: type[Exception]
) -> None:
    """The ledger plans from a caller's locked balance; a stale one is refused, not posted:
    its sequence is taken (the one statement writes nothing), or it does not continue the
    chain (the database's trigger)."""
    first, second = _completed(2, usdt)
    deposits.payment_settle(payment_id=first.pk)
    stale = ledger.Balance(Decimal("0.00"), count, Decimal("0.00"), Decimal("0.00"))
    with pytest.raises(refusal), transaction.atomic():
        ledger.post_batch(
            [deposits.deposit_posting(Payment.objects.get(pk=second.pk))],
            locked={second.user_id: stale},
        )
    assert Transaction.objects.filter(payment=second).count() == 0
    assert deposits.payment_settle(payment_id=second.pk) is not None


# --- plans ---------------------------------------------------------------------------------


def _payment_scans(sql: str, params: list[Any]) -> list[str]:
    """How the plan ``sql`` runs with reaches payments_payment: the payment indexes it reads
    (directly or through a bitmap), or "Seq Scan"."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
        plan = cursor.fetchone()[0][0]["Plan"]
    scans, todo = [], [plan]
    while todo:
        node = todo.pop()
        todo += node.get("Plans", [])
        index = node.get("Index Name", "")
        if index.startswith(("payment_", "payments_payment_")):
            scans.append(index)
        elif node["Node Type"] == "Seq Scan" and node["Relation Name"] == "payments_payment":
            scans.append("Seq Scan")
    return sorted(set(scans))


def test_the_settle_locks_find_payments_by_primary_key_whatever_the_statistics_say(
    usdt: Any,
) -> None:
    # Statistics taken while every payment was pending, then all completed (as a ledger whose
    # ANALYZE is behind): 'completed' looks rare, and a lock that also filtered on the status
    # was planned as a scan of every completed payment, growing with the ledger.
    user = UserFactory()
    made = Payment._base_manager.bulk_create(
        [
            Payment(
                user=user,
                currency=usdt,
                amount_usd=Decimal("10.00"),
                internal_payment_id=f"PAY_PLAN_{i:05d}",
                status="pending",
            )
            for i in range(3000)
        ]
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE payments_payment")
    Payment._base_manager.update(status="completed")
    one = made[1234].pk
    assert _payment_scans(settle._LOCK_ONE_WITH_BALANCE, [one]) == ["payments_payment_pkey"]
    with_array = [ledger_pg.array_literal([p.pk for p in made[:20]])]
    assert _payment_scans(settle._LOCK_MANY, with_array) == ["payments_payment_pkey"]
    # Still exactly the completed payments get their deposit.
    assert deposits.payment_settle(payment_id=one) is not None
    assert deposits.payments_settle_many(payment_ids=[p.pk for p in made[:5]]) == 5
