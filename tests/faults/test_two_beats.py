"""Fault 6: two beat processes for a minute, with deposits and withdrawals flowing.

Both beats send every tick of every schedule; the job leases (``workers/leases.py``) let one
copy per tick run and skip the other. Meanwhile payments are created and finished at the
sandbox (the poller credits them), completed by hand (the settle sweep credits them), and
withdrawals approved and paid out (the payout sweep sends them). At the end each job ran at
most once per tick, the provider was asked once per run, every payout was created once, and the
books are clean.
"""

from __future__ import annotations

import signal
import time
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Permission

from payments.models import Payment, PeriodicRun, Transaction, WithdrawalRequest
from payments.services import deposits as service
from payments.services import withdrawals
from tests.faults.stack import FaultStack, make_users
from tests.faults.test_worker_kills import WALLET, PayoutDesk, completed_wave
from tests.workers.processes import set_intervals

pytestmark = [pytest.mark.faults, pytest.mark.e2e, pytest.mark.slow]

POLL, SETTLE, PAYOUTS, RECONCILE = (
    "workers.payments_poll",
    "workers.payments_settle_sweep",
    "workers.withdrawals_payout_sweep",
    "workers.ledger_reconcile",
)
INTERVALS = {POLL: 2, SETTLE: 2, PAYOUTS: 2, RECONCILE: 10}
MINUTE = 60.0


def runs() -> dict[str, PeriodicRun]:
    return {run.name: run for run in PeriodicRun.objects.filter(name__in=INTERVALS)}


def test_two_beats_for_a_minute_run_each_tick_once_with_no_double_effect(
    stack: FaultStack, sandbox: Any, usdt: Any
) -> None:
    set_intervals(INTERVALS)
    users = make_users(10)
    reviewer = make_users(1, prefix="reviewer")[0]
    reviewer.is_staff = True
    reviewer.save()
    reviewer.user_permissions.add(Permission.objects.get(codename="approve_withdrawalrequest"))
    # Funds for the withdrawals: payments completed off-provider, credited by the settle sweep.
    completed_wave(users, usdt, 200)
    stack.start_worker(concurrency=2)
    stack.start_worker(concurrency=2)
    stack.start_beat()
    stack.start_beat()
    desk = PayoutDesk(sandbox)
    desk.start()
    sandbox.control.reset_requests()
    before = {name: (run.run_count, run.skipped_count) for name, run in runs().items()}
    started = time.monotonic()
    remote: list[Payment] = []
    made: list[Any] = []
    tick = 0
    try:
        while time.monotonic() - started < MINUTE:
            user = users[tick % len(users)]
            payment = service.payment_create(
                user_id=user.pk, amount_usd=Decimal("7.00") + tick, currency_code="USDTTRC20"
            )
            remote.append(payment)
            sandbox.control.complete(payment.provider_payment_id)
            funded = Transaction.objects.filter(user=user, transaction_type="deposit").exists()
            if tick % 2 == 0 and funded:
                withdrawal = withdrawals.withdrawal_create(
                    user_id=user.pk,
                    amount_usd=Decimal("10.00"),
                    currency_id=usdt.pk,
                    wallet_address=WALLET,
                )
                withdrawals.withdrawal_approve(withdrawal_id=withdrawal.pk, admin_user=reviewer)
                made.append(withdrawal.pk)
            tick += 1
            time.sleep(1.5)
        elapsed = time.monotonic() - started
        seen = runs()
        stack.assert_alive("a process died")
        for name, every in INTERVALS.items():
            ran = seen[name].run_count - before.get(name, (0, 0))[0]
            skipped = seen[name].skipped_count - before.get(name, (0, 0))[1]
            # One run per tick: never more often than the lease's 80% of the interval ...
            assert ran <= elapsed / (0.8 * every) + 1, (name, ran, elapsed)
            # ... yet it did run, and both beats were sending (the second copies skipped).
            assert ran >= elapsed / every / 3, (name, ran, elapsed)
            assert skipped >= ran / 3, (name, skipped, ran)
        polls = seen[POLL].run_count - before.get(POLL, (0, 0))[0]
        calls = sandbox.control.requests()
        assert calls.get("GET /v1/payment/", 0) <= polls + 1, (calls, polls)

        stack.kill_beat(1, sig=signal.SIGTERM)  # one beat again, for the tail
        stack.wait_until(
            lambda: (
                Transaction.objects.filter(transaction_type="deposit", payment__in=remote).count()
                == len(remote)
            ),
            timeout=60,
            what="every payment finished at the sandbox credited",
        )
        stack.wait_until(
            lambda: (
                WithdrawalRequest.objects.filter(pk__in=made)
                .exclude(status__in=["completed", "failed"])
                .count()
                == 0
            ),
            timeout=60,
            what="every withdrawal paid out",
        )
    finally:
        desk.done.set()
        desk.join(timeout=10)
    assert len(made) >= 10
    payouts = [w for b in sandbox.control.payouts() for w in b["withdrawals"]]
    assert len(payouts) == len(made), "each withdrawal became exactly one payout"
    assert sandbox.control.requests().get("POST /v1/payout", 0) == len(made)
    stack.assert_books_clean()
