"""Fault 5: NowPayments answering 500s, 429s, timeouts and cut-off JSON for a while, then well.

Worker and beat run on the sandbox. First the deposits: a dozen payments are paid in full at
the sandbox while its next calls fail every way it can; the poller must still find each one
finished and credit it once. Then the payouts: approved withdrawals are sent while the payout
calls fail, including a timeout and a cut-off answer *after* NowPayments accepted the payout (the
sandbox still processes those requests). A payout whose creation got no readable answer must be
looked up by its external id and adopted, never sent again: the sandbox's payout list holds
exactly one payout per withdrawal, each finished, and the books are clean.
"""

from __future__ import annotations

import threading
import time
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Permission

from payments.models import Payment, Transaction, WithdrawalRequest
from payments.services import deposits, withdrawals
from tests.faults.stack import FaultStack, make_users
from tests.workers.processes import set_intervals

pytestmark = [pytest.mark.faults, pytest.mark.e2e, pytest.mark.slow]

POLL, SETTLE, PAYOUTS = (
    "workers.payments_poll",
    "workers.payments_settle_sweep",
    "workers.withdrawals_payout_sweep",
)
PAYMENTS = 12
WITHDRAWALS = 6
WALLET = "TQn9Y2khEsLJW1ChVWFMSMeRDow5KcbLSE"
# Longer than the processes' NOWPAYMENTS_TIMEOUT (5 s): the client gives up, the sandbox
# then processes the request all the same.
LATE = 7


class PayoutDesk(threading.Thread):
    """NowPayments' side of the payouts: every verified (WAITING) payout finishes."""

    def __init__(self, sandbox: Any) -> None:
        super().__init__(daemon=True)
        self.control = sandbox.control
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.3):
            for batch in self.control.payouts():
                for item in batch["withdrawals"]:
                    if item["status"] == "WAITING":
                        self.control.advance_payout(item["id"], status="FINISHED")


def faults(
    sandbox: Any, plan: list[tuple[str, int]], path: str | None = None, method: str | None = None
) -> int:
    for mode, count in plan:
        sandbox.control.set_fault(mode, count=count, path=path, delay=LATE, method=method)
    return sum(count for _, count in plan)


def settled(sandbox: Any, rows: Any) -> bool:
    """No withdrawal approved; every processing one without a payout at NowPayments."""
    if rows.filter(status="approved").exists():
        return False
    at_sandbox = {
        w["unique_external_id"] for b in sandbox.control.payouts() for w in b["withdrawals"]
    }
    processing = set(
        rows.filter(status="processing").values_list("internal_withdrawal_id", flat=True)
    )
    return not processing & at_sandbox


def remaining_faults(sandbox: Any) -> int:
    return sum(int(f["remaining"]) for f in sandbox.control.faults())


def test_provider_errors_then_recovery_credit_once_and_pay_out_once(
    stack: FaultStack, sandbox: Any, usdt: Any
) -> None:
    started = time.monotonic()
    # A payout whose call failed is backed off (PAYMENTS_ITEM_RETRY_SECONDS, doubled per
    # failure): seconds here, not the production minute, so recovery shows within the test.
    stack.env.update(PAYMENTS_ITEM_RETRY_SECONDS="2", PAYMENTS_ITEM_RETRY_MAX_SECONDS="8")
    set_intervals({POLL: 2, SETTLE: 2, PAYOUTS: 1})
    users = make_users(3)
    reviewer = make_users(1, prefix="reviewer")[0]
    reviewer.is_staff = True
    reviewer.save()
    reviewer.user_permissions.add(Permission.objects.get(codename="approve_withdrawalrequest"))

    # --- deposits under faults ---------------------------------------------------------------
    payments = [
        deposits.payment_create(
            user_id=users[i % len(users)].pk, amount_usd=Decimal("50.00"), currency_code="USDTTRC20"
        )
        for i in range(PAYMENTS)
    ]
    for payment in payments:
        sandbox.control.complete(payment.provider_payment_id)
    queued = faults(
        sandbox,
        [("http_500", 6), ("http_429", 4), ("malformed_json", 4), ("timeout", 2), ("http_500", 4)],
    )
    stack.start_worker("provider", queues="provider,default,payouts", concurrency=2)
    stack.start_worker("settle", queues="settlement", concurrency=1)
    stack.start_beat()
    ids = [p.pk for p in payments]
    credited = Transaction.objects.filter(transaction_type="deposit", payment_id__in=ids)
    stack.wait_until(
        lambda: remaining_faults(sandbox) == 0, timeout=90, what="the deposit faults answered"
    )
    stack.wait_until(
        lambda: credited.count() >= PAYMENTS, timeout=90, what="every payment credited"
    )
    assert Payment.objects.filter(pk__in=ids, status="completed").count() == PAYMENTS

    # --- payouts under faults ----------------------------------------------------------------
    made = [
        withdrawals.withdrawal_create(
            user_id=users[i % len(users)].pk,
            amount_usd=Decimal("20.00"),
            currency_id=usdt.pk,
            wallet_address=WALLET,
        ).pk
        for i in range(WITHDRAWALS)
    ]
    # The first payout creation times out after being accepted, the next one's answer is cut
    # in half after being accepted; then errors on every payout call (lists, verifications).
    # Only a POST can be the creation: a currency sync retried meanwhile reads payout terms
    # under the same prefix (GET /v1/payout/fee, /v1/payout-withdrawal/min-amount), and had
    # it taken one of these two, no payout would be made for the test to see adopted.
    queued += faults(
        sandbox, [("timeout", 1), ("malformed_json", 1)], path="/v1/payout", method="POST"
    )
    queued += faults(sandbox, [("http_500", 4), ("http_429", 3), ("timeout", 1)], path="/v1/payout")
    desk = PayoutDesk(sandbox)
    desk.start()
    try:
        for pk in made:
            withdrawals.withdrawal_approve(withdrawal_id=pk, admin_user=reviewer)
        rows = WithdrawalRequest.objects.filter(pk__in=made)
        stack.wait_until(
            lambda: remaining_faults(sandbox) == 0, timeout=90, what="the payout faults answered"
        )
        time.sleep(LATE + 1)  # a timed-out request is processed LATE s after it was taken
        # A 500 on the creation itself is no proof nothing was made: such a withdrawal stays
        # processing, looked up on every sweep, never resent (an operator's after an hour).
        stack.wait_until(
            lambda: settled(sandbox, rows), timeout=120, what="every payout sent and followed"
        )
    finally:
        desk.done.set()
        desk.join(timeout=10)

    # At most one payout per withdrawal at NowPayments: none resent after an unread answer;
    # every payout NowPayments made (the timed-out and cut-off ones included) was adopted.
    external = [
        w["unique_external_id"] for b in sandbox.control.payouts() for w in b["withdrawals"]
    ]
    completed = sorted(
        rows.filter(status="completed").values_list("internal_withdrawal_id", flat=True)
    )
    assert sorted(external) == completed, (external, completed)
    assert len(completed) >= 2, "the accepted-then-unanswered payouts must be adopted"
    unknown = rows.filter(status="processing").count()
    assert unknown + len(completed) == WITHDRAWALS
    books = stack.assert_books_clean(in_flight_ok=bool(unknown))
    assert books.figures["payouts"] == len(completed)
    assert books.figures["payment_completed"] == PAYMENTS
    assert queued == 30  # every fault queued was answered (waited for above)
    elapsed = time.monotonic() - started
    assert elapsed < 300, (
        f"{queued} faults, {len(completed)} paid out, {unknown} unknown: {elapsed}s"
    )
