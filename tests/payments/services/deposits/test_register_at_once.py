"""The address at once: a payment made through the ORM is registered with NowPayments before
``Payment.objects.create`` returns, or on commit; when NowPayments is away, the worker sweep."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
from django.db import transaction

from payments.models import Payment
from payments.services import deposits
from payments.services.deposits.register import UNREACHABLE_NOTICE
from tests.factories import PaymentFactory, UserFactory, unregistered_payment
from workers.tasks import payment_register_task

pytestmark = pytest.mark.django_db(transaction=True)

CREATE = "POST /v1/payment"
MIN_AMOUNT = "GET /v1/min-amount"


def calls(sandbox, route: str = CREATE) -> int:
    return int(sandbox.control.requests().get(route, 0))


def orm_payment(currency, amount: str = "25.00") -> Payment:
    """The seed's way."""
    return Payment.objects.create(
        user=UserFactory(), amount_usd=Decimal(amount), currency=currency, description="ORM"
    )


def sweep() -> list[str | None]:
    """What the beat's register sweep has the worker do, run here in-process."""
    return [
        payment_register_task(payment_id=str(payment_id))
        for payment_id in deposits.payments_awaiting_registration()
    ]


def test_outside_a_transaction_the_address_is_there_when_create_returns(sandbox, usdt, btc):
    payment = orm_payment(usdt)
    remote = sandbox.control.payment(payment.provider_payment_id)
    assert remote["order_id"] == payment.internal_payment_id
    assert payment.pay_address == remote["pay_address"] != ""
    assert payment.pay_amount == Decimal(str(remote["pay_amount"]))
    assert payment.qr_data == payment.pay_address  # TRC20: no URI scheme
    assert payment.get_qr_code_url(size=300) == f"/payments/qr/{payment.pk}.png?size=300"
    assert payment.provider_error == ""
    assert payment.expires_at is not None
    stored = Payment.objects.get(pk=payment.pk)
    assert (stored.provider_payment_id, stored.pay_address) == (
        payment.provider_payment_id,
        payment.pay_address,
    )
    assert calls(sandbox) == 1
    bitcoin = orm_payment(btc, "50.00")
    assert bitcoin.qr_data.startswith(f"bitcoin:{bitcoin.pay_address}?amount=")
    assert calls(sandbox) == 2
    # Nothing left for the sweep.
    assert deposits.payments_awaiting_registration() == []


def test_the_seeds_status_update_after_create_keeps_what_registration_stored(sandbox, usdt):
    payment = orm_payment(usdt)
    provider_id = payment.provider_payment_id
    payment.status = Payment.PaymentStatus.COMPLETED
    payment.save()
    stored = Payment.objects.get(pk=payment.pk)
    assert stored.status == "completed"
    assert stored.provider_payment_id == provider_id
    assert stored.pay_address == payment.pay_address != ""


def test_inside_a_transaction_it_is_registered_on_commit(sandbox, usdt):
    with transaction.atomic():
        payment = orm_payment(usdt)
        with transaction.atomic():  # a savepoint: still waits for the outer commit
            pass
        assert payment.pay_address == ""
        assert payment.qr_data is None
        assert payment.get_qr_code_url() is None
        assert calls(sandbox) == 0
    assert payment.provider_payment_id
    assert (
        payment.pay_address == sandbox.control.payment(payment.provider_payment_id)["pay_address"]
    )
    assert Payment.objects.get(pk=payment.pk).pay_address == payment.pay_address
    assert calls(sandbox) == 1


def test_a_transaction_rolled_back_registers_nothing(sandbox, usdt):
    def give_up() -> None:
        with transaction.atomic():
            orm_payment(usdt)
            raise RuntimeError("the caller gave up")

    with pytest.raises(RuntimeError):
        give_up()
    assert not Payment.objects.exists()
    assert calls(sandbox) == 0
    assert calls(sandbox, MIN_AMOUNT) == 0


def test_nowpayments_down_create_still_returns_and_the_sweep_registers_it(sandbox, usdt):
    sandbox.control.set_fault("http_500", count=1, path="/v1/payment")
    payment = orm_payment(usdt)  # no exception
    assert payment.status == "pending"
    assert payment.provider_payment_id is None
    assert payment.pay_address == ""
    assert payment.qr_data is None
    assert payment.provider_error == UNREACHABLE_NOTICE
    assert "worker will retry" in payment.provider_error
    stored = Payment.objects.get(pk=payment.pk)
    assert stored.provider_error == UNREACHABLE_NOTICE
    # The claim is released: the next sweep (a minute away) retries it, not in five minutes.
    assert stored.provider_requested_at is None
    assert deposits.payments_awaiting_registration() == [payment.pk]
    assert calls(sandbox) == 1
    (provider_id,) = sweep()
    payment.refresh_from_db()
    assert payment.provider_payment_id == provider_id is not None
    assert payment.pay_address == sandbox.control.payment(provider_id)["pay_address"]
    assert payment.provider_error == ""
    assert calls(sandbox) == 2
    assert sweep() == []


def test_nowpayments_down_on_commit_does_not_break_the_commit(sandbox, usdt):
    sandbox.control.set_fault("http_500", count=1, path="/v1/payment")
    with transaction.atomic():
        payment = orm_payment(usdt)
    assert payment.provider_error == UNREACHABLE_NOTICE
    assert Payment.objects.get(pk=payment.pk).provider_requested_at is None
    (provider_id,) = sweep()
    assert Payment.objects.get(pk=payment.pk).provider_payment_id == provider_id


def test_a_slow_nowpayments_is_waited_for_only_the_register_timeout(sandbox, usdt, settings):
    settings.PAYMENTS_REGISTER_TIMEOUT = 0.5
    assert settings.NOWPAYMENTS_TIMEOUT == 3.0  # what the worker would wait
    sandbox.control.set_fault("timeout", count=1, path="/v1/min-amount", delay=4)
    started = time.monotonic()
    payment = orm_payment(usdt)
    elapsed = time.monotonic() - started
    assert elapsed < 2.0, elapsed
    assert payment.provider_error == UNREACHABLE_NOTICE
    assert calls(sandbox, MIN_AMOUNT) == 1  # no retry inside the short wait
    assert calls(sandbox) == 0
    (provider_id,) = sweep()
    assert provider_id is not None


def test_nowpayments_unreachable_is_left_to_the_worker(sandbox, usdt):
    payment = unregistered_payment(currency=usdt)
    assert payment.provider_error == UNREACHABLE_NOTICE
    assert Payment.objects.get(pk=payment.pk).provider_requested_at is None
    (provider_id,) = sweep()
    assert provider_id is not None


def test_a_refusal_fails_the_payment_visibly_without_raising(sandbox, btc):
    payment = orm_payment(btc, "2.00")  # below NowPayments' minimum for BTC
    assert payment.status == "failed"
    assert payment.provider_error.startswith("amount_below_minimum")
    assert Payment.objects.get(pk=payment.pk).status == "failed"
    assert calls(sandbox) == 0
    assert sweep() == []


def test_payments_disabled_create_still_works_and_nothing_is_called(sandbox, usdt, settings):
    settings.PAYMENTS_ENABLED = False
    payment = orm_payment(usdt)
    assert payment.status == "pending"
    assert payment.provider_payment_id is None
    assert Payment.objects.get(pk=payment.pk).provider_requested_at is None
    assert calls(sandbox) == calls(sandbox, MIN_AMOUNT) == 0


def test_payments_that_already_have_a_provider_id_are_not_registered_again(sandbox, usdt):
    created = deposits.payment_create(
        user_id=UserFactory().pk, amount_usd=Decimal("25.00"), currency_code="USDTTRC20"
    )
    assert calls(sandbox) == 1
    PaymentFactory(currency=usdt, provider_payment_id="999", pay_address="TKnown")
    assert calls(sandbox) == 1
    assert calls(sandbox, MIN_AMOUNT) == 1
    assert created.provider_payment_id
    assert Payment.objects.get(provider_payment_id="999").pay_address == "TKnown"


def test_a_copy_loaded_before_registration_does_not_blank_the_address_when_saved(sandbox, usdt):
    payment = unregistered_payment(currency=usdt)
    stale = Payment.objects.get(pk=payment.pk)  # loaded while it had no address
    assert sweep() != [None]
    registered = Payment.objects.get(pk=payment.pk)
    assert registered.pay_address

    stale.description = "edited by a copy from before"
    stale.status = Payment.PaymentStatus.CONFIRMING
    stale.save()

    saved = Payment.objects.get(pk=payment.pk)
    assert saved.status == Payment.PaymentStatus.CONFIRMING
    assert saved.description == "edited by a copy from before"
    assert (saved.provider_payment_id, saved.pay_address, saved.pay_amount) == (
        registered.provider_payment_id,
        registered.pay_address,
        registered.pay_amount,
    )
