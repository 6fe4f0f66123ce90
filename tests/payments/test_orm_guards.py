"""The ORM refuses the bulk writes that would skip an aggregate's rules, and changes nothing."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from payments import ledger
from payments.models import Payment, UserBalance, WithdrawalRequest
from payments.services import withdrawals
from tests.factories import PaymentFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _funded_withdrawal(usdt: Any) -> WithdrawalRequest:
    user = UserFactory()
    ledger.post(
        user_id=user.pk, kind="bonus", amount_usd=Decimal("50.00"), idempotency_key=f"b{user.pk}"
    )
    return withdrawals.withdrawal_create(
        user_id=user.pk, amount_usd=Decimal("20.00"), currency_id=usdt.pk, wallet_address="TAddr"
    )


def test_withdrawals_cannot_be_bulk_created_updated_or_deleted(usdt: Any) -> None:
    withdrawal = _funded_withdrawal(usdt)
    with pytest.raises(ValidationError):
        WithdrawalRequest.objects.bulk_create(
            [
                WithdrawalRequest(
                    user_id=withdrawal.user_id,
                    amount_usd=Decimal("5.00"),
                    currency=usdt,
                    wallet_address="TAddr",
                )
            ]
        )
    with pytest.raises(ValidationError):
        WithdrawalRequest.objects.filter(pk=withdrawal.pk).update(status="approved")
    with pytest.raises(ValidationError):
        WithdrawalRequest.objects.filter(pk=withdrawal.pk).delete()
    assert list(WithdrawalRequest.objects.values_list("status", flat=True)) == ["pending"]


def test_a_withdrawal_written_past_the_orm_without_its_hold_does_not_commit(usdt: Any) -> None:
    user = UserFactory()
    with pytest.raises(IntegrityError, match="hold"), transaction.atomic():
        WithdrawalRequest._base_manager.bulk_create(
            [
                WithdrawalRequest(
                    user=user,
                    internal_withdrawal_id="WD_bypass",
                    amount_usd=Decimal("5.00"),
                    currency=usdt,
                    wallet_address="TAddr",
                )
            ]
        )
    assert not WithdrawalRequest.objects.exists()


def test_payment_status_and_terms_cannot_be_bulk_updated(usdt: Any) -> None:
    payment = PaymentFactory(currency=usdt)
    for change in ({"status": "completed"}, {"amount_usd": Decimal("10000.00")}):
        with pytest.raises(ValidationError):
            Payment.objects.filter(pk=payment.pk).update(**change)
    with pytest.raises(ValidationError):
        Payment.objects.filter(pk=payment.pk).delete()
    payment.refresh_from_db()
    assert (payment.status, payment.amount_usd) == ("pending", Decimal("99.99"))


def test_an_orm_edit_of_a_payments_amount_or_user_is_refused(usdt: Any) -> None:
    payment = PaymentFactory(currency=usdt)
    payment.amount_usd = Decimal("10000.00")
    with pytest.raises(ValidationError, match="amount_usd"):
        payment.save()
    payment.refresh_from_db()
    payment.user = UserFactory()
    with pytest.raises(ValidationError, match="user_id"):
        payment.save()
    assert Payment.objects.get(pk=payment.pk).amount_usd == Decimal("99.99")


def test_balances_cannot_be_bulk_updated_deleted_or_born_funded() -> None:
    user = UserFactory()
    ledger.post(user_id=user.pk, kind="bonus", amount_usd=Decimal("5.00"), idempotency_key="x")
    with pytest.raises(ValidationError):
        UserBalance.objects.filter(user=user).update(balance_usd=Decimal("1000.00"))
    with pytest.raises(ValidationError):
        UserBalance.objects.filter(user=user).delete()
    with pytest.raises(ValidationError):
        UserBalance.objects.bulk_create([UserBalance(user=UserFactory(), balance_usd=Decimal(9))])
    assert UserBalance.objects.get(user=user).balance_usd == Decimal("5.00")
