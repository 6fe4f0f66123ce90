"""Fault 1: 1,000 IPNs for 200 payments, duplicated and reordered, racing the poller.

200 payments are created and paid at the sandbox (in full, half then finished by the merchant,
half and left partially paid, confirming only, or not at all), so NowPayments' word exists and
its own signed IPNs reach the web process. Then 1,000 more IPNs hit the web process from eight
threads: every delivery the sandbox logged, in shuffled order (finished before confirming,
confirming after finished), a hundred of them twice at the same moment, plus late reports
signed with the IPN secret — while beat polls NowPayments every two seconds. Every payment
must end where NowPayments says, each received one credited once under the deposit policy.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pytest
import requests

from payments.models import Payment, ProviderEvent, Transaction
from payments.services import deposits as service
from payments.services.providers.nowpayments.signature import js_dumps, sign_ipn
from tests.conftest import IPN_SECRET
from tests.faults.stack import FaultStack, make_users
from tests.workers.processes import set_intervals

pytestmark = [pytest.mark.faults, pytest.mark.e2e, pytest.mark.slow]

PAYMENTS = 200
STORM = 1000
TWINS = 100  # sends that go out twice at the same moment
POLL, SETTLE = "workers.payments_poll", "workers.payments_settle_sweep"
URL = "/payments/webhooks/nowpayments/"
# What each tenth of the payments does at the sandbox, and where it must end on our side.
PLAN = ["full"] * 6 + ["half_finished", "half", "confirming", "waiting"]
OURS = {
    "finished": "completed",
    "partially_paid": "partially_paid",
    "confirming": "confirming",
    "waiting": "pending",
}


def play(sandbox: Any, payment: Payment, plan: str) -> None:
    control, provider_id = sandbox.control, payment.provider_payment_id
    half = (payment.pay_amount / 2).quantize(Decimal("0.000001"))
    if plan == "full":
        control.complete(provider_id)
    elif plan in ("half", "half_finished"):
        control.pay(provider_id, amount=half)
        control.advance(provider_id, status="partially_paid")
        if plan == "half_finished":
            control.dashboard_finish(provider_id)  # the merchant accepts what arrived
    elif plan == "confirming":
        control.pay(provider_id)


def storm_of(sandbox: Any, rng: random.Random) -> tuple[list[tuple[str, str]], int]:
    """1,000 (body, signature) pairs from what the sandbox sent; and how many payments get a
    later status before an earlier one in the send order."""
    logged = sorted(sandbox.control.ipn_log(kind="payment"), key=lambda d: d["id"])
    late = []
    finals: dict[int, dict[str, Any]] = {}
    for delivery in logged:
        finals[delivery["object_id"]] = json.loads(delivery["body"], parse_float=Decimal)
    for payload in finals.values():
        if payload["payment_status"] in ("finished", "partially_paid"):
            stale = {**payload, "payment_status": "confirming"}  # confirming after finished
            late.append((js_dumps(stale), sign_ipn(stale, IPN_SECRET)))
    base = [(d["body"], d["signature"]) for d in logged] + late
    sends = list(base)
    while len(sends) < STORM - TWINS:
        sends.append(rng.choice(base))
    sends = sends[: STORM - TWINS]
    rng.shuffle(sends)
    for index in sorted(rng.sample(range(len(sends)), TWINS), reverse=True):
        sends.insert(index + 1, sends[index])
    assert len(sends) == STORM
    first_seen: dict[tuple[int, str], int] = {}
    for position, (body, _sig) in enumerate(sends):
        payload = json.loads(body, parse_float=Decimal)
        first_seen.setdefault((payload["payment_id"], payload["payment_status"]), position)
    reordered = sum(
        1
        for (pid, status), at in first_seen.items()
        if status == "finished" and at < first_seen.get((pid, "confirming"), -1)
    )
    return sends, reordered


def send_all(url: str, sends: list[tuple[str, str]]) -> Counter[int]:
    local = threading.local()

    def send(item: tuple[str, str]) -> int:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
            session.trust_env = False
        body, signature = item
        response = session.post(
            url,
            data=body.encode(),
            headers={"Content-Type": "application/json", "x-nowpayments-sig": signature},
            timeout=30,
        )
        return response.status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        return Counter(pool.map(send, sends))


def test_a_storm_of_duplicated_and_reordered_ipns_credits_each_payment_once(
    stack: FaultStack, sandbox: Any, usdt: Any, settings: Any
) -> None:
    started = time.monotonic()
    rng = random.Random(20261)
    set_intervals({POLL: 2, SETTLE: 1})
    settings.PAYMENTS_PUBLIC_BASE_URL = stack.reserve_web_port()  # the sandbox's IPNs go there
    users = make_users(40)
    payments = [
        service.payment_create(
            user_id=users[i % len(users)].pk,
            amount_usd=Decimal(1000 + 37 * i) / 100,
            currency_code="USDTTRC20",
        )
        for i in range(PAYMENTS)
    ]
    stack.start_web()
    stack.start_worker(queues="settlement,default")
    stack.start_worker(queues="provider,settlement")
    stack.start_beat()
    plans = {p.provider_payment_id: PLAN[i % len(PLAN)] for i, p in enumerate(payments)}
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda p: play(sandbox, p, plans[p.provider_payment_id]), payments))

    sends, reordered = storm_of(sandbox, rng)
    assert reordered >= 20, "the storm should send many finished reports before confirming"
    answers = send_all(stack.web_url + URL, sends)
    assert answers == Counter({200: STORM}), answers

    remote = {str(p["payment_id"]): p["payment_status"] for p in sandbox.control.payments()}
    assert Counter(remote.values()) == {
        "finished": 140,
        "partially_paid": 20,
        "confirming": 20,
        "waiting": 20,
    }

    def where_nowpayments_says() -> bool:
        ours = dict(Payment.objects.values_list("provider_payment_id", "status"))
        pending_events = ProviderEvent.objects.filter(outcome="received").exists()
        return not pending_events and all(ours[pid] == OURS[s] for pid, s in remote.items())

    stack.wait_until(where_nowpayments_says, timeout=90, what="every payment where NowPayments is")
    assert not ProviderEvent.objects.filter(outcome="error").exists()
    # The storm stored each distinct report once, however often and however concurrently sent.
    distinct = {json.dumps(json.loads(body), sort_keys=True) for body, _ in sends}
    reports = {
        (json.loads(body)["payment_id"], json.loads(body)["payment_status"]) for body in distinct
    }
    assert len(reports) <= ProviderEvent.objects.count() <= len(distinct)
    deposits = Transaction.objects.filter(transaction_type="deposit")
    assert deposits.count() == 140
    books = stack.assert_books_clean()
    assert books.figures["provider_finished"] == 140
    assert time.monotonic() - started < 300
