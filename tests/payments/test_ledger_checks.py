"""Migration 0018's set-based ledger checks: they refuse what the row checks refused, run a
bounded number of times per statement, and keep index plans whatever the connection's history.

Refusals are tried with raw SQL AS THE APPLICATION ROLE on a psycopg connection of its own;
fixture rows are written by the owner through the ledger.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.db import connection, connections, transaction
from psycopg import errors

from payments import ledger
from payments.models import Transaction, UserBalance
from tests.factories import CurrencyFactory, UserFactory
from tests.payments.test_db_guards import new_withdrawal, payment_in

pytestmark = pytest.mark.django_db(transaction=True)

COLUMNS = (
    "user_id, transaction_type, amount_usd, balance_after, sequence, payment_id, "
    "withdrawal_request_id, description, metadata, idempotency_key, created_at"
)


def _connect(user: str) -> psycopg.Connection[Any]:
    db = connection.settings_dict
    return psycopg.connect(
        host=db["HOST"] or "127.0.0.1",
        port=db["PORT"] or 5432,
        dbname=db["NAME"],
        user=user,
        autocommit=True,
    )


@pytest.fixture
def app() -> Iterator[psycopg.Connection[Any]]:
    conn = _connect(settings.PAYMENTS_DB_APP_ROLE)
    try:
        yield conn
    finally:
        conn.close()


def attempt(conn: psycopg.Connection[Any], sql: str, params: Any = None) -> psycopg.Error | None:
    """Run sql in a transaction that commits if it can: its error, or None (then undone by
    the caller's checks failing: nothing here is meant to be accepted unless said)."""
    try:
        with conn.transaction():
            conn.execute(sql, params)
    except psycopg.Error as exc:
        return exc
    return None


def posting_sql(
    rows: list[tuple[Any, ...]], *, balance: tuple[Any, ...] | None
) -> tuple[str, list]:
    """One statement inserting ``rows`` (kind, amount, balance_after, sequence, payment,
    withdrawal) for one user, and, with ``balance`` (balance, count), updating their balance
    row in the same statement, as the ledger does."""
    values = ", ".join(
        "(%s, %s, %s, %s, %s, %s::uuid, %s::uuid, '', '{}'::jsonb, %s, now())" for _ in rows
    )
    params: list[Any] = []
    for user_id, kind, amount, after, seq, payment, withdrawal in rows:
        params += [user_id, kind, amount, after, seq, payment, withdrawal, f"raw:{uuid.uuid4()}"]
    sql = f"WITH ins AS (INSERT INTO payments_transaction ({COLUMNS}) VALUES {values} RETURNING 1)"
    if balance is None:
        return sql + " SELECT count(*) FROM ins", params
    sql += (
        ", bal AS (UPDATE payments_userbalance SET balance_usd = %s, transaction_count = %s "
        "WHERE user_id = %s RETURNING 1) SELECT (SELECT count(*) FROM ins), (SELECT count(*) "
        "FROM bal)"
    )
    return sql, [*params, balance[0], balance[1], rows[0][0]]


def books(user_id: int) -> tuple[Any, ...]:
    balance = UserBalance.objects.filter(user_id=user_id).values_list(
        "balance_usd", "transaction_count"
    )
    return (list(balance), Transaction.objects.filter(user_id=user_id).count())


@pytest.fixture
def funded() -> Any:
    user = UserFactory()
    ledger.post(
        user_id=user.pk, kind="deposit", amount_usd=Decimal("100.00"), idempotency_key="fund"
    )
    return user


def test_the_set_based_checks_refuse_what_the_row_checks_refused(app, funded):
    u = funded.pk
    currency = CurrencyFactory()
    pending_payment = payment_in(funded, currency, "confirming")
    pending_withdrawal = new_withdrawal(funded, currency).pk  # seq 2, balance 90.00
    bonus = ("bonus", Decimal("5.00"))
    cases = {
        # name: (statement, params, error, message)
        "sequence gap": (
            *posting_sql([(u, *bonus, Decimal("95.00"), 4, None, None)], balance=(95, 4)),
            "ledger chain broken",
        ),
        "sequence reused": (
            *posting_sql([(u, *bonus, Decimal("95.00"), 2, None, None)], balance=(95, 2)),
            "txn_user_sequence_unique",
        ),
        "wrong balance_after": (
            *posting_sql([(u, *bonus, Decimal("96.00"), 3, None, None)], balance=(96, 3)),
            "ledger chain broken",
        ),
        "posting without its balance update": (
            *posting_sql([(u, *bonus, Decimal("95.00"), 3, None, None)], balance=None),
            "differs from its ledger",
        ),
        "balance update without a posting": (
            "UPDATE payments_userbalance SET balance_usd = 95, transaction_count = 3 "
            "WHERE user_id = %s",
            [u],
            "differs from its ledger",
        ),
        "balance update without a posting, count kept": (
            "UPDATE payments_userbalance SET balance_usd = balance_usd + 1 WHERE user_id = %s",
            [u],
            "differs from its ledger",
        ),
        "deposit for a payment not completed": (
            *posting_sql(
                [(u, "deposit", Decimal("25.00"), Decimal("115.00"), 3, pending_payment, None)],
                balance=(115, 3),
            ),
            "only completed payments",
        ),
        "refund for a pending withdrawal": (
            *posting_sql(
                [(u, "refund", Decimal("10.00"), Decimal("100.00"), 3, None, pending_withdrawal)],
                balance=(100, 3),
            ),
            "refund for withdrawal",
        ),
        "many rows, one of them off the chain": (
            *posting_sql(
                [
                    (u, *bonus, Decimal("95.00"), 3, None, None),
                    (u, *bonus, Decimal("99.00"), 4, None, None),
                    (u, *bonus, Decimal("104.00"), 5, None, None),
                ],
                balance=(104, 5),
            ),
            "ledger chain broken",
        ),
        "many rows, balance left behind": (
            *posting_sql(
                [
                    (u, *bonus, Decimal("95.00"), 3, None, None),
                    (u, *bonus, Decimal("100.00"), 4, None, None),
                ],
                balance=(95, 3),
            ),
            "differs from its ledger",
        ),
    }
    before = books(u)
    wrong = []
    for name, (sql, params, message) in cases.items():
        exc = attempt(app, sql, params)
        if not isinstance(exc, errors.IntegrityError) or message not in str(exc):
            wrong.append(f"{name}: {exc!r}")
    assert wrong == []
    assert books(u) == before


def test_a_posting_with_its_balance_in_one_statement_is_accepted(app, funded):
    """The positive control of the test above: the same statement, on the chain, goes in."""
    u = funded.pk
    rows = [
        (u, "bonus", Decimal("5.00"), Decimal("105.00"), 2, None, None),
        (u, "fee", Decimal("-1.50"), Decimal("103.50"), 3, None, None),
    ]
    sql, params = posting_sql(rows, balance=(Decimal("103.50"), 3))
    assert attempt(app, sql, params) is None
    assert books(u) == ([(Decimal("103.50"), 3)], 3)


def _calls() -> dict[str, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT funcname, calls FROM pg_stat_xact_user_functions "
            "WHERE funcname IN ('payments_ledger_chain', 'payments_balance_matches_ledger')"
        )
        return dict(cursor.fetchall())


@pytest.mark.parametrize("size", [20, 200])
def test_the_checks_run_once_a_statement_whatever_the_batch(size):
    users = [UserFactory() for _ in range(10)]
    for user in users:  # balance rows exist: a batch is one insert of postings and balances
        ledger.post(
            user_id=user.pk, kind="bonus", amount_usd=Decimal("1.00"), idempotency_key=f"s{user.pk}"
        )
    postings = [
        ledger.Posting(
            user_id=users[i % 10].pk,
            kind="deposit",
            amount_usd=Decimal("2.50"),
            idempotency_key=f"batch:{i}",
        )
        for i in range(size)
    ]
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL track_functions = 'pl'")
        ledger.post_many(postings)
        calls = _calls()
    # One run of the chain check for the INSERT, one or two of the balance check (the batch's
    # ON CONFLICT creation of balance rows and its UPDATE): not one a posting.
    assert calls["payments_ledger_chain"] == 1
    assert calls["payments_balance_matches_ledger"] <= 2
    assert UserBalance.objects.get(user=users[0]).transaction_count == 1 + size // 10


def _scans_of_the_ledger() -> tuple[int, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT seq_scan, coalesce(idx_scan, 0) FROM pg_stat_xact_user_tables "
            "WHERE relname = 'payments_transaction'"
        )
        return cursor.fetchone()


FILL = f"""
WITH u AS (SELECT id FROM auth_user WHERE username LIKE 'fill-%%'),
ins AS (
    INSERT INTO payments_transaction ({COLUMNS})
    SELECT u.id, 'bonus', 1.00, s, s, NULL, NULL, '', '{{}}'::jsonb, 'fill:' || u.id || ':' || s,
           now()
      FROM u, generate_series(1, %s) s ORDER BY u.id, s
    RETURNING user_id)
UPDATE payments_userbalance b SET balance_usd = %s, transaction_count = %s
  FROM u WHERE b.user_id = u.id AND (SELECT count(*) FROM ins) > 0
"""


def test_trigger_plans_stay_index_scans_after_the_ledger_grows_under_a_warm_connection():
    """A connection that starts on an empty ledger and warms up there keeps the trigger
    functions' plans for its lifetime; they must still probe indexes once the ledger is big.
    The warm-up runs both the one-posting and the batch path's statements past psycopg's
    prepare threshold: a generic plan of a prepared ledger statement, built on the empty ledger,
    would keep a sequential scan the same way (which is why the ledger does not prepare)."""
    alice, bob = UserFactory(), UserFactory()
    fillers = [UserFactory(username=f"fill-{i}") for i in range(100)]
    for user in fillers:
        UserBalance.objects.get_or_create_for_user(user)
    with _connect(connection.settings_dict["USER"] or "postgres") as owner:
        # Statistics of an empty ledger, as right after a deployment's migrate (or a reset).
        owner.execute("VACUUM ANALYZE payments_transaction, payments_userbalance")
    connections.close_all()  # a new connection, on an empty ledger
    for n in range(12):  # past the plan cache's five custom plans, and psycopg's prepare threshold
        ledger.post(
            user_id=alice.pk, kind="bonus", amount_usd=Decimal("1.00"), idempotency_key=f"w{n}"
        )
        ledger.post_many(
            [
                ledger.Posting(
                    user_id=user.pk,
                    kind="bonus",
                    amount_usd=Decimal("1.00"),
                    idempotency_key=f"w{n}:{user.pk}",
                )
                for user in (alice, bob)
            ]
        )
    per_user = 200
    with _connect(connection.settings_dict["USER"] or "postgres") as owner:
        owner.execute(FILL, [per_user, per_user, per_user])  # 20,000 postings, no ANALYZE
    with transaction.atomic():
        # The backend's counts not yet flushed include the warm-up's (rightly sequential) scans
        # of the tiny ledger: count from here.
        seq_before, index_before = _scans_of_the_ledger()
        ledger.post_many(
            [
                ledger.Posting(
                    user_id=user.pk,
                    kind="fee",
                    amount_usd=Decimal("-1.00"),
                    idempotency_key=f"f{user.pk}",
                )
                for user in [alice, *fillers[:20]]
            ]
        )
        ledger.post(
            user_id=alice.pk, kind="bonus", amount_usd=Decimal("1.00"), idempotency_key="after"
        )
        seq_scans, index_scans = _scans_of_the_ledger()
    assert seq_scans - seq_before == 0
    assert index_scans - index_before > 0
    assert Transaction.objects.count() == 12 * 3 + 100 * per_user + 21 + 1
