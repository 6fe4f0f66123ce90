"""payments.ledger and the database rules behind it, each shown to refuse its violation."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone

from payments import ledger
from payments.errors import ChainBroken, IdempotencyConflict, InsufficientFunds, InvalidAmount
from payments.models import Payment, Transaction, UserBalance
from tests.factories import PaymentFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def deposit(user, amount: str, key: str) -> Transaction:
    return ledger.post(
        user_id=user.pk, kind="deposit", amount_usd=Decimal(amount), idempotency_key=key
    )


def debit(user, amount: str, key: str, kind: str = "payment") -> Transaction:
    return ledger.post(user_id=user.pk, kind=kind, amount_usd=-Decimal(amount), idempotency_key=key)


def raw(sql: str, params: list | None = None) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params or [])


def snapshot(user) -> tuple:
    balance = UserBalance.objects.filter(user=user).values_list("balance_usd", "transaction_count")
    return (list(balance), Transaction.objects.filter(user=user).count())


# --- 1. append-only ---------------------------------------------------------------------


def test_raw_update_delete_truncate_are_rejected():
    user = UserFactory()
    txn = deposit(user, "10.00", "k1")
    for sql in (
        "UPDATE payments_transaction SET amount_usd = 99 WHERE id = %s",
        "UPDATE payments_transaction SET description = 'edited' WHERE id = %s",
        "DELETE FROM payments_transaction WHERE id = %s",
    ):
        with pytest.raises(DatabaseError, match="append-only"):
            raw(sql, [txn.pk])
    with pytest.raises(DatabaseError, match="append-only"):
        raw("TRUNCATE payments_transaction CASCADE")
    txn_after = Transaction.objects.get(pk=txn.pk)
    assert (txn_after.amount_usd, txn_after.description) == (Decimal("10.00"), "")


def test_orm_cannot_bulk_create_around_the_ledger():
    user = UserFactory()
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        Transaction.objects.bulk_create(
            [Transaction(user=user, transaction_type="bonus", amount_usd=Decimal("5.00"))]
        )
    assert Transaction.objects.count() == 0


# --- 2. exactly once --------------------------------------------------------------------


def test_replay_returns_the_same_row_and_changes_nothing():
    user = UserFactory()
    first = deposit(user, "10.00", "payment:1:deposit")
    again = deposit(user, "10.00", "payment:1:deposit")
    assert again.pk == first.pk
    assert snapshot(user) == ([(Decimal("10.00"), 1)], 1)


def test_replay_with_other_terms_is_an_error():
    user = UserFactory()
    deposit(user, "10.00", "k")
    with pytest.raises(IdempotencyConflict):
        deposit(user, "10.01", "k")
    with pytest.raises(IdempotencyConflict):
        deposit(UserFactory(), "10.00", "k")
    assert snapshot(user) == ([(Decimal("10.00"), 1)], 1)


def test_duplicate_key_rejected_by_the_database():
    user = UserFactory()
    deposit(user, "10.00", "dup")
    with pytest.raises(IntegrityError):
        raw(
            "INSERT INTO payments_transaction (user_id, transaction_type, amount_usd, "
            "balance_after, sequence, description, metadata, idempotency_key, created_at) "
            "VALUES (%s, 'bonus', 1, 11, 2, '', '{}', 'dup', now())",
            [user.pk],
        )


def test_one_deposit_per_payment_even_under_another_key():
    payment = PaymentFactory(status=Payment.PaymentStatus.COMPLETED)
    ledger.post(
        user_id=payment.user_id,
        kind="deposit",
        amount_usd=payment.amount_usd,
        idempotency_key=f"payment:{payment.pk}:deposit",
        payment_id=payment.pk,
    )
    with pytest.raises(IdempotencyConflict):
        ledger.post(
            user_id=payment.user_id,
            kind="deposit",
            amount_usd=payment.amount_usd,
            idempotency_key="another-key",
            payment_id=payment.pk,
        )
    assert Transaction.objects.filter(payment=payment).count() == 1


# --- 3. chain ---------------------------------------------------------------------------


def test_chain_sequence_and_balance_after():
    user = UserFactory()
    deposit(user, "10.00", "a")
    debit(user, "3.50", "b")
    deposit(user, "0.01", "c")
    rows = list(
        Transaction.objects.filter(user=user)
        .order_by("sequence")
        .values_list("sequence", "amount_usd", "balance_after")
    )
    assert rows == [
        (1, Decimal("10.00"), Decimal("10.00")),
        (2, Decimal("-3.50"), Decimal("6.50")),
        (3, Decimal("0.01"), Decimal("6.51")),
    ]


def test_orm_create_with_a_balance_after_off_the_chain_is_refused():
    user = UserFactory()
    deposit(user, "100.00", "a")
    with pytest.raises(ChainBroken):
        Transaction.objects.create(
            user=user,
            transaction_type=Transaction.TransactionType.DEPOSIT,
            amount_usd=Decimal("99.99"),
            balance_after=Decimal("99.99"),
        )
    assert snapshot(user) == ([(Decimal("100.00"), 1)], 1)


@pytest.mark.parametrize(
    ("sequence", "balance_after"),
    [(3, "15.00"), (2, "14.00"), (1, "5.00")],
    ids=["gap", "wrong-balance", "reused-sequence"],
)
def test_raw_insert_off_the_chain_is_rejected(sequence, balance_after):
    user = UserFactory()
    deposit(user, "10.00", "a")
    with pytest.raises((DatabaseError, IntegrityError)):
        raw(
            "INSERT INTO payments_transaction (user_id, transaction_type, amount_usd, "
            "balance_after, sequence, description, metadata, idempotency_key, created_at) "
            "VALUES (%s, 'bonus', 5, %s, %s, '', '{}', 'raw', now())",
            [user.pk, Decimal(balance_after), sequence],
        )
    assert snapshot(user) == ([(Decimal("10.00"), 1)], 1)


def test_raw_insert_on_the_chain_without_the_balance_is_rejected_at_commit():
    user = UserFactory()
    deposit(user, "10.00", "a")
    with pytest.raises(DatabaseError, match="differs from its ledger"):
        raw(
            "INSERT INTO payments_transaction (user_id, transaction_type, amount_usd, "
            "balance_after, sequence, description, metadata, idempotency_key, created_at) "
            "VALUES (%s, 'bonus', 5, 15, 2, '', '{}', 'raw', now())",
            [user.pk],
        )
    assert snapshot(user) == ([(Decimal("10.00"), 1)], 1)


# --- 4. never negative ------------------------------------------------------------------


def test_overdraft_raises_and_writes_nothing():
    user = UserFactory()
    deposit(user, "10.00", "a")
    with pytest.raises(InsufficientFunds):
        debit(user, "10.01", "b")
    assert snapshot(user) == ([(Decimal("10.00"), 1)], 1)
    assert not Transaction.objects.filter(idempotency_key="b").exists()


def test_debit_for_a_user_without_a_balance_writes_nothing():
    user = UserFactory()
    with pytest.raises(InsufficientFunds):
        debit(user, "0.01", "x")
    assert snapshot(user) == ([], 0)


def test_raw_negative_balance_rejected():
    user = UserFactory()
    deposit(user, "10.00", "a")
    with pytest.raises(IntegrityError):
        raw("UPDATE payments_userbalance SET balance_usd = -1 WHERE user_id = %s", [user.pk])
    with pytest.raises(IntegrityError):
        raw(
            "INSERT INTO payments_transaction (user_id, transaction_type, amount_usd, "
            "balance_after, sequence, description, metadata, idempotency_key, created_at) "
            "VALUES (%s, 'adjustment', -11, -1, 2, '', '{}', 'neg', now())",
            [user.pk],
        )
    assert snapshot(user) == ([(Decimal("10.00"), 1)], 1)


@pytest.mark.parametrize(
    ("kind", "amount"),
    [
        ("deposit", "-1.00"),
        ("withdrawal", "1.00"),
        ("fee", "0.00"),
        ("bonus", "0.001"),
        ("adjustment", "NaN"),
        ("bonus", "1e30"),
        ("bonus", "1000000000000.01"),
        ("nonsense", "1.00"),
    ],
)
def test_invalid_amounts_and_signs_are_refused(kind, amount):
    user = UserFactory()
    with pytest.raises(InvalidAmount):
        ledger.post(user_id=user.pk, kind=kind, amount_usd=Decimal(amount), idempotency_key="x")
    assert snapshot(user) == ([], 0)


def test_float_amount_is_refused():
    user = UserFactory()
    with pytest.raises(InvalidAmount):
        ledger.post(user_id=user.pk, kind="bonus", amount_usd=1.5, idempotency_key="f")


# --- 5. balance is the ledger -----------------------------------------------------------


def test_raw_balance_edit_that_disagrees_with_the_ledger_is_rejected():
    user = UserFactory()
    deposit(user, "10.00", "a")
    with pytest.raises(DatabaseError, match="differs from its ledger"):
        raw("UPDATE payments_userbalance SET balance_usd = 1000 WHERE user_id = %s", [user.pk])
    assert snapshot(user) == ([(Decimal("10.00"), 1)], 1)


def test_orm_balance_edit_is_refused():
    from django.core.exceptions import ValidationError

    user = UserFactory()
    deposit(user, "10.00", "a")
    balance = UserBalance.objects.get(user=user)
    balance.balance_usd = Decimal("1000.00")
    with pytest.raises(ValidationError):
        balance.save()
    with pytest.raises(ValidationError):
        balance.delete()


def test_totals_follow_deposits_withdrawals_and_refunds():
    user = UserFactory()
    deposit(user, "100.00", "a")
    debit(user, "40.00", "b", kind="withdrawal")
    debit(user, "5.00", "c", kind="fee")
    balance = UserBalance.objects.get(user=user)
    assert (balance.balance_usd, balance.total_deposited, balance.total_withdrawn) == (
        Decimal("55.00"),
        Decimal("100.00"),
        Decimal("40.00"),
    )


# --- 6. settlement ----------------------------------------------------------------------


def test_deposit_for_a_payment_that_is_not_completed_is_rejected_by_the_database():
    payment = PaymentFactory(status=Payment.PaymentStatus.CONFIRMING)
    with pytest.raises(DatabaseError, match="only completed payments"):
        ledger.post(
            user_id=payment.user_id,
            kind="deposit",
            amount_usd=payment.amount_usd,
            idempotency_key=f"payment:{payment.pk}:deposit",
            payment_id=payment.pk,
        )
    assert snapshot(payment.user) == ([], 0)


def test_completed_payment_keeps_its_status_even_in_raw_sql():
    payment = PaymentFactory()
    payment.status = Payment.PaymentStatus.COMPLETED
    payment.completed_at = timezone.now()
    payment.save()
    with pytest.raises(DatabaseError, match=r"completed.*pending"):
        raw("UPDATE payments_payment SET status = 'pending' WHERE id = %s", [payment.pk])
    payment.refresh_from_db()
    assert payment.status == "completed"


# --- deleting -----------------------------------------------------------------------------


def test_deleting_a_user_with_ledger_rows_is_refused():
    from django.db.models import ProtectedError

    user = UserFactory()
    deposit(user, "1.00", "a")
    with pytest.raises(ProtectedError):
        user.delete()
    assert Transaction.objects.filter(user=user).count() == 1


# --- batches ------------------------------------------------------------------------------


def posting(user, amount: str, key: str, kind: str = "deposit") -> ledger.Posting:
    return ledger.Posting(
        user_id=user.pk, kind=kind, amount_usd=Decimal(amount), idempotency_key=key
    )


def test_a_batch_chains_several_postings_of_one_user():
    alice, bob = UserFactory(), UserFactory()
    deposit(alice, "1.00", "first")
    rows = ledger.post_many(
        [
            posting(alice, "2.00", "a1"),
            posting(bob, "5.00", "b1"),
            posting(alice, "-0.50", "a2", kind="fee"),
            posting(alice, "3.00", "a3"),
        ]
    )
    assert [(r.user_id, r.sequence, r.balance_after) for r in rows] == [
        (alice.pk, 2, Decimal("3.00")),
        (bob.pk, 1, Decimal("5.00")),
        (alice.pk, 3, Decimal("2.50")),
        (alice.pk, 4, Decimal("5.50")),
    ]
    assert snapshot(alice) == ([(Decimal("5.50"), 4)], 4)
    assert UserBalance.objects.get(user=alice).total_deposited == Decimal("6.00")


def test_a_replayed_batch_changes_nothing():
    user = UserFactory()
    batch = [posting(user, "2.00", "x1"), posting(user, "3.00", "x2")]
    first = ledger.post_many(batch)
    again = ledger.post_many(batch)
    assert [r.pk for r in again] == [r.pk for r in first]
    assert snapshot(user) == ([(Decimal("5.00"), 2)], 2)


def test_a_batch_is_all_or_nothing():
    user = UserFactory()
    deposit(user, "1.00", "seed")
    with pytest.raises(InsufficientFunds):
        ledger.post_many([posting(user, "5.00", "ok"), posting(user, "-9.00", "too-much", "fee")])
    with pytest.raises(IdempotencyConflict):
        ledger.post_many([posting(user, "5.00", "ok2"), posting(user, "7.00", "seed")])
    with pytest.raises(IdempotencyConflict):
        ledger.post_many([posting(user, "5.00", "twice"), posting(user, "5.00", "twice")])
    assert snapshot(user) == ([(Decimal("1.00"), 1)], 1)


# --- the statements' array parameters --------------------------------------------------------

AWKWARD_TEXTS = [
    'say "hi"',
    'back\\slash and \\"both\\"',
    "{braces}, commas, and spaces  ",
    "NULL",
    "",
    "ünïcødé ✓ 日本",
    "trailing backslash \\",
]


def test_array_parameters_reach_postgresql_exactly_as_given():
    from payments import ledger_pg

    rows = ledger_pg.run(
        "SELECT t, t IS NULL FROM unnest(%s::text[]) WITH ORDINALITY AS a(t, n) ORDER BY n",
        [[*AWKWARD_TEXTS, None]],
    )
    assert [r[0] for r in rows] == [*AWKWARD_TEXTS, None]
    assert [r[1] for r in rows] == [False] * len(AWKWARD_TEXTS) + [True]
    numbers = ledger_pg.run(
        "SELECT sum(x), count(x), count(*) FROM unnest(%s::numeric[]) AS x",
        [[Decimal("0.01"), Decimal("-12.50"), Decimal("1E+2"), None]],
    )
    assert numbers == [(Decimal("87.51"), 3, 4)]


def test_a_posting_keeps_awkward_text_and_metadata_through_a_batch():
    user = UserFactory()
    postings = [
        ledger.Posting(
            user_id=user.pk,
            kind="deposit",
            amount_usd=Decimal("1.00"),
            idempotency_key=f'key "{i}" \\ {{x}}',
            description=text,
            metadata={"note": text, "n": i},
        )
        for i, text in enumerate(AWKWARD_TEXTS)
    ]
    ledger.post_many(postings)
    stored = Transaction.objects.filter(user=user).order_by("sequence")
    assert [(t.idempotency_key, t.description, t.metadata) for t in stored] == [
        (p.idempotency_key, p.description, p.metadata) for p in postings
    ]
    assert ledger.post_many(postings)[0].pk == stored[0].pk  # the replay finds them by key
