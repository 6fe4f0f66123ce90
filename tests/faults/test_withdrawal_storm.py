"""Fault 7: 50 concurrent withdrawal requests and admin actions on one balance.

Fifty API requests race through a real gunicorn (two worker processes, threads) against a
balance that covers only some of them, while two operators approve and reject whatever is
pending and the user cancels some; the workers pay the approved ones out at the sandbox. The
balance never goes below zero, each accepted request holds once and each refused one writes
nothing, every rejected or cancelled one is refunded once, and the books are clean.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.db import connection

from payments import ledger
from payments.errors import PaymentsError
from payments.models import Transaction, UserBalance, WithdrawalRequest
from payments.services import withdrawals
from payments.services.api_keys import api_key_create
from tests.faults.stack import FaultStack, make_users
from tests.faults.test_worker_kills import WALLET
from tests.workers.processes import set_intervals

pytestmark = [pytest.mark.faults, pytest.mark.e2e, pytest.mark.slow]

REQUESTS, AMOUNT, FUNDS = 50, Decimal("25.00"), Decimal("500.00")
FINAL = {"completed", "rejected", "cancelled"}


def _post(url: str, key: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(  # noqa: S310 - our own web process on 127.0.0.1
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {key}",
            "Idempotency-Key": uuid.uuid4().hex,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def test_fifty_racing_withdrawals_and_admin_actions_keep_one_balance_right(
    stack: FaultStack, sandbox: Any, usdt: Any
) -> None:
    set_intervals({"workers.withdrawals_payout_sweep": 1})
    user, approver, rejecter = make_users(3, prefix="storm")
    for operator in (approver, rejecter):
        operator.is_staff = True
        operator.save()
        operator.user_permissions.add(Permission.objects.get(codename="approve_withdrawalrequest"))
    ledger.post(user_id=user.pk, kind="adjustment", amount_usd=FUNDS, idempotency_key="storm:funds")
    _, key = api_key_create(user_id=user.pk, name="storm")
    stack.env["PAYMENTS_THROTTLE_WITHDRAWAL_CREATE"] = "100000/min"
    base = stack.start_web(workers=2)
    stack.start_worker("payouts", queues="payouts,default,provider,settlement", concurrency=2)
    stack.start_beat()

    done = threading.Event()
    decided: dict[str, list[str]] = {"approve": [], "reject": [], "cancel": []}

    def operator(action: str, every: int) -> None:
        """Approve, reject or cancel every ``every``-th pending request, until the storm ends."""
        try:
            _decide(action, every)
        finally:
            connection.close()

    def _decide(action: str, every: int) -> None:
        seen = 0
        while not done.is_set() or WithdrawalRequest.objects.filter(status="pending").exists():
            for pk in WithdrawalRequest.objects.filter(status="pending").values_list("pk", flat=1):
                seen += 1
                if seen % every:
                    continue
                try:
                    if action == "approve":
                        withdrawals.withdrawal_approve(withdrawal_id=pk, admin_user=approver)
                    elif action == "reject":
                        withdrawals.withdrawal_reject(
                            withdrawal_id=pk, admin_user=rejecter, notes="storm"
                        )
                    else:
                        withdrawals.withdrawal_cancel(withdrawal_id=pk, user=user)
                except PaymentsError:
                    continue  # another operator decided it first: the state machine says no
                decided[action].append(str(pk))
            if done.is_set() and action != "approve":
                return  # the approver takes what is left

    operators = [
        threading.Thread(target=operator, args=(action, every), daemon=True)
        for action, every in (("approve", 2), ("reject", 3), ("cancel", 4))
    ]
    for thread in operators:
        thread.start()
    body = {"amount_usd": str(AMOUNT), "currency": "USDTTRC20", "wallet_address": WALLET}
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(
            pool.map(
                lambda _: _post(f"{base}/payments/api/withdrawals/", key, body), range(REQUESTS)
            )
        )
    done.set()
    for thread in operators:
        thread.join(timeout=60)

    codes = sorted({status for status, _ in answers})
    assert set(codes) <= {201, 409}, answers  # never a 5xx, never a lost request
    refused = [body for status, body in answers if status == 409]
    assert all(body["code"] == "insufficient_funds" for body in refused), refused
    accepted = [body["id"] for status, body in answers if status == 201]
    assert WithdrawalRequest.objects.count() == len(accepted)
    # Refunds free funds while requests still arrive, so more than FUNDS / AMOUNT may pass,
    # but never more than funds and refunds allow, and at least what the funds alone cover.
    assert len(accepted) >= FUNDS / AMOUNT

    def settled() -> bool:
        for batch in sandbox.control.payouts():
            for item in batch["withdrawals"]:
                if item["status"] == "WAITING":
                    sandbox.control.advance_payout(item["id"], status="FINISHED")
        return not WithdrawalRequest.objects.exclude(status__in=FINAL).exists()

    stack.wait_until(settled, timeout=120, what="every withdrawal completed, rejected or cancelled")
    balance = UserBalance.objects.get(user=user).balance_usd
    refunded = WithdrawalRequest.objects.filter(status__in=("rejected", "cancelled")).count()
    completed = WithdrawalRequest.objects.filter(status="completed").count()
    assert completed + refunded == len(accepted)
    assert balance == FUNDS - AMOUNT * completed >= 0
    postings = Transaction.objects.filter(user=user)
    assert postings.filter(transaction_type="withdrawal").count() == len(accepted)
    assert postings.filter(transaction_type="refund").count() == refunded
    assert refunded >= 1, (decided, completed, refunded)
    assert completed >= 1, (decided, completed, refunded)
    paid = [item for batch in sandbox.control.payouts() for item in batch["withdrawals"]]
    assert len(paid) == completed  # one payout per completed withdrawal, nothing twice
    stack.assert_books_clean()
