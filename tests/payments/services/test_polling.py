"""Bulk polling and expiry against the sandbox."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from unittest import mock

import pytest
from django.utils import timezone

from payments.models import Payment, Transaction
from payments.services import deposits as service
from payments.services.deposits import payments_expire, payments_poll
from tests.factories import UserFactory, unregistered_payment

pytestmark = pytest.mark.django_db(transaction=True)


def create(n: int, amount: str = "20.00") -> list[Payment]:
    user = UserFactory()
    return [
        service.payment_create(
            user_id=user.pk, amount_usd=Decimal(amount), currency_code="USDTTRC20"
        )
        for _ in range(n)
    ]


def test_one_cycle_lists_instead_of_asking_one_by_one(sandbox, usdt):
    created = create(12)
    sandbox.control.pay(created[0].provider_payment_id)
    sandbox.control.complete(created[1].provider_payment_id)
    sandbox.control.reset_requests()
    result = payments_poll()
    counts = sandbox.control.requests()
    assert result.active == 12
    assert result.listed == 12
    assert result.applied == 2
    assert result.status_calls == 0
    assert counts.get("GET /v1/payment/{id}", 0) == 0
    assert counts.get("GET /v1/payment/") == 1
    statuses = dict(Payment.objects.values_list("pk", "status"))
    assert statuses[created[0].pk] == "confirming"
    assert statuses[created[1].pk] == "completed"
    assert Transaction.objects.filter(payment=created[1]).count() == 1
    # Nothing changed since: a second cycle applies nothing.
    assert payments_poll().applied == 0


def test_payments_the_list_misses_are_checked_one_by_one(sandbox, usdt, settings):
    settings.NOWPAYMENTS_PASSWORD = ""  # no JWT: the list endpoint is out of reach
    created = create(3)
    sandbox.control.complete(created[2].provider_payment_id)
    sandbox.control.reset_requests()
    result = payments_poll()
    assert result.status_calls == 3
    assert result.applied == 1
    assert Payment.objects.get(pk=created[2].pk).status == "completed"


def test_poll_survives_a_provider_outage_on_single_calls(sandbox, usdt, settings):
    settings.NOWPAYMENTS_PASSWORD = ""
    create(2)
    sandbox.control.set_fault("http_500", count=100, path="/v1/payment/")
    result = payments_poll()
    assert result.errors == 2
    assert result.applied == 0


def test_expire_asks_nowpayments_once_more_first(sandbox, usdt):
    stale, paid_late = create(2)
    Payment.objects.filter(pk__in=[stale.pk, paid_late.pk]).update(
        expires_at=timezone.now() - timedelta(hours=1)
    )
    sandbox.control.pay(paid_late.provider_payment_id)
    result = payments_expire()
    # Our clock says both are past their expiry; NowPayments still waits for one and sees
    # money on the other: neither is expired here.
    assert result["due"] == 2
    assert (result["checked"], result["expired"], result["waiting"]) == (2, 0, 1)
    assert Payment.objects.get(pk=stale.pk).status == "pending"
    assert Payment.objects.get(pk=paid_late.pk).status == "confirming"
    # Once NowPayments says it expired, it is expired.
    sandbox.control.expire(stale.provider_payment_id)
    assert payments_expire()["expired"] == 1
    assert Payment.objects.get(pk=stale.pk).status == "expired"


def test_expire_never_guesses_when_nowpayments_is_down(sandbox, usdt):
    (payment,) = create(1)
    Payment.objects.filter(pk=payment.pk).update(expires_at=timezone.now() - timedelta(hours=1))
    sandbox.control.set_fault("http_500", count=100, path="/v1/payment/")
    result = payments_expire()
    assert result["expired"] == 0
    assert result["errors"] == 1
    assert Payment.objects.get(pk=payment.pk).status == "pending"


def test_unregistered_payments_expire_after_a_day(sandbox, usdt):
    # created_at is fixed once stored (the database refuses to rewrite it): make it old.
    two_days_ago = timezone.now() - timedelta(days=2)
    with mock.patch("django.utils.timezone.now", return_value=two_days_ago):
        payment = unregistered_payment(currency=usdt)
    assert payments_expire()["expired"] == 1
    assert Payment.objects.get(pk=payment.pk).status == "expired"


@pytest.mark.parametrize("with_list", [True, False], ids=["list", "one_by_one"])
def test_a_refund_after_the_credit_is_found_by_polling_alone(sandbox, usdt, settings, with_list):
    if not with_list:
        settings.NOWPAYMENTS_PASSWORD = ""  # no JWT: one status call per payment
    settings.PAYMENTS_REFUND_RECHECK_SECONDS = 0
    (payment,) = create(1)
    sandbox.control.complete(payment.provider_payment_id)
    payments_poll()
    assert Payment.objects.get(pk=payment.pk).status == "completed"
    sandbox.control.refund(payment.provider_payment_id)
    payments_poll()
    assert Payment.objects.get(pk=payment.pk).status == "refunded"
    kinds = list(
        Transaction.objects.filter(payment=payment)
        .order_by("sequence")
        .values_list("transaction_type", "amount_usd")
    )
    assert kinds == [("deposit", Decimal("20.00")), ("reversal", Decimal("-20.00"))]


def test_credited_payments_are_rechecked_a_bounded_few_at_a_time(sandbox, usdt, settings):
    from payments.services.deposits import poll

    settings.NOWPAYMENTS_PASSWORD = ""
    settings.PAYMENTS_REFUND_RECHECK_SECONDS = 0
    payments = create(poll.MAX_CREDITED_CHECKS + 5)
    for payment in payments:
        sandbox.control.complete(payment.provider_payment_id)
    payments_poll(max_status_calls=1000)  # credits them all
    sandbox.control.reset_requests()
    payments_poll()
    # Only the bounded few credited payments were read, least recently checked first.
    assert sandbox.control.requests().get("GET /v1/payment/{id}", 0) == poll.MAX_CREDITED_CHECKS
    settings.PAYMENTS_REFUND_RECHECK_SECONDS = 3600
    sandbox.control.reset_requests()
    payments_poll()
    assert sandbox.control.requests().get("GET /v1/payment/{id}", 0) == 0
