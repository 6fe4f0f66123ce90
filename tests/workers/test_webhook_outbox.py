"""The webhook outbox end to end: a real worker is SIGKILLed while it POSTs, and no event is lost.

Delivery is at least once: the host may see a delivery twice (here the killed worker's request
reached it before the worker died) and dedupes by ``X-Payments-Delivery``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Permission

from payments import ledger
from payments.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from payments.services import withdrawals
from tests.factories import CurrencyFactory, UserFactory
from tests.payments.services.test_host_webhooks_delivery import BLOCK, Receiver, verify
from tests.workers.processes import Processes, flush_broker, process_env, set_intervals, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SECRET = "whsec_e2e_secret_of_the_host"
TRON = "TQn9Y2khEsLJW1ChVWFMSMeRDow5KcbLSE"


@pytest.fixture
def procs(transactional_db: Any, sandbox: Any) -> Iterator[Processes]:
    flush_broker()
    # A short timeout, so the killed sender's claim (twice the timeout) expires soon.
    env = process_env(sandbox, PAYMENTS_WEBHOOK_TIMEOUT="3", PAYMENTS_WEBHOOK_RETRY_SECONDS="1")
    processes = Processes(env)
    try:
        yield processes
    finally:
        processes.stop_all()
        flush_broker()


def approved_withdrawals(count: int) -> list[Any]:
    """``count`` withdrawals approved through the lifecycle: one withdrawal.approved each."""
    currency = CurrencyFactory()
    reviewer = UserFactory(is_staff=True)
    reviewer.user_permissions.add(Permission.objects.get(codename="approve_withdrawalrequest"))
    made = []
    for _ in range(count):
        user = UserFactory()
        ledger.post(
            user_id=user.pk, kind="deposit", amount_usd=Decimal("50"), idempotency_key=f"f{user.pk}"
        )
        request = withdrawals.withdrawal_create(
            user_id=user.pk,
            amount_usd=Decimal("20.00"),
            currency_id=currency.pk,
            wallet_address=TRON,
        )
        made.append(withdrawals.withdrawal_approve(withdrawal_id=request.pk, admin_user=reviewer))
    return made


def test_a_worker_killed_while_sending_loses_no_event(procs: Processes) -> None:
    with Receiver([BLOCK, 200]) as host:
        WebhookEndpoint.objects.create(url=host.url, secret=SECRET)
        approved_withdrawals(3)
        ids = set(WebhookDelivery.objects.values_list("pk", flat=True))
        assert len(ids) == 3
        set_intervals({"workers.webhooks_dispatch": 1})
        worker = procs.worker(concurrency=1, queues="default")
        procs.beat()
        wait_until(lambda: host.received, timeout=40, what="the first POST", logs=procs)
        time.sleep(0.5)
        blocked = int(host.received[0].headers["x-payments-delivery"])
        assert WebhookDelivery.objects.get(pk=blocked).claimed_until is not None
        procs.kill(worker)  # SIGKILL to the worker's process group, mid-POST
        assert WebhookDelivery.objects.get(pk=blocked).status == "pending"

        procs.worker(concurrency=1, queues="default")

        def all_delivered() -> bool:
            return WebhookDelivery.objects.filter(status="delivered").count() == 3

        wait_until(all_delivered, timeout=40, what="every delivery", logs=procs)

    # The host saw every delivery, the blocked one twice; each request verifies.
    seen = [int(r.headers["x-payments-delivery"]) for r in host.received]
    assert set(seen) == ids
    assert seen.count(blocked) == 2
    assert all(verify(SECRET, r.headers, r.body) for r in host.received)
    bodies = [r.body for r in host.received if int(r.headers["x-payments-delivery"]) == blocked]
    assert bodies[0] == bodies[1]
    # The killed attempt left no log row (it died before writing one); the others one each.
    assert WebhookAttempt.objects.filter(delivery_id=blocked).count() == 1
    assert set(WebhookAttempt.objects.values_list("status_code", flat=True)) == {200}
