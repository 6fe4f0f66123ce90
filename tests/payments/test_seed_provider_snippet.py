"""The seed's provider snippet, run as written on real payments, for every NowPayments status."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from payments.models import Payment, Transaction, UserBalance
from payments.services import deposits
from payments.services.deposits.statuses import PAYMENT_STATUS_MAP
from tests.factories import UserFactory
from tests.payments.services.providers.nowpayments.test_provider import SEED_SNIPPET

pytestmark = pytest.mark.django_db(transaction=True)

# Each NowPayments status the sandbox can put a payment in, and how it gets there.
STATUSES = ["waiting", "confirming", "confirmed", "sending", "partially_paid", "finished"]
STATUSES += ["failed", "refunded", "expired"]


def _drive(control: Any, provider_id: str, status: str, pay_amount: Decimal) -> None:
    if status == "waiting":
        return
    if status == "partially_paid":
        control.pay(provider_id, pay_amount / 2)
    elif status == "finished":
        control.complete(provider_id)
        return
    elif status == "refunded":
        control.pay(provider_id, pay_amount / 2)
        control.advance(provider_id, "partially_paid")
        control.refund(provider_id)
        return
    control.advance(provider_id, status)


@pytest.mark.parametrize("provider_status", STATUSES)
def test_seed_provider_snippet_stores_every_status(
    sandbox: Any, usdt: Any, provider_status: str
) -> None:
    user = UserFactory()
    payment = deposits.payment_create(
        user_id=user.pk, amount_usd=Decimal("25.00"), currency_code="USDTTRC20"
    )
    assert payment.provider_payment_id
    assert payment.pay_amount
    _drive(sandbox.control, payment.provider_payment_id, provider_status, payment.pay_amount)
    assert sandbox.control.payment(payment.provider_payment_id)["payment_status"] == provider_status

    exec(SEED_SNIPPET, {"Payment": Payment, "Decimal": Decimal, "payment_id": payment.pk})  # noqa: S102

    payment.refresh_from_db()
    assert payment.status == PAYMENT_STATUS_MAP[provider_status]
    deposits_made = Transaction.objects.filter(payment=payment, transaction_type="deposit")
    if provider_status == "finished":
        assert [t.amount_usd for t in deposits_made] == [Decimal("25.00")]
        assert UserBalance.objects.get(user=user).balance_usd == Decimal("25.00")
    else:
        assert not deposits_made.exists()


def test_seed_snippet_twice_credits_once(sandbox: Any, usdt: Any) -> None:
    user = UserFactory()
    payment = deposits.payment_create(
        user_id=user.pk, amount_usd=Decimal("10.00"), currency_code="USDTTRC20"
    )
    sandbox.control.complete(payment.provider_payment_id)
    for _ in range(2):
        exec(SEED_SNIPPET, {"Payment": Payment, "Decimal": Decimal, "payment_id": payment.pk})  # noqa: S102
    assert Transaction.objects.filter(payment=payment).count() == 1
    assert UserBalance.objects.get(user=user).balance_usd == Decimal("10.00")


def test_an_unknown_status_name_is_refused_with_a_sentence(usdt: Any) -> None:
    from django.core.exceptions import ValidationError

    payment = Payment.objects.create(user=UserFactory(), amount_usd=Decimal("10.00"), currency=usdt)
    payment.status = "teleported"
    with pytest.raises(ValidationError, match="unknown payment status"):
        payment.save()
    payment.refresh_from_db()
    assert payment.status == "pending"
