"""Reconciliation finds each kind of corruption, records it once, and fixes nothing."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection, connections, transaction
from django.db.backends.sqlite3.base import DatabaseWrapper as SQLiteWrapper
from django.db.models.sql import InsertQuery
from django.utils import timezone

from payments import ledger
from payments.errors import InvalidTransition
from payments.models import (
    Currency,
    LedgerDrift,
    Payment,
    ProviderEvent,
    Receivable,
    Transaction,
    UserBalance,
    WithdrawalRequest,
)
from payments.models.ops import DriftKind
from payments.services import withdrawals
from payments.services.deposits.moves import payment_move
from payments.services.findings import finding_record, finding_resolve
from payments.services.reconcile import collect, examined, ledger_reconcile
from payments.services.reconcile_checks import Finding, usd
from tests.factories import CurrencyFactory, PaymentFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

ADDRESS = "TQn9Y2khEsLJW1ChVWFMSMeRDow5KcbLSE"


@contextmanager
def owner_sql() -> Iterator[Any]:
    """A cursor whose writes skip every trigger (and foreign key): what only the owner can do."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        yield cursor
        cursor.execute("SET LOCAL session_replication_role = DEFAULT")


@dataclass
class World:
    alice: Any
    bob: Any
    paid: Payment  # alice's, completed and credited
    waiting: Payment  # bob's, pending
    expired: Payment  # bob's
    held: WithdrawalRequest  # alice's, pending
    rejected: WithdrawalRequest  # alice's, refunded
    paid_out: WithdrawalRequest  # alice's, completed
    cancelled: WithdrawalRequest  # bob's, refunded: bob's last posting


def pay(user: Any, amount: str) -> Payment:
    payment = PaymentFactory(user=user, amount_usd=Decimal(amount))
    return payment_move(payment_id=payment.pk, status=Payment.PaymentStatus.COMPLETED)


def withdraw(user: Any, currency: Any, amount: str) -> WithdrawalRequest:
    return withdrawals.withdrawal_create(
        user_id=user.pk,
        amount_usd=Decimal(amount),
        currency_id=currency.pk,
        wallet_address=ADDRESS,
    )


@pytest.fixture
def world() -> World:
    """Two users with payments and withdrawals in every state, all made through the services."""
    currency = CurrencyFactory()
    reviewer = UserFactory(is_staff=True)
    reviewer.user_permissions.add(Permission.objects.get(codename="approve_withdrawalrequest"))
    alice, bob = UserFactory(), UserFactory()
    paid = pay(alice, "0.10")
    pay(alice, "0.20")
    pay(alice, "243.34")  # 243.64 in all; as floats, 243.64000000000001
    held = withdraw(alice, currency, "40.00")
    rejected = withdraw(alice, currency, "10.00")
    withdrawals.withdrawal_reject(withdrawal_id=rejected.pk, admin_user=reviewer)
    paid_out = withdraw(alice, currency, "5.00")
    withdrawals.withdrawal_approve(withdrawal_id=paid_out.pk, admin_user=reviewer)
    withdrawals.withdrawal_complete(withdrawal_id=paid_out.pk, transaction_hash="0xpaid")
    expired = PaymentFactory(user=bob, amount_usd=Decimal("15.00"))
    payment_move(payment_id=expired.pk, status=Payment.PaymentStatus.EXPIRED)
    waiting = PaymentFactory(user=bob, amount_usd=Decimal("30.00"))
    pay(bob, "20.00")
    cancelled = withdraw(bob, currency, "7.50")
    withdrawals.withdrawal_cancel(withdrawal_id=cancelled.pk, user=bob)
    return World(alice, bob, paid, waiting, expired, held, rejected, paid_out, cancelled)


def findings() -> list[tuple[str, str, int]]:
    return sorted(LedgerDrift.objects.values_list("kind", "subject", "times_seen"))


def test_a_consistent_ledger_reports_nothing(world):
    assert UserBalance.objects.get(user=world.alice).balance_usd == Decimal("198.64")
    summary = ledger_reconcile()
    assert summary == {
        "drift": 0,
        "by_kind": {},
        "checked": {"users": 2, "postings": 10, "payments": 6, "withdrawals": 4},
        "pass": {
            "mode": "full",  # no previous run of the periodic job left its mark
            "slice": 23,
            "slices": 24,
            "users_in_scope": None,
            "checked_at": summary["pass"]["checked_at"],
        },
    }
    assert not LedgerDrift.objects.exists()


def _user(attr: str) -> Callable[[World], str]:
    return lambda w: f"user:{getattr(w, attr).pk}"


def _withdrawal(attr: str) -> Callable[[World], str]:
    return lambda w: f"withdrawal:{getattr(w, attr).pk}"


def _payment(attr: str) -> Callable[[World], str]:
    return lambda w: f"payment:{getattr(w, attr).pk}"


def _deposit_of(w: World) -> str:
    return f"posting:{Transaction.objects.get(payment=w.paid).pk}"


@dataclass
class Corruption:
    kind: str
    subject: Callable[[World], str]  # named before the corruption is made
    sql: str | tuple[str, ...]
    params: Callable[[World], list[Any]]  # or one list per statement


CORRUPTIONS = {
    "balance": Corruption(
        DriftKind.BALANCE_MISMATCH,
        _user("alice"),
        "UPDATE payments_userbalance SET balance_usd = balance_usd + 0.01 WHERE user_id = %s",
        lambda w: [w.alice.pk],
    ),
    "chain balance_after": Corruption(
        DriftKind.CHAIN_BROKEN,
        lambda w: f"user:{w.alice.pk}:seq:2",
        "UPDATE payments_transaction SET balance_after = balance_after + 1"
        " WHERE user_id = %s AND sequence = 2",
        lambda w: [w.alice.pk],
    ),
    "chain gap": Corruption(
        DriftKind.CHAIN_BROKEN,
        lambda w: f"user:{w.bob.pk}:seq:9",
        "UPDATE payments_transaction SET sequence = 9 WHERE user_id = %s AND sequence = 3",
        lambda w: [w.bob.pk],
    ),
    "deposit for a payment moved back": Corruption(
        DriftKind.DEPOSIT_WITHOUT_COMPLETION,
        _payment("paid"),
        "UPDATE payments_payment SET status = 'confirmed' WHERE id = %s",
        lambda w: [w.paid.pk],
    ),
    "completed long ago, never credited": Corruption(
        DriftKind.UNSETTLED_PAYMENT,
        _payment("waiting"),
        "UPDATE payments_payment SET status = 'completed', completed_at = now() - interval '1 hour'"
        " WHERE id = %s",
        lambda w: [w.waiting.pk],
    ),
    "payment amount changed": Corruption(
        DriftKind.DEPOSIT_MISMATCH,
        _payment("paid"),
        "UPDATE payments_payment SET amount_usd = amount_usd + 0.01 WHERE id = %s",
        lambda w: [w.paid.pk],
    ),
    "payment user changed": Corruption(
        DriftKind.DEPOSIT_MISMATCH,
        _payment("paid"),
        "UPDATE payments_payment SET user_id = %s WHERE id = %s",
        lambda w: [w.bob.pk, w.paid.pk],
    ),
    "deposit unlinked": Corruption(
        DriftKind.DEPOSIT_WITHOUT_PAYMENT,
        _deposit_of,
        "UPDATE payments_transaction SET payment_id = NULL WHERE payment_id = %s",
        lambda w: [w.paid.pk],
    ),
    "deposit for an unknown payment": Corruption(
        DriftKind.DEPOSIT_WITHOUT_PAYMENT,
        _deposit_of,
        "UPDATE payments_transaction SET payment_id = %s WHERE payment_id = %s",
        lambda w: [uuid.uuid4(), w.paid.pk],
    ),
    "hold unlinked": Corruption(
        DriftKind.HOLD_MISSING,
        _withdrawal("held"),
        "UPDATE payments_transaction SET withdrawal_request_id = NULL"
        " WHERE withdrawal_request_id = %s AND transaction_type = 'withdrawal'",
        lambda w: [w.held.pk],
    ),
    "withdrawal amount changed": Corruption(
        DriftKind.HOLD_MISMATCH,
        _withdrawal("held"),
        "UPDATE payments_withdrawalrequest SET amount_usd = amount_usd + 0.01 WHERE id = %s",
        lambda w: [w.held.pk],
    ),
    "withdrawal user changed": Corruption(
        DriftKind.HOLD_MISMATCH,
        _withdrawal("held"),
        "UPDATE payments_withdrawalrequest SET user_id = %s WHERE id = %s",
        lambda w: [w.bob.pk, w.held.pk],
    ),
    "refunded and completed": Corruption(
        DriftKind.REFUND_ON_COMPLETED,
        _withdrawal("rejected"),
        "UPDATE payments_withdrawalrequest SET status = 'completed', transaction_hash = '0xtwice'"
        " WHERE id = %s",
        lambda w: [w.rejected.pk],
    ),
    "rejected long ago, never refunded": Corruption(
        DriftKind.REFUND_MISSING,
        _withdrawal("held"),
        "UPDATE payments_withdrawalrequest SET status = 'rejected',"
        " rejected_at = now() - interval '1 hour' WHERE id = %s",
        lambda w: [w.held.pk],
    ),
    "refunded, then reopened": Corruption(
        DriftKind.REFUND_ON_OPEN,
        _withdrawal("rejected"),
        "UPDATE payments_withdrawalrequest SET status = 'approved' WHERE id = %s",
        lambda w: [w.rejected.pk],
    ),
    # A refund one cent short, with the chain, balance and totals made to agree with it.
    "refund amount changed": Corruption(
        DriftKind.REFUND_MISMATCH,
        _withdrawal("cancelled"),
        (
            "UPDATE payments_transaction SET amount_usd = amount_usd - 0.01,"
            " balance_after = balance_after - 0.01"
            " WHERE withdrawal_request_id = %s AND transaction_type = 'refund'",
            "UPDATE payments_userbalance SET balance_usd = balance_usd - 0.01,"
            " total_withdrawn = total_withdrawn + 0.01 WHERE user_id = %s",
        ),
        lambda w: [[w.cancelled.pk], [w.bob.pk]],
    ),
    "balance row deleted": Corruption(
        DriftKind.BALANCE_ROW_MISSING,
        _user("bob"),
        "DELETE FROM payments_userbalance WHERE user_id = %s",
        lambda w: [w.bob.pk],
    ),
    "total deposited changed": Corruption(
        DriftKind.TOTALS_MISMATCH,
        _user("alice"),
        "UPDATE payments_userbalance SET total_deposited = total_deposited + 0.01"
        " WHERE user_id = %s",
        lambda w: [w.alice.pk],
    ),
    "total withdrawn changed": Corruption(
        DriftKind.TOTALS_MISMATCH,
        _user("alice"),
        "UPDATE payments_userbalance SET total_withdrawn = total_withdrawn - 0.01"
        " WHERE user_id = %s",
        lambda w: [w.alice.pk],
    ),
}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_each_corruption_is_found_once_and_counted_on_every_run(world, name):
    corruption = CORRUPTIONS[name]
    subject = corruption.subject(world)
    statements = corruption.sql if isinstance(corruption.sql, tuple) else (corruption.sql,)
    params = corruption.params(world)
    with owner_sql() as cursor:
        for sql, args in zip(statements, params if len(statements) > 1 else [params], strict=True):
            cursor.execute(sql, args)
    assert ledger_reconcile()["by_kind"] == {corruption.kind: 1}
    assert findings() == [(corruption.kind, subject, 1)]
    summary = ledger_reconcile()
    assert (summary["drift"], summary["by_kind"]) == (1, {corruption.kind: 1})
    assert findings() == [(corruption.kind, subject, 2)]
    assert LedgerDrift.objects.get().resolved_at is None


def test_the_triggers_are_back_on_after_the_owners_sql(world):
    with owner_sql() as cursor:
        cursor.execute("SELECT 1")
    with connection.cursor() as cursor:
        cursor.execute("SHOW session_replication_role")
        assert cursor.fetchone() == ("origin",)


def test_a_money_report_on_a_closed_payment_is_found_once_however_often_it_came(world):
    for n, status in enumerate(["finished", "confirmed"]):
        ProviderEvent.objects.create(
            kind="payment",
            dedupe_key=f"late-{n}",
            provider_object_id="4242",
            provider_status=status,
            payment=world.expired,
            body="{}",
            signature="sig",
            outcome=ProviderEvent.Outcome.STALE,
        )
    assert ledger_reconcile()["by_kind"] == {DriftKind.LATE_PROVIDER_REPORT: 1}
    ledger_reconcile()
    assert findings() == [(DriftKind.LATE_PROVIDER_REPORT, f"payment:{world.expired.pk}", 2)]


def test_the_balance_finding_says_what_was_expected_and_what_is_stored(world):
    with owner_sql() as cursor:
        cursor.execute(
            "UPDATE payments_userbalance SET balance_usd = 7 WHERE user_id = %s", [world.alice.pk]
        )
    ledger_reconcile()
    drift = LedgerDrift.objects.get()
    assert (drift.expected, drift.actual) == ("198.64 USD / 7 postings", "7.00 USD / 7 postings")
    assert drift.user_id == world.alice.pk
    assert UserBalance.objects.get(user=world.alice).balance_usd == Decimal("7.00"), "not fixed"


def test_an_unsettled_payment_waits_out_the_grace_period(world):
    with owner_sql() as cursor:
        cursor.execute(
            "UPDATE payments_payment SET status = 'completed', completed_at = now() WHERE id = %s",
            [world.waiting.pk],
        )
    assert ledger_reconcile()["drift"] == 0, "within the grace period the sweeper has time"


def test_a_missing_refund_waits_out_the_grace_period(world):
    with owner_sql() as cursor:
        cursor.execute(
            "UPDATE payments_withdrawalrequest SET status = 'cancelled', cancelled_at = now()"
            " WHERE id = %s",
            [world.held.pk],
        )
    assert ledger_reconcile()["drift"] == 0


def test_total_withdrawn_is_floored_at_zero_as_the_ledger_floors_it(world):
    """A refund bigger than what was withdrawn so far stops total_withdrawn at 0, step by step;
    what is withdrawn after counts in full. The naive sum would say 0, not 5."""
    currency = CurrencyFactory()
    orphan = withdraw(world.alice, currency, "10.00")
    with owner_sql() as cursor:  # rejected without its refund...
        cursor.execute(
            "UPDATE payments_withdrawalrequest SET status = 'rejected' WHERE id = %s",
            [orphan.pk],
        )
    # ... which is then wrongly paid to bob, who has withdrawn nothing net.
    ledger.post(
        user_id=world.bob.pk,
        kind="refund",
        amount_usd=Decimal("10.00"),
        idempotency_key="wrong-refund",
        withdrawal_request_id=orphan.pk,
    )
    withdraw(world.bob, currency, "5.00")
    assert UserBalance.objects.get(user=world.bob).total_withdrawn == Decimal("5.00")
    assert ledger_reconcile()["by_kind"] == {DriftKind.REFUND_MISMATCH: 1}
    assert findings() == [(DriftKind.REFUND_MISMATCH, f"withdrawal:{orphan.pk}", 1)]


# --- findings -------------------------------------------------------------------------------


def test_a_finding_is_recorded_once_while_open_and_again_after_it_is_resolved():
    operator = UserFactory(is_staff=True)
    first = finding_record(kind=DriftKind.BALANCE_MISMATCH, subject="user:1", actual="a")
    again = finding_record(
        kind=DriftKind.BALANCE_MISMATCH, subject="user:1", actual="b", detail="seen again"
    )
    assert again.pk == first.pk
    assert (again.times_seen, again.actual, again.detail) == (2, "b", "seen again")
    assert again.last_seen_at >= first.last_seen_at
    finding_resolve(finding_id=first.pk, user=operator, notes="adjusted")
    with pytest.raises(InvalidTransition):
        finding_resolve(finding_id=first.pk, user=operator, notes="twice")
    reopened = finding_record(kind=DriftKind.BALANCE_MISMATCH, subject="user:1")
    assert reopened.pk != first.pk
    assert LedgerDrift.objects.filter(resolved_at__isnull=True).count() == 1
    resolved = LedgerDrift.objects.get(pk=first.pk)
    assert (resolved.resolved_by, resolved.resolution_notes) == (operator, "adjusted")


def test_a_finding_fits_its_fields_and_names_a_known_kind():
    finding = finding_record(
        kind=DriftKind.CHAIN_BROKEN, subject="s" * 300, expected="e" * 300, actual="a" * 300
    )
    assert (len(finding.subject), len(finding.expected), len(finding.actual)) == (100, 100, 100)
    assert finding_record(kind=DriftKind.CHAIN_BROKEN, subject="s" * 300).times_seen == 2
    with pytest.raises(ValueError, match="Unknown finding kind"):
        finding_record(kind="nonsense", subject="x")


def _in_thread(target: Callable[[], Any], results: list[Any]) -> threading.Thread:
    def run() -> None:
        try:
            results.append(target())
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            results.append(exc)
        finally:
            connection.close()

    return threading.Thread(target=run)


def test_the_loser_of_an_insert_race_counts_a_sighting_of_the_winners_finding():
    """The winner's insert is not committed yet when the loser looks, so the loser inserts
    too, waits on the unique index, fails, and must fall back to the update."""
    opened = threading.Event()
    results: list[Any] = []

    def winner() -> LedgerDrift:
        with transaction.atomic():
            finding = finding_record(kind=DriftKind.CHAIN_BROKEN, subject="race", actual="w")
            opened.set()
            time.sleep(0.5)
        return finding

    def loser() -> LedgerDrift:
        assert opened.wait(5)
        return finding_record(kind=DriftKind.CHAIN_BROKEN, subject="race", actual="l")

    threads = [_in_thread(winner, results), _in_thread(loser, results)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert all(isinstance(r, LedgerDrift) for r in results), results
    assert {r.pk for r in results} == {LedgerDrift.objects.get().pk}
    assert LedgerDrift.objects.get().times_seen == 2


def test_many_callers_at_once_leave_one_finding_seen_by_each():
    callers = 8
    start = threading.Barrier(callers)
    results: list[Any] = []

    def record() -> LedgerDrift:
        start.wait(5)
        return finding_record(kind=DriftKind.TOTALS_MISMATCH, subject="user:race")

    threads = [_in_thread(record, results) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert all(isinstance(r, LedgerDrift) for r in results), results
    assert LedgerDrift.objects.get().times_seen == callers


# --- SQLite, the embedded demo's database ----------------------------------------------------


@pytest.fixture
def sqlite_db() -> Iterator[Any]:
    """An in-memory SQLite database with the payments tables, beside the PostgreSQL one.

    A connection of its own, not one of ``django.db.connections`` (the test case would refuse
    an alias it was not set up with); rows go in through Django's insert compiler.
    """
    settings = connections.configure_settings(
        {
            "default": dict(connections.settings["default"]),
            "reconcile_sqlite": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
        }
    )["reconcile_sqlite"]
    db = SQLiteWrapper(settings, alias="reconcile_sqlite")
    try:
        with db.schema_editor(atomic=False) as editor:
            for model in (
                get_user_model(),
                Currency,
                Payment,
                WithdrawalRequest,
                Transaction,
                UserBalance,
                ProviderEvent,
                Receivable,
            ):
                editor.create_model(model)
        yield db
    finally:
        db.close()


def insert(db: Any, *objs: Any) -> None:
    """INSERT model instances of one model into ``db``, as the ORM would write them."""
    model = type(objs[0])
    fields = [
        f
        for f in model._meta.concrete_fields
        if not (f.primary_key and getattr(objs[0], f.attname) is None)
    ]
    query = InsertQuery(model)
    query.insert_values(fields, objs)
    query.get_compiler(connection=db).execute_sql()


def test_on_sqlite_sums_are_exact_and_a_cent_of_drift_is_found(sqlite_db):
    now = timezone.now()
    insert(sqlite_db, get_user_model()(id=1, username="a"))
    insert(sqlite_db, Currency(id=1, code="USDTTRC20", name="Tether", token="USDT", network="T"))
    payments = [uuid.uuid4() for _ in range(4)]
    insert(
        sqlite_db,
        *[
            Payment(
                id=payment_id,
                user_id=1,
                currency_id=1,
                amount_usd=Decimal(amount),
                internal_payment_id=f"PAY-{n}",
                status="completed",
                completed_at=now - timedelta(hours=1),
            )
            for n, (payment_id, amount) in enumerate(
                zip(payments, ["0.10", "0.20", "243.34", "12.34"], strict=True)
            )
        ],
    )
    cancelled = WithdrawalRequest(
        user_id=1,
        currency_id=1,
        amount_usd=Decimal("0.30"),
        wallet_address=ADDRESS,
        internal_withdrawal_id="WD-1",
        status="cancelled",
        cancelled_at=now - timedelta(hours=1),
    )
    insert(sqlite_db, cancelled)
    steps = [
        ("deposit", "0.10", "0.10", payments[0], None),
        ("deposit", "0.20", "0.30", payments[1], None),
        ("deposit", "243.34", "243.64", payments[2], None),
        ("withdrawal", "-0.30", "243.34", None, cancelled.pk),
        ("refund", "0.30", "243.64", None, cancelled.pk),
    ]
    insert(
        sqlite_db,
        *[
            Transaction(
                user_id=1,
                transaction_type=kind,
                amount_usd=Decimal(amount),
                balance_after=Decimal(after),
                sequence=sequence,
                payment_id=payment_id,
                withdrawal_request_id=withdrawal_id,
                idempotency_key=f"k{sequence}",
            )
            for sequence, (kind, amount, after, payment_id, withdrawal_id) in enumerate(steps, 1)
        ],
    )
    insert(
        sqlite_db,
        UserBalance(
            user_id=1,
            balance_usd=Decimal("243.64"),
            total_deposited=Decimal("243.64"),
            total_withdrawn=Decimal("0.00"),
            transaction_count=5,
        ),
    )
    with sqlite_db.cursor() as cursor:
        cursor.execute(
            "SELECT SUM(amount_usd) FROM payments_transaction WHERE transaction_type = 'deposit'"
        )
        (naive,) = cursor.fetchone()
    assert naive == 243.64000000000001, "SQLite adds decimals as floats: the false drift of old"

    # Only the fourth payment, completed an hour ago and never credited, is wrong.
    assert collect(db=sqlite_db, now=now) == [
        Finding(
            kind=DriftKind.UNSETTLED_PAYMENT,
            subject=f"payment:{payments[3]}",
            user_id=1,
            payment_id=payments[3],
            expected="deposit of 12.34 USD",
            actual="no deposit",
        )
    ]
    assert examined(db=sqlite_db) == {
        "users": 1,
        "postings": 5,
        "payments": 4,
        "withdrawals": 1,
    }
    with sqlite_db.cursor() as cursor:
        cursor.execute("UPDATE payments_userbalance SET balance_usd = 243.65 WHERE user_id = 1")
    found = {f.kind: f for f in collect(db=sqlite_db, now=now)}
    assert set(found) == {DriftKind.UNSETTLED_PAYMENT, DriftKind.BALANCE_MISMATCH}
    assert (
        found[DriftKind.BALANCE_MISMATCH].expected,
        found[DriftKind.BALANCE_MISMATCH].actual,
    ) == (
        "243.64 USD / 5 postings",
        "243.65 USD / 5 postings",
    )


@pytest.mark.parametrize(
    ("cents", "shown"),
    [
        (0, "0.00"),
        (-5, "-0.05"),
        (24364, "243.64"),
        (Decimal("24364"), "243.64"),
        (10**14, "1000000000000.00"),
    ],
)
def test_cents_read_back_as_exact_usd(cents, shown):
    assert usd(cents) == shown
