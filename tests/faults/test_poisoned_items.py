"""Scenario 9: one poisoned item never blocks the others.

Real worker and beat processes, the sandbox as NowPayments, three poisoned items at once:

- a payout: payouts on without ``NOWPAYMENTS_TOTP_SECRET`` (the issue's case; `check --deploy`
  now refuses it, tests/payments/test_checks.py), so every payout is created and never
  verified. The operator finishes three of the four at NowPayments; the first one, ahead of
  them in every sweep, stays unverified. It used to raise in every sweep, so nothing behind it
  was ever followed: now each failure is counted on its own row and backs it off;
- a payment NowPayments reports with an amount our columns cannot hold: its page of the poll
  was refused as a whole, every cycle, so no payment in it was ever applied; now the page is
  applied report by report and only the poisoned one is left out;
- a currency whose payout terms NowPayments keeps failing to give: the sync goes on with the
  others and asks for that coin again only after its backoff.

Everything else completes; the books are clean but for the poisoned payment, which is named.
"""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from payments import ledger
from payments.models import Currency, Payment, Transaction, WithdrawalRequest
from payments.services import deposits, withdrawals
from tests.factories import UserFactory
from tests.faults.stack import FaultStack
from tests.workers.processes import set_intervals

pytestmark = [pytest.mark.faults, pytest.mark.e2e, pytest.mark.slow]

PAYOUTS, POLL, SETTLE, SYNC = (
    "workers.withdrawals_payout_sweep",
    "workers.payments_poll",
    "workers.payments_settle_sweep",
    "workers.currencies_sync",
)
ADDRESS = "TQn9Y2khEsLJW1ChVWFMSMeRDow5KcbLSE"
RETRY_SECONDS = 4  # the first backoff (then 8, 16...): short, so the test sees a retry
POISONED_COIN_PATH = "/v1/payout-withdrawal/min-amount/btc"
HUGE = Decimal("1e19")  # coins: more than numeric(36, 18) holds


def test_one_poisoned_payout_payment_and_currency_never_block_the_others(
    stack: FaultStack, sandbox: Any, usdt: Any
) -> None:
    started = time.monotonic()
    control = sandbox.control
    stack.env.update(NOWPAYMENTS_TOTP_SECRET="", PAYMENTS_ITEM_RETRY_SECONDS=str(RETRY_SECONDS))
    set_intervals({PAYOUTS: 1, POLL: 2, SETTLE: 1, SYNC: 2})
    control.set_fault("http_500", count=1000, path=POISONED_COIN_PATH)

    users = [UserFactory() for _ in range(4)]
    reviewer = UserFactory(is_staff=True)
    reviewer.user_permissions.add(Permission.objects.get(codename="approve_withdrawalrequest"))
    for user in users:
        ledger.post(
            user_id=user.pk,
            kind="bonus",
            amount_usd=Decimal("100.00"),
            idempotency_key=f"seed:{user.pk}",
        )
    payments = [
        deposits.payment_create(
            user_id=users[i % 4].pk, amount_usd=Decimal(20 + i), currency_code="USDTTRC20"
        )
        for i in range(6)
    ]
    poisoned_payment, good_payments = payments[0], payments[1:]
    control.pay(poisoned_payment.provider_payment_id, amount=HUGE)
    control.advance(poisoned_payment.provider_payment_id, status="finished")
    for payment in good_payments:
        control.complete(payment.provider_payment_id)
    requested = []
    for user in users:  # approved in this order: the poisoned payout is first in every sweep
        withdrawal = withdrawals.withdrawal_create(
            user_id=user.pk,
            amount_usd=Decimal("30.00"),
            currency_id=usdt.pk,
            wallet_address=ADDRESS,
        )
        withdrawals.withdrawal_approve(withdrawal_id=withdrawal.pk, admin_user=reviewer)
        requested.append(withdrawal.pk)
    poisoned_payout, good_payouts = requested[0], requested[1:]

    stack.start_worker(concurrency=2)
    stack.start_beat()

    def sent() -> dict[Any, str] | None:
        rows = dict(
            WithdrawalRequest.objects.filter(pk__in=requested).values_list(
                "pk", "provider_batch_id"
            )
        )
        return rows if all(rows.values()) else None

    batches = stack.wait_until(sent, timeout=60, what="every payout to be created")
    # The operator confirms three payouts in the NowPayments dashboard; the first stays unverified.
    for pk in good_payouts:
        control.advance_payout(batches[pk], status="FINISHED")

    def others_done() -> bool:
        payouts_done = WithdrawalRequest.objects.filter(
            pk__in=good_payouts, status="completed"
        ).count() == len(good_payouts)
        credited = Transaction.objects.filter(
            payment__in=good_payments, transaction_type="deposit"
        ).count() == len(good_payments)
        coins = Currency.objects.filter(code__in=("ETH", "LTC"), withdrawal_synced_at__isnull=False)
        return payouts_done and credited and coins.count() == 2

    stack.wait_until(others_done, timeout=60, what="the unpoisoned items to complete")
    time.sleep(RETRY_SECONDS * 2)  # more sweeps, polls and syncs go by with the poison in place
    stack.assert_alive("a process died of a poisoned item")

    # The poisoned payout: still processing, never refunded, its failures counted and backed
    # off (far fewer tries than sweeps), the reason in view for an operator.
    payout = WithdrawalRequest.objects.get(pk=poisoned_payout)
    assert payout.status == "processing"
    assert not Transaction.objects.filter(withdrawal_request=payout, transaction_type="refund")
    assert "NOWPAYMENTS_TOTP_SECRET" in payout.payout_last_error
    sweeps = time.monotonic() - started
    assert 1 <= payout.payout_attempts <= 5, (payout.payout_attempts, sweeps)
    assert payout.payout_retry_at is not None
    assert payout.payout_retry_at > timezone.now() - timedelta(seconds=RETRY_SECONDS)
    # No payout sent twice.
    sent_ids = [w["unique_external_id"] for b in control.payouts() for w in b["withdrawals"]]
    assert sorted(sent_ids) == sorted(
        WithdrawalRequest.objects.filter(pk__in=requested).values_list(
            "internal_withdrawal_id", flat=True
        )
    )

    # The poisoned payment: left out alone, uncredited; the five others credited once each.
    assert Payment.objects.get(pk=poisoned_payment.pk).status != "completed"
    assert not Transaction.objects.filter(payment=poisoned_payment)

    # The poisoned coin: asked again only after its backoff, while the sync ran many times.
    btc = Currency.objects.get(code="BTC")
    syncs = control.requests().get("GET /v1/full-currencies", 0)
    assert btc.terms_failures >= 1
    assert syncs >= btc.terms_failures + 2, (syncs, btc.terms_failures)  # some syncs skipped it
    assert "payout terms" in btc.terms_last_error
    assert btc.terms_retry_at is not None

    stack.stop()
    problems, reconcile = books_problems(stack, in_flight_ok=True)
    assert problems, "the poisoned payment differs from NowPayments' word: the books must say so"
    assert all(str(poisoned_payment.pk) in p for p in problems), (problems, reconcile)
    assert time.monotonic() - started < 150


def books_problems(stack: FaultStack, **options: Any) -> tuple[list[str], str]:
    """The books check's problems (none: an empty list), and what reconciliation printed."""
    try:
        stack.assert_books_clean(**options)
    except AssertionError as exc:
        text, _, reconcile = str(exc).partition("\n--- reconcile:")
        return [line.strip() for line in text.splitlines()[1:] if line.strip()], reconcile
    return [], ""
