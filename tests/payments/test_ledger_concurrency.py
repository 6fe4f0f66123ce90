"""The ledger under concurrency: threads with their own PostgreSQL connections race on it."""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Callable
from decimal import Decimal

import pytest
from django.db import connection, connections
from django.db.models import Sum

from payments import ledger
from payments.errors import InsufficientFunds, InvalidTransition
from payments.models import Transaction, UserBalance, WithdrawalRequest
from payments.services import withdrawals
from tests.factories import CurrencyFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

THREADS = 16


def run_threads(target: Callable[[int], None], count: int = THREADS) -> list[BaseException]:
    """Start count threads at once (each with its own connection) and collect their errors."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def body(index: int) -> None:
        try:
            barrier.wait()
            target(index)
        except BaseException as exc:  # noqa: BLE001 - reported to the test below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    return errors


def assert_ledger_consistent(user_id: int) -> None:
    rows = list(
        Transaction.objects.filter(user_id=user_id)
        .order_by("sequence")
        .values_list("sequence", "amount_usd", "balance_after")
    )
    running = Decimal("0.00")
    for expected_sequence, (sequence, amount, balance_after) in enumerate(rows, start=1):
        assert sequence == expected_sequence, "gap or duplicate in the chain"
        running += amount
        assert balance_after == running, "balance_after does not follow the chain"
        assert balance_after >= 0, "the balance went negative"
    balance = UserBalance.objects.filter(user_id=user_id).first()
    total = Transaction.objects.filter(user_id=user_id).aggregate(s=Sum("amount_usd"))["s"]
    if balance is None:
        assert not rows
        return
    assert balance.balance_usd == (total or Decimal("0.00")) == running
    assert balance.transaction_count == len(rows)


def test_credits_and_debits_racing_on_one_user():
    user = UserFactory()
    ops_per_thread = 40
    accepted: list[tuple[str, Decimal]] = []
    refused: list[str] = []
    lock = threading.Lock()

    def work(index: int) -> None:
        rng = random.Random(index)
        for n in range(ops_per_thread):
            key = f"t{index}:{n}"
            cents = Decimal(rng.randint(1, 5000)) / 100
            if rng.random() < 0.5:
                ledger.post(user_id=user.pk, kind="deposit", amount_usd=cents, idempotency_key=key)
                with lock:
                    accepted.append((key, cents))
            else:
                try:
                    ledger.post(
                        user_id=user.pk, kind="payment", amount_usd=-cents, idempotency_key=key
                    )
                except InsufficientFunds:
                    with lock:
                        refused.append(key)
                else:
                    with lock:
                        accepted.append((key, -cents))

    assert run_threads(work) == []
    assert len(accepted) + len(refused) == THREADS * ops_per_thread
    assert refused, "the race should have refused some debits"
    assert_ledger_consistent(user.pk)
    stored = dict(
        Transaction.objects.filter(user=user).values_list("idempotency_key", "amount_usd")
    )
    assert stored == dict(accepted), "every accepted posting is stored, exactly as accepted"
    assert not Transaction.objects.filter(idempotency_key__in=refused).exists()


def test_many_users_in_parallel():
    users = [UserFactory() for _ in range(24)]
    ops_per_thread = 40

    def work(index: int) -> None:
        rng = random.Random(1000 + index)
        for n in range(ops_per_thread):
            user = rng.choice(users)
            cents = Decimal(rng.randint(1, 3000)) / 100
            kind, sign = rng.choice([("deposit", 1), ("fee", -1), ("withdrawal", -1)])
            with contextlib.suppress(InsufficientFunds):
                ledger.post(
                    user_id=user.pk,
                    kind=kind,
                    amount_usd=sign * cents,
                    idempotency_key=f"m{index}:{n}",
                )

    assert run_threads(work) == []
    for user in users:
        assert_ledger_consistent(user.pk)
    assert Transaction.objects.count() > THREADS * ops_per_thread // 3


def test_the_same_key_racing_posts_once():
    user = UserFactory()
    results: list[int] = []

    def work(index: int) -> None:
        txn = ledger.post(
            user_id=user.pk,
            kind="deposit",
            amount_usd=Decimal("12.34"),
            idempotency_key="payment:same:deposit",
        )
        results.append(txn.pk)

    assert run_threads(work) == []
    assert len(set(results)) == 1
    assert Transaction.objects.filter(user=user).count() == 1
    assert UserBalance.objects.get(user=user).balance_usd == Decimal("12.34")


def test_withdrawal_requests_racing_never_overdraw():
    user = UserFactory()
    currency = CurrencyFactory()
    ledger.post(user_id=user.pk, kind="deposit", amount_usd=Decimal("100.00"), idempotency_key="d")
    outcomes: list[str] = []

    def work(index: int) -> None:
        try:
            withdrawals.withdrawal_create(
                user_id=user.pk,
                amount_usd=Decimal("10.00"),
                currency_id=currency.pk,
                wallet_address=f"TAddress{index}",
            )
            outcomes.append("ok")
        except InsufficientFunds:
            outcomes.append("refused")

    assert run_threads(work) == []
    assert outcomes.count("ok") == 10
    assert outcomes.count("refused") == THREADS - 10
    assert WithdrawalRequest.objects.filter(user=user).count() == 10, "a refused hold left a row"
    assert UserBalance.objects.get(user=user).balance_usd == Decimal("0.00")
    assert_ledger_consistent(user.pk)


def test_reject_and_cancel_racing_refund_once():
    from django.contrib.auth.models import Permission

    user = UserFactory()
    admin = UserFactory(is_staff=True)
    admin.user_permissions.add(Permission.objects.get(codename="approve_withdrawalrequest"))
    currency = CurrencyFactory()
    ledger.post(user_id=user.pk, kind="deposit", amount_usd=Decimal("50.00"), idempotency_key="d")
    withdrawal = withdrawals.withdrawal_create(
        user_id=user.pk, amount_usd=Decimal("50.00"), currency_id=currency.pk, wallet_address="T1"
    )

    refused: list[str] = []

    def work(index: int) -> None:
        try:
            if index % 2:
                withdrawals.withdrawal_cancel(withdrawal_id=withdrawal.pk, user=user)
            else:
                withdrawals.withdrawal_reject(withdrawal_id=withdrawal.pk, admin_user=admin)
        except InvalidTransition:
            refused.append("late")

    assert run_threads(work) == []
    assert len(refused) == THREADS - 1
    refunds = Transaction.objects.filter(withdrawal_request=withdrawal, transaction_type="refund")
    assert refunds.count() == 1
    assert UserBalance.objects.get(user=user).balance_usd == Decimal("50.00")
    assert_ledger_consistent(user.pk)
    assert connection.vendor == "postgresql"


def test_overlapping_settlement_batches_and_single_settles_credit_once():
    from django.utils import timezone

    from payments.models import Payment
    from payments.services.deposits import payment_settle, payments_settle_many

    currency = CurrencyFactory()
    users = [UserFactory() for _ in range(10)]
    payments = Payment.objects.bulk_create(
        Payment(
            user=users[i % 10],
            currency=currency,
            amount_usd=Decimal("1.25"),
            internal_payment_id=f"PAY_RACE_{i:04d}",
            status=Payment.PaymentStatus.COMPLETED,
            completed_at=timezone.now(),
        )
        for i in range(300)
    )
    ids = [p.pk for p in payments]

    def work(index: int) -> None:
        rng = random.Random(index)
        if index % 4 == 0:
            for payment_id in rng.sample(ids, 60):
                payment_settle(payment_id=payment_id)
        else:
            shuffled = rng.sample(ids, len(ids))
            for start in range(0, len(shuffled), 50):
                payments_settle_many(payment_ids=shuffled[start : start + 50])

    assert run_threads(work) == []
    deposits = Transaction.objects.filter(transaction_type="deposit")
    assert deposits.count() == 300
    assert deposits.values("payment_id").distinct().count() == 300
    for user in users:
        assert_ledger_consistent(user.pk)
        assert UserBalance.objects.get(user=user).balance_usd == Decimal("37.50")
