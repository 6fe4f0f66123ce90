"""The payments due for settlement, kept by PostgreSQL whoever writes (migration 0021).

Completions here are raw SQL as the owner on purpose (a payment completed without being
credited in the same transaction is what a crash, a cut connection or a raw write leaves),
and the application role's own connection tries to hide a due payment from the sweep.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from django.db import connection
from psycopg import errors

from payments.models import SettlementDue, Transaction
from payments.services import deposits
from tests.factories import CurrencyFactory, PaymentFactory, UserFactory
from tests.payments.test_db_guards import app, attempt, owner, payment_in

pytestmark = pytest.mark.django_db(transaction=True)
__all__ = ["app", "owner"]  # fixtures


def complete_unsettled(owner: psycopg.Connection[Any], count: int = 1) -> list[uuid.UUID]:
    """Payments moved to completed by a raw UPDATE, not credited."""
    ids = [PaymentFactory(amount_usd=Decimal("25.00")).pk for _ in range(count)]
    with owner.transaction():
        owner.execute(
            "UPDATE payments_payment SET status = 'completed', completed_at = now() "
            "WHERE id = ANY(%s)",
            [ids],
        )
    return ids


def due() -> set[uuid.UUID]:
    return set(SettlementDue.objects.values_list("payment_id", flat=True))


def test_a_completed_payment_is_due_until_its_deposit_lands(owner):
    (paid,) = complete_unsettled(owner)
    pending = PaymentFactory().pk
    assert due() == {paid}
    assert deposits.unsettled_payment_ids() == [paid]
    assert deposits.payment_settle(payment_id=paid) is not None
    assert due() == set(), "the deposit removed it"
    assert deposits.unsettled_payment_ids() == []
    assert pending not in due()


def test_a_batch_of_deposits_clears_its_payments_in_one_statement(owner):
    ids = complete_unsettled(owner, 12)
    assert due() == set(ids)
    assert deposits.payments_settle_many(payment_ids=ids[:8]) == 8
    assert due() == set(ids[8:])
    assert set(deposits.unsettled_payment_ids()) == set(ids[8:])


def test_a_payment_inserted_completed_is_due_and_one_refunded_before_credit_is_not(owner):
    inserted = payment_in(UserFactory(), CurrencyFactory(), "completed")  # an INSERT
    assert inserted in due()
    with owner.transaction():
        owner.execute("UPDATE payments_payment SET status = 'refunded' WHERE id = %s", [inserted])
    assert inserted not in due(), "no longer completed: nothing to credit"


def test_the_application_role_cannot_hide_a_due_payment(app, owner):
    (paid,) = complete_unsettled(owner)
    other = PaymentFactory().pk
    delete = attempt(app, "DELETE FROM payments_settlementdue WHERE payment_id = %s", [paid])
    assert isinstance(delete, errors.InsufficientPrivilege), delete
    move = attempt(
        app,
        "UPDATE payments_settlementdue SET payment_id = %s WHERE payment_id = %s",
        [other, paid],
    )
    assert isinstance(move, errors.CheckViolation), move
    truncate = attempt(app, "TRUNCATE payments_settlementdue")
    assert isinstance(truncate, errors.InsufficientPrivilege), truncate
    off = attempt(app, "ALTER TABLE payments_payment DISABLE TRIGGER payments_payment_due_status")
    assert isinstance(off, errors.InsufficientPrivilege), off
    assert due() == {paid}
    # A row it adds for a payment that is not due changes nothing the sweep does.
    with app.transaction():
        app.execute("INSERT INTO payments_settlementdue VALUES (%s, now())", [other])
    assert deposits.unsettled_payment_ids() == [paid]
    assert Transaction.objects.filter(payment_id=other).count() == 0


def test_the_rebuild_recomputes_the_rows_after_a_load_with_triggers_off(owner):
    settled, waiting = complete_unsettled(owner, 2)
    deposits.payment_settle(payment_id=settled)
    with owner.transaction():
        owner.execute("DELETE FROM payments_settlementdue")
        owner.execute("INSERT INTO payments_settlementdue VALUES (%s, now())", [settled])
    with connection.cursor() as cursor:
        cursor.execute("SELECT payments_settlement_due_rebuild()")
        (count,) = cursor.fetchone()
    assert count == 1
    assert due() == {waiting}
