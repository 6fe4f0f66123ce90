"""Model instances from fixed statements are the ones the ORM builds."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection

from payments import ledger_pg, rowsql
from payments.bulk import update_rows
from payments.models import Currency, Payment
from tests.factories import PaymentFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _fields(instance: Any) -> dict[str, Any]:
    return {f.attname: getattr(instance, f.attname) for f in type(instance)._meta.concrete_fields}


def test_a_payment_built_from_its_row_equals_the_orms(usdt: Any) -> None:
    made = PaymentFactory(currency=usdt)
    Payment._base_manager.filter(pk=made.pk).update(
        status="confirming",
        pay_amount=Decimal("99.990000000000000001"),
        provider_data={"nested": {"list": [1, "two", None]}, "quote": 'a"b\\c'},
    )
    sql = (
        f"SELECT {rowsql.select_list(Payment, 'p')}, {rowsql.select_list(Currency, 'c')} "
        "FROM payments_payment p JOIN payments_currency c ON c.id = p.currency_id WHERE p.id = %s"
    )
    row = ledger_pg.run(sql, [made.pk])[0]
    built = rowsql.build(Payment, row[: rowsql.width(Payment)])
    currency = rowsql.build(Currency, row[rowsql.width(Payment) :])
    orm = Payment.objects.get(pk=made.pk)
    assert _fields(built) == _fields(orm)
    assert built.provider_data == {"nested": {"list": [1, "two", None]}, "quote": 'a"b\\c'}
    assert _fields(currency) == _fields(orm.currency)
    assert built._state.adding is False
    assert built._state.db == connection.alias
    # What a later save() moves from is the status read, as for an ORM read.
    assert built._loaded_status == "confirming"


def test_update_rows_sends_any_text_intact(usdt: Any) -> None:
    payments = [PaymentFactory(currency=usdt) for _ in range(3)]
    texts = ['quo"te', "back\\slash", "{braces},comma"]
    update_rows(
        table="payments_payment",
        key=("id", "uuid"),
        columns=[
            ("transaction_hash", "varchar"),
            ("provider_data", "jsonb"),
            ("pay_amount", "numeric"),
        ],
        rows=[
            (p.pk, text, json.dumps({"t": text}), None)
            for p, text in zip(payments, texts, strict=True)
        ],
    )
    for p, text in zip(payments, texts, strict=True):
        stored = Payment.objects.get(pk=p.pk)
        assert stored.transaction_hash == text
        assert stored.provider_data == {"t": text}
        assert stored.pay_amount is None
