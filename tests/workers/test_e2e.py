"""End to end with real processes: Celery worker and beat on Redis, PostgreSQL and the sandbox."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest
from celery import Celery
from django.db.models import Count, Sum
from django.utils import timezone

from payments.models import Payment, PeriodicRun, Transaction, UserBalance
from payments.services import deposits as service
from tests.factories import CurrencyFactory, UserFactory, unregistered_payment
from tests.payments.test_ledger_concurrency import assert_ledger_consistent
from tests.workers.processes import (
    Processes,
    broker_url,
    flush_broker,
    process_env,
    set_intervals,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

FAST = {
    "workers.payments_poll": 1,
    "workers.payments_settle_sweep": 1,
    "workers.payments_register_sweep": 1,
}


@pytest.fixture
def procs(transactional_db, sandbox) -> Iterator[Processes]:
    flush_broker()
    processes = Processes(process_env(sandbox))
    try:
        yield processes
    finally:
        processes.stop_all()
        flush_broker()


def deposits_of(payment: Payment) -> int:
    return Transaction.objects.filter(payment=payment, transaction_type="deposit").count()


def test_a_deposit_paid_in_the_sandbox_is_credited_once_without_any_manual_call(
    sandbox, usdt, procs
):
    set_intervals(FAST)
    procs.worker()
    procs.beat()
    user = UserFactory()
    payment = service.payment_create(
        user_id=user.pk, amount_usd=Decimal("42.00"), currency_code="USDTTRC20"
    )
    sandbox.control.complete(payment.provider_payment_id)
    wait_until(lambda: deposits_of(payment), timeout=40, what="the deposit", logs=procs)
    payment.refresh_from_db()
    assert payment.status == "completed"
    # Give beat a few more ticks: nothing is credited twice.
    wait_until(
        lambda: PeriodicRun.objects.filter(name="workers.payments_poll", run_count__gte=3).exists(),
        timeout=20,
        what="more poll cycles",
        logs=procs,
    )
    assert deposits_of(payment) == 1
    assert UserBalance.objects.get(user=user).balance_usd == Decimal("42.00")


def test_a_deposit_completed_by_ipn_is_credited_once(sandbox, usdt, procs, live_server, settings):
    settings.PAYMENTS_PUBLIC_BASE_URL = live_server.url
    set_intervals({"workers.payments_settle_sweep": 1})  # no poller: the IPN alone must do it
    procs.worker()
    procs.beat()
    user = UserFactory()
    payment = service.payment_create(
        user_id=user.pk, amount_usd=Decimal("15.00"), currency_code="USDTTRC20"
    )
    sandbox.control.complete(payment.provider_payment_id)
    wait_until(lambda: deposits_of(payment), timeout=30, what="the IPN deposit", logs=procs)
    sandbox.control.resend_ipn(payment.provider_payment_id)
    wait_until(
        lambda: PeriodicRun.objects.filter(
            name="workers.payments_settle_sweep", run_count__gte=3
        ).exists(),
        timeout=20,
        what="sweeper cycles",
        logs=procs,
    )
    assert deposits_of(payment) == 1
    assert UserBalance.objects.get(user=user).balance_usd == Decimal("15.00")


def test_payments_made_through_the_orm_are_registered_and_settled(sandbox, usdt, procs):
    set_intervals(FAST)
    procs.worker()
    procs.beat()
    user = UserFactory()
    # The seed's way, while NowPayments could not be reached: created through the ORM, not
    # registered at once; the register sweeper takes it to NowPayments.
    pending = unregistered_payment(
        user=user, amount_usd=Decimal("11.00"), currency=usdt, description="ORM deposit"
    )
    assert pending.provider_error.startswith("NowPayments could not be reached")
    # And a payment completed by hand, as the seed shows: the settle sweeper credits it.
    by_hand = Payment.objects.create(user=user, amount_usd=Decimal("7.00"), currency=usdt)
    by_hand.status = Payment.PaymentStatus.COMPLETED
    by_hand.completed_at = timezone.now()
    by_hand.save()

    wait_until(lambda: deposits_of(by_hand), timeout=30, what="the by-hand deposit", logs=procs)

    def registered() -> str | None:
        pending.refresh_from_db()
        return pending.provider_payment_id

    provider_id = wait_until(registered, timeout=30, what="registration", logs=procs)
    assert pending.pay_address
    assert pending.provider_error == ""
    sandbox.control.complete(provider_id)
    wait_until(lambda: deposits_of(pending), timeout=30, what="the ORM deposit", logs=procs)
    assert UserBalance.objects.get(user=user).balance_usd == Decimal("18.00")
    assert deposits_of(by_hand) == deposits_of(pending) == 1
    assert (
        len([p for p in sandbox.control.payments() if p["order_id"] == pending.internal_payment_id])
        == 1
    )


def _completed_payments(count: int, users: int) -> list[Payment]:
    currency = CurrencyFactory()
    owners = [UserFactory() for _ in range(users)]
    now = timezone.now()
    rows = [
        Payment(
            user=owners[i % users],
            currency=currency,
            amount_usd=Decimal(100 + i % 900) / 100,
            internal_payment_id=f"PAY_E2E_{uuid.uuid4().hex[:12]}",
            status=Payment.PaymentStatus.COMPLETED,
            completed_at=now,
        )
        for i in range(count)
    ]
    return Payment.objects.bulk_create(rows, batch_size=1000)


def test_a_worker_killed_mid_settlement_loses_and_doubles_nothing(sandbox, procs):
    count = 1500
    payments = _completed_payments(count, users=40)
    worker = procs.worker(concurrency=2, queues="settlement")
    sender = Celery(broker=broker_url())
    ids = [str(p.pk) for p in payments]
    for start in range(0, count, 100):
        sender.send_task(
            "workers.payments_settle_batch",
            kwargs={"payment_ids": ids[start : start + 100]},
            queue="settlement",
        )

    def some_settled() -> bool:
        return Transaction.objects.filter(transaction_type="deposit").count() >= 150

    wait_until(some_settled, timeout=60, what="settlement to get going", logs=procs)
    procs.kill(worker)  # SIGKILL to the whole process group, mid-batch
    settled_at_kill = Transaction.objects.filter(transaction_type="deposit").count()
    assert settled_at_kill < count, "the kill should land mid-run; make the batch larger"

    # A new worker and the beat's settle sweeper finish the job.
    set_intervals({"workers.payments_settle_sweep": 1})
    procs.worker(concurrency=2)
    procs.beat()

    def all_settled() -> bool:
        return Transaction.objects.filter(transaction_type="deposit").count() >= count

    wait_until(all_settled, timeout=120, what="every payment settled", logs=procs)
    per_payment = (
        Transaction.objects.filter(transaction_type="deposit")
        .values("payment_id")
        .annotate(n=Count("id"))
    )
    assert len(per_payment) == count
    assert {row["n"] for row in per_payment} == {1}
    expected = Payment.objects.aggregate(s=Sum("amount_usd"))["s"]
    assert UserBalance.objects.aggregate(s=Sum("balance_usd"))["s"] == expected
    for user_id in UserBalance.objects.values_list("user_id", flat=True):
        assert_ledger_consistent(user_id)


def test_two_beats_started_by_mistake_cause_no_double_effect(sandbox, usdt, procs):
    set_intervals({"workers.payments_poll": 1, "workers.payments_settle_sweep": 1})
    user = UserFactory()
    payment = service.payment_create(
        user_id=user.pk, amount_usd=Decimal("9.00"), currency_code="USDTTRC20"
    )
    by_hand = Payment.objects.create(user=user, amount_usd=Decimal("3.00"), currency=usdt)
    by_hand.status = Payment.PaymentStatus.COMPLETED
    by_hand.save()
    sandbox.control.reset_requests()
    procs.worker(concurrency=2)
    started = time.monotonic()
    procs.beat()
    procs.beat()
    sandbox.control.complete(payment.provider_payment_id)
    wait_until(
        lambda: PeriodicRun.objects.filter(
            name="workers.payments_poll", run_count__gte=10
        ).exists(),
        timeout=40,
        what="ten poll cycles",
        logs=procs,
    )
    elapsed = time.monotonic() - started
    poll = PeriodicRun.objects.get(name="workers.payments_poll")
    # Two beats sent every tick twice; the second copy was skipped, so the job ran at most
    # once per 80% of its 1 s interval (without the lease it would run twice per tick).
    assert poll.run_count <= elapsed / 0.8 + 1, (poll.run_count, elapsed)
    assert poll.skipped_count >= 3, "both beats were sending"
    list_calls = sandbox.control.requests().get("GET /v1/payment/", 0)
    assert list_calls <= poll.run_count, (list_calls, poll.run_count)
    assert deposits_of(payment) == 1
    assert deposits_of(by_hand) == 1
    assert UserBalance.objects.get(user=user).balance_usd == Decimal("12.00")


def test_an_approved_withdrawal_is_paid_out_by_the_workers(sandbox, usdt, procs):
    from django.contrib.auth.models import Permission

    from payments import ledger
    from payments.models import WithdrawalRequest
    from payments.services import withdrawals

    procs.env["PAYMENTS_PAYOUTS_ENABLED"] = "1"
    sandbox.control.set_balance("usdttrc20", "100000")
    set_intervals({"workers.withdrawals_payout_sweep": 1})
    user = UserFactory()
    reviewer = UserFactory(is_staff=True)
    reviewer.user_permissions.add(Permission.objects.get(codename="approve_withdrawalrequest"))
    ledger.post(user_id=user.pk, kind="deposit", amount_usd=Decimal("30.00"), idempotency_key="d")
    withdrawal = withdrawals.withdrawal_create(
        user_id=user.pk,
        amount_usd=Decimal("20.00"),
        currency_id=usdt.pk,
        wallet_address="TQn9Y2khEsLJW1ChVWFMSMeRDow5KcbLSE",
    )
    withdrawals.withdrawal_approve(withdrawal_id=withdrawal.pk, admin_user=reviewer)
    procs.worker()
    procs.beat()

    def batch_id() -> str:
        return WithdrawalRequest.objects.get(pk=withdrawal.pk).provider_batch_id

    sent = wait_until(batch_id, timeout=30, what="the payout to be sent", logs=procs)
    sandbox.control.advance_payout(sent, status="FINISHED")
    wait_until(
        lambda: WithdrawalRequest.objects.get(pk=withdrawal.pk).status == "completed",
        timeout=30,
        what="the withdrawal to complete",
        logs=procs,
    )
    assert len(sandbox.control.payouts()) == 1
    assert UserBalance.objects.get(user=user).balance_usd == Decimal("10.00")
