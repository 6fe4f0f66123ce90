"""Deposits against the NowPayments sandbox: create, register, apply reports, settle once."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import transaction

from payments.errors import (
    AmountBelowMinimum,
    CurrencyUnavailable,
    InvalidAmount,
    ProviderUnavailable,
)
from payments.models import Payment, Transaction, UserBalance
from payments.models.event import EventOutcome
from payments.services import deposits as service
from payments.services.providers.nowpayments.gateway import get_provider
from tests.factories import PaymentFactory, UserFactory, unregistered_payment

pytestmark = pytest.mark.django_db(transaction=True)

CREATE = "POST /v1/payment"


def posts(sandbox) -> int:
    return int(sandbox.control.requests().get(CREATE, 0))


def test_create_stores_what_nowpayments_returned(sandbox, usdt, settings):
    settings.PAYMENTS_PUBLIC_BASE_URL = "https://pay.example.com"
    user = UserFactory()
    payment = service.payment_create(
        user_id=user.pk,
        amount_usd=Decimal("25.00"),
        currency_code="usdttrc20",
        description="Top up",
    )
    payment.refresh_from_db()
    remote = sandbox.control.payment(payment.provider_payment_id)
    assert payment.status == "pending"
    assert payment.pay_address == remote["pay_address"] != ""
    assert payment.pay_amount == Decimal(str(remote["pay_amount"]))
    assert payment.expires_at is not None
    assert payment.provider_data["payment_id"] == payment.provider_payment_id
    assert remote["order_id"] == payment.internal_payment_id
    assert remote["ipn_callback_url"] == "https://pay.example.com/payments/webhooks/nowpayments/"
    assert payment.qr_data == payment.pay_address


def test_no_callback_url_without_a_public_base_url(sandbox, usdt):
    payment = service.payment_create(
        user_id=UserFactory().pk, amount_usd=Decimal("25.00"), currency_code="USDTTRC20"
    )
    assert sandbox.control.payment(payment.provider_payment_id)["ipn_callback_url"] is None


def test_below_the_currency_minimum_is_refused_before_calling_nowpayments(sandbox, usdt):
    usdt.min_amount_usd = Decimal("20.00")
    usdt.save()
    with pytest.raises(AmountBelowMinimum):
        service.payment_create(
            user_id=UserFactory().pk, amount_usd=Decimal("19.99"), currency_code="USDTTRC20"
        )
    assert posts(sandbox) == 0
    assert not Payment.objects.exists()


def test_below_the_provider_minimum_is_refused(sandbox, btc):
    with pytest.raises(AmountBelowMinimum, match="NowPayments"):
        service.payment_create(
            user_id=UserFactory().pk, amount_usd=Decimal("5.00"), currency_code="BTC"
        )
    assert posts(sandbox) == 0
    assert not Payment.objects.exists()


@pytest.mark.parametrize("amount", [Decimal("0"), Decimal("-1.00"), Decimal("1.001")])
def test_bad_amounts_are_refused(sandbox, usdt, amount):
    with pytest.raises(InvalidAmount):
        service.payment_create(
            user_id=UserFactory().pk, amount_usd=amount, currency_code="USDTTRC20"
        )
    assert not Payment.objects.exists()


def test_unknown_or_switched_off_currency_is_refused(sandbox, usdt):
    with pytest.raises(CurrencyUnavailable):
        service.payment_create(
            user_id=UserFactory().pk, amount_usd=Decimal("5.00"), currency_code="DOGE"
        )
    usdt.is_active = False
    usdt.save()
    with pytest.raises(CurrencyUnavailable):
        service.payment_create(
            user_id=UserFactory().pk, amount_usd=Decimal("5.00"), currency_code="USDTTRC20"
        )
    assert posts(sandbox) == 0


@pytest.mark.parametrize("mode", ["http_500", "http_429", "malformed_json"])
def test_provider_outage_writes_nothing_locally(sandbox, usdt, mode):
    sandbox.control.set_fault(mode, count=1, path="/v1/payment")
    with pytest.raises(ProviderUnavailable):
        service.payment_create(
            user_id=UserFactory().pk, amount_usd=Decimal("25.00"), currency_code="USDTTRC20"
        )
    assert not Payment.objects.exists()
    assert posts(sandbox) == 1, "a create is never retried automatically"


def test_provider_timeout_writes_nothing_locally(sandbox, usdt, settings):
    settings.NOWPAYMENTS_TIMEOUT = 0.5
    sandbox.control.set_fault("timeout", count=1, path="/v1/payment", delay=2)
    with pytest.raises(ProviderUnavailable):
        service.payment_create(
            user_id=UserFactory().pk, amount_usd=Decimal("25.00"), currency_code="USDTTRC20"
        )
    assert not Payment.objects.exists()


def test_calling_the_provider_inside_a_transaction_is_a_bug(sandbox, usdt):
    with pytest.raises(RuntimeError), transaction.atomic():
        service.payment_create(
            user_id=UserFactory().pk, amount_usd=Decimal("25.00"), currency_code="USDTTRC20"
        )


def test_lifecycle_polls_to_completed_and_credits_once(sandbox, usdt):
    user = UserFactory()
    payment = service.payment_create(
        user_id=user.pk, amount_usd=Decimal("25.00"), currency_code="USDTTRC20"
    )
    sandbox.control.pay(payment.provider_payment_id, hash="0xfeed")
    result = service.payment_refresh(payment_id=payment.pk)
    assert (result.outcome, result.status) == (EventOutcome.APPLIED, "confirming")
    assert result.deposit is None
    sandbox.control.advance(payment.provider_payment_id, status="finished")
    result = service.payment_refresh(payment_id=payment.pk)
    assert (result.outcome, result.status) == (EventOutcome.APPLIED, "completed")
    assert result.deposit is not None
    again = service.payment_refresh(payment_id=payment.pk)
    assert again.outcome == EventOutcome.UNCHANGED
    assert again.deposit.pk == result.deposit.pk
    payment.refresh_from_db()
    assert payment.transaction_hash == "0xfeed"
    assert payment.actual_amount == payment.pay_amount
    assert payment.completed_at is not None
    assert Transaction.objects.filter(payment=payment).count() == 1
    assert UserBalance.objects.get(user=user).balance_usd == Decimal("25.00")


def test_a_stale_report_changes_nothing(sandbox, usdt):
    payment = service.payment_create(
        user_id=UserFactory().pk, amount_usd=Decimal("25.00"), currency_code="USDTTRC20"
    )
    sandbox.control.complete(payment.provider_payment_id)
    service.payment_refresh(payment_id=payment.pk)
    late = get_provider().get_payment_status(payment.provider_payment_id)
    from dataclasses import replace

    result = service.payment_apply_report(
        report=replace(late, payment_status="confirming"), source="test"
    )
    assert result.outcome == EventOutcome.STALE
    payment.refresh_from_db()
    assert payment.status == "completed"
    assert Transaction.objects.filter(payment=payment).count() == 1


def test_partially_paid_is_not_credited(sandbox, usdt):
    user = UserFactory()
    payment = service.payment_create(
        user_id=user.pk, amount_usd=Decimal("25.00"), currency_code="USDTTRC20"
    )
    sandbox.control.pay(payment.provider_payment_id, amount="10")
    sandbox.control.advance(payment.provider_payment_id, status="partially_paid")
    result = service.payment_refresh(payment_id=payment.pk)
    assert result.status == "partially_paid"
    payment.refresh_from_db()
    assert payment.actual_amount == Decimal("10")
    assert payment.actual_amount_usd == Decimal("10.00")
    assert not Transaction.objects.filter(payment=payment).exists()


def test_payment_settle_credits_only_completed_payments(sandbox, usdt):
    payment = PaymentFactory(currency=usdt)
    assert service.payment_settle(payment_id=payment.pk) is None
    payment.status = Payment.PaymentStatus.COMPLETED
    payment.save()
    first = service.payment_settle(payment_id=payment.pk)
    second = service.payment_settle(payment_id=payment.pk)
    assert first.pk == second.pk
    assert first.amount_usd == payment.amount_usd
    assert first.idempotency_key == f"payment:{payment.pk}:deposit"


def test_register_an_orm_payment_once(sandbox, usdt):
    payment = unregistered_payment(currency=usdt, amount_usd=Decimal("30.00"))
    registered = service.payment_register(payment_id=payment.pk)
    assert registered.provider_payment_id
    assert registered.pay_address
    again = service.payment_register(payment_id=payment.pk)
    assert again.provider_payment_id == registered.provider_payment_id
    assert posts(sandbox) == 1


def test_register_below_the_provider_minimum_fails_the_payment(sandbox, btc):
    payment = unregistered_payment(currency=btc, amount_usd=Decimal("2.00"))
    result = service.payment_register(payment_id=payment.pk)
    assert result.status == "failed"
    assert result.provider_error.startswith("amount_below_minimum")
    assert posts(sandbox) == 0


def test_register_during_an_outage_waits_for_the_retry_window(sandbox, usdt):
    payment = unregistered_payment(currency=usdt)
    sandbox.control.set_fault("http_500", count=1, path="/v1/payment")
    with pytest.raises(ProviderUnavailable):
        service.payment_register(payment_id=payment.pk)
    payment.refresh_from_db()
    assert payment.provider_payment_id is None
    assert payment.status == "pending"
    # Claimed moments ago: a second worker does not create it again at once.
    assert service.payment_register(payment_id=payment.pk).provider_payment_id is None
    assert posts(sandbox) == 1


def test_a_redeposit_is_put_before_an_operator_not_credited(sandbox, usdt):
    from payments.models import LedgerDrift
    from payments.services.deposits import payments_poll

    user = UserFactory()
    payment = service.payment_create(
        user_id=user.pk, amount_usd=Decimal("25.00"), currency_code="USDTTRC20"
    )
    sandbox.control.complete(payment.provider_payment_id)
    payments_poll()
    sandbox.control.redeposit(payment.provider_payment_id, amount="5")
    # The parent is completed, so it is not active any more; the list still shows the child.
    sandbox.control.pay(
        service.payment_create(
            user_id=user.pk, amount_usd=Decimal("2.00"), currency_code="USDTTRC20"
        ).provider_payment_id
    )
    payments_poll()
    drift = LedgerDrift.objects.get(kind="redeposit")
    assert drift.payment_id == payment.pk
    assert drift.actual.startswith("5")
    assert UserBalance.objects.get(user=user).balance_usd == Decimal("25.00")
    payments_poll()
    assert LedgerDrift.objects.filter(kind="redeposit").count() == 1


def test_a_batch_of_reports_follows_the_same_rules(sandbox, usdt):
    from dataclasses import replace

    user = UserFactory()
    paying, finishing, done = (
        service.payment_create(
            user_id=user.pk, amount_usd=Decimal("10.00"), currency_code="USDTTRC20"
        )
        for _ in range(3)
    )
    sandbox.control.complete(done.provider_payment_id)
    service.payment_refresh(payment_id=done.pk)
    sandbox.control.pay(paying.provider_payment_id)
    sandbox.control.complete(finishing.provider_payment_id)
    provider = get_provider()
    reports = [provider.get_payment_status(p.provider_payment_id) for p in (paying, finishing)]
    late = replace(provider.get_payment_status(done.provider_payment_id), payment_status="sending")
    counts = service.payments_apply_reports(reports=[*reports, late], source="test")
    assert counts == {"applied": 2, "stale": 1, "unchanged": 0, "credited": 1}
    statuses = dict(Payment.objects.values_list("pk", "status"))
    assert [statuses[p.pk] for p in (paying, finishing, done)] == [
        "confirming",
        "completed",
        "completed",
    ]
    assert Payment.objects.get(pk=finishing.pk).completed_at is not None
    again = service.payments_apply_reports(reports=reports, source="test")
    assert again == {"applied": 0, "stale": 0, "unchanged": 2, "credited": 0}
    assert Transaction.objects.filter(transaction_type="deposit").count() == 2
    assert UserBalance.objects.get(user=user).balance_usd == Decimal("20.00")
