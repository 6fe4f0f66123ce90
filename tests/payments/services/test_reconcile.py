"""Reconciliation finds each kind of drift, records it once, and fixes nothing."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection, transaction

from payments import ledger
from payments.models import LedgerDrift, Payment, UserBalance
from payments.services.reconcile import ledger_reconcile
from tests.factories import PaymentFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_consistent_ledger_reports_nothing():
    user = UserFactory()
    ledger.post(user_id=user.pk, kind="deposit", amount_usd=Decimal("5.00"), idempotency_key="a")
    assert ledger_reconcile() == {"drift": 0, "by_kind": {}}
    assert not LedgerDrift.objects.exists()


def test_a_balance_changed_behind_the_ledgers_back_is_reported_not_fixed():
    user = UserFactory()
    ledger.post(user_id=user.pk, kind="deposit", amount_usd=Decimal("5.00"), idempotency_key="a")
    # Only a session that switches the deferred check off can do this; reconciliation must
    # still see it.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("ALTER TABLE payments_userbalance DISABLE TRIGGER USER")
        cursor.execute(
            "UPDATE payments_userbalance SET balance_usd = 7 WHERE user_id = %s", [user.pk]
        )
        cursor.execute("ALTER TABLE payments_userbalance ENABLE TRIGGER USER")
    summary = ledger_reconcile()
    assert summary["by_kind"] == {"balance_mismatch": 1}
    drift = LedgerDrift.objects.get()
    assert (drift.subject, drift.expected, drift.actual) == (
        f"user:{user.pk}",
        "5.00 USD / 1 postings",
        "7.00 USD / 1 postings",
    )
    assert UserBalance.objects.get(user=user).balance_usd == Decimal("7.00"), "never fixed"
    ledger_reconcile()
    drift.refresh_from_db()
    assert drift.times_seen == 2
    assert LedgerDrift.objects.count() == 1


def test_a_completed_payment_left_unsettled_is_reported_after_the_grace_period():
    payment = PaymentFactory()
    payment.status = Payment.PaymentStatus.COMPLETED
    payment.save()
    assert ledger_reconcile()["drift"] == 0, "within the grace period the sweeper has time"
    from datetime import timedelta

    from django.utils import timezone

    Payment.objects.filter(pk=payment.pk).update(completed_at=timezone.now() - timedelta(hours=1))
    assert ledger_reconcile()["by_kind"] == {"unsettled_payment": 1}
    assert LedgerDrift.objects.get().payment_id == payment.pk
