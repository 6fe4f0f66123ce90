"""Fault 3: the broker (a private redis-server) stopped and restarted while tasks queue and run.

A wave of settlement batches is queued and being worked on when redis-server is stopped; while
it is down NowPayments finishes payments the poller cannot yet be told to look at; then it comes
back on the same port with its data. The queued tasks are still there, workers and beat
reconnect by themselves (none of them is restarted), and everything completes: the wave, the
payments finished during the outage (through the poller), withdrawals approved afterwards.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Permission

from payments.models import Payment, Transaction, WithdrawalRequest
from payments.services import deposits as service
from payments.services import withdrawals
from tests.faults.private_redis import PrivateRedis
from tests.faults.stack import FaultStack, make_users
from tests.faults.test_worker_kills import WALLET, completed_wave, deposits_among
from tests.workers.processes import set_intervals

pytestmark = [pytest.mark.faults, pytest.mark.e2e, pytest.mark.slow]

POLL, SETTLE, PAYOUTS = (
    "workers.payments_poll",
    "workers.payments_settle_sweep",
    "workers.withdrawals_payout_sweep",
)
WAVE, BATCH, OUTAGE = 1000, 25, 6.0


def test_a_broker_restart_loses_no_queued_task_and_everything_completes(
    stack: FaultStack, sandbox: Any, usdt: Any, private_redis: PrivateRedis
) -> None:
    set_intervals({POLL: 2, SETTLE: 5, PAYOUTS: 1})
    users = make_users(20)
    remote = [
        service.payment_create(
            user_id=users[i].pk, amount_usd=Decimal("30.00"), currency_code="USDTTRC20"
        )
        for i in range(10)
    ]
    stack.start_worker("settle", queues="settlement", concurrency=2)
    stack.start_worker("rest", queues="provider,payouts,default", concurrency=1)
    stack.start_beat()
    ids = completed_wave(users, usdt, WAVE)
    sender = stack.sender()
    for start in range(0, WAVE, BATCH):
        sender.send_task(
            "workers.payments_settle_batch",
            kwargs={"payment_ids": ids[start : start + BATCH]},
            queue="settlement",
        )
    stack.wait_until(lambda: deposits_among(ids) >= BATCH, timeout=90, what="settlement going")

    broker = private_redis.client()
    queued = broker.llen("settlement")
    private_redis.stop()
    settled_at_stop = deposits_among(ids)
    assert queued > 0, "tasks must be queued when the broker stops"
    assert settled_at_stop < WAVE, "and some running"
    for payment in remote:  # NowPayments goes on while our broker is down
        sandbox.control.complete(payment.provider_payment_id)
    time.sleep(OUTAGE)
    stack.assert_alive("a process died while the broker was down")
    private_redis.start()
    kept = private_redis.client().llen("settlement")
    # The append-only file kept the queue (less what the workers had taken just before).
    assert kept >= min(queued - 4, 1), (queued, kept)

    stack.wait_until(
        lambda: deposits_among(ids) == WAVE, timeout=120, what="the wave settled after the restart"
    )
    stack.wait_until(
        lambda: (
            Transaction.objects.filter(transaction_type="deposit", payment__in=remote).count()
            == len(remote)
        ),
        timeout=90,
        what="payments finished during the outage credited through the poller",
    )
    # New work after the restart flows too: withdrawals approved now are paid out.
    reviewer = make_users(1, prefix="reviewer")[0]
    reviewer.is_staff = True
    reviewer.save()
    reviewer.user_permissions.add(Permission.objects.get(codename="approve_withdrawalrequest"))
    made = [
        withdrawals.withdrawal_create(
            user_id=users[i].pk,
            amount_usd=Decimal("15.00"),
            currency_id=usdt.pk,
            wallet_address=WALLET,
        ).pk
        for i in range(5)
    ]
    for pk in made:
        withdrawals.withdrawal_approve(withdrawal_id=pk, admin_user=reviewer)

    def finish_payouts() -> bool:
        for batch in sandbox.control.payouts():
            for item in batch["withdrawals"]:
                if item["status"] == "WAITING":
                    sandbox.control.advance_payout(item["id"], status="FINISHED")
        done = WithdrawalRequest.objects.filter(pk__in=made, status="completed")
        return done.count() == len(made)

    stack.wait_until(finish_payouts, timeout=90, what="the withdrawals paid out")
    stack.assert_alive("a process died with the broker")
    assert Payment.objects.filter(status="completed").count() == WAVE + len(remote)
    stack.assert_books_clean()
