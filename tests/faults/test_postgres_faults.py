"""Fault 4: running tasks' connections terminated, then PostgreSQL itself crashed and restarted.

On a PostgreSQL cluster private to the test (``private_postgres.py``: the shared server is
never touched) the whole stack runs as the application role, with connections kept between
tasks (``DATABASE_CONN_MAX_AGE=60``, as in production), so every process meets a connection
that died under it.

1. Terminations: while a wave of settlement batches and a round of payouts are being worked
   on, every backend of the application role that is running a statement or holding a
   transaction is ended with ``pg_terminate_backend``, five times a second for eight seconds.
   Each cut transaction rolls back; the worker finds its connection gone, drops it, and the
   settle sweep and the payout poller finish what was cut.
2. Crash: while the next wave settles, PostgreSQL is stopped the hard way (``pg_ctl -m
   immediate``: no checkpoint, WAL replay at the next start) and stays down while NowPayments
   finishes payments; an IPN delivered meanwhile is answered 503 ``database_unavailable`` (so
   NowPayments delivers it again), not 500. It comes back on the same port; no process is
   restarted, and everything completes: both waves, the payments finished during the outage
   (through the poller), the IPN's redelivery, withdrawals approved afterwards.

At the end every process still runs, and the books are clean: each payment credited once, each
withdrawal debited once and refunded iff it failed, no payout made twice, no chain gap.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests
from django.conf import settings
from django.contrib.auth.models import Permission
from django.db import connection

from payments.management.commands.db_roles import ensure_app_role
from payments.models import Payment, PeriodicRun, Transaction, WithdrawalRequest
from payments.services import deposits as service
from payments.services import withdrawals
from payments.services.providers.nowpayments.signature import js_dumps, sign_ipn
from tests.conftest import IPN_SECRET
from tests.factories import CurrencyFactory
from tests.faults.private_postgres import OWNER, PrivatePostgres
from tests.faults.private_redis import PrivateRedis
from tests.faults.stack import FaultStack, fault_stack, make_users
from tests.faults.test_worker_kills import WALLET, PayoutDesk, completed_wave, deposits_among
from tests.payments.test_webhooks import URL as IPN_PATH
from tests.payments.test_webhooks import ipn_body
from tests.workers.processes import set_intervals

pytestmark = [pytest.mark.faults, pytest.mark.e2e, pytest.mark.slow]

POLL, SETTLE, PAYOUTS, PAYOUT_POLL = (
    "workers.payments_poll",
    "workers.payments_settle_sweep",
    "workers.withdrawals_payout_sweep",
    "workers.payouts_poll",
)
WAVE, BATCH, OUTAGE = 600, 25, 6.0
KILL_FOR, KILL_EVERY = 8.0, 0.07
APP_ROLE = settings.PAYMENTS_DB_APP_ROLE


@pytest.fixture
def cluster(transactional_db: Any) -> Iterator[PrivatePostgres]:
    """A private cluster holding a copy of the test database, and this process's Django
    connection pointed at it (as the owner) for the test; pointed back before the flush."""
    db = connection.settings_dict
    source = (
        f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    )
    server = PrivatePostgres()
    saved = dict(db)
    try:
        server.create()
        server.copy_database(source, roles=(APP_ROLE,))
        connection.close()
        db.update(HOST="127.0.0.1", PORT=str(server.port), NAME=server.database, USER=OWNER)
        db["PASSWORD"] = ""
        ensure_app_role(using="default")
        yield server
    finally:
        connection.close()
        db.clear()
        db.update(saved)
        server.remove()


@pytest.fixture
def cluster_stack(
    cluster: PrivatePostgres, sandbox: Any, private_redis: PrivateRedis
) -> Iterator[FaultStack]:
    sandbox.control.set_balance("usdttrc20", "1000000")
    with fault_stack(
        database_url=cluster.url(APP_ROLE),
        broker_url=private_redis.url,
        sandbox=sandbox,
        DATABASE_CONN_MAX_AGE="60",
        PAYMENTS_PAYOUTS_ENABLED="1",
        PAYMENTS_PAYOUT_FAILED_SETTLE_SECONDS="1",
        PAYMENTS_PAYOUT_UNSENT_RETRY_SECONDS="5",  # a claim cut before its call is sent again
    ) as running:
        yield running


class Cutter(threading.Thread):
    """Ends the application role's busy backends every ``KILL_EVERY`` seconds until told."""

    def __init__(self, cluster: PrivatePostgres) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.done = threading.Event()
        self.cut: list[tuple[int, str, str]] = []

    def run(self) -> None:
        while not self.done.wait(KILL_EVERY):
            self.cut += self.cluster.terminate(APP_ROLE)

    def enough(self) -> bool:
        """Ten backends cut, one of them in the middle of a transaction."""
        cut = list(self.cut)
        return len(cut) >= 10 and any(c[1].startswith("idle in transaction") for c in cut)


def send_wave(stack: FaultStack, ids: list[str]) -> None:
    sender = stack.sender()
    for start in range(0, len(ids), BATCH):
        sender.send_task(
            "workers.payments_settle_batch",
            kwargs={"payment_ids": ids[start : start + BATCH]},
            queue="settlement",
        )


def approve_withdrawals(users: list[Any], reviewer: Any, currency: Any, count: int) -> list[int]:
    made = [
        withdrawals.withdrawal_create(
            user_id=users[i % len(users)].pk,
            amount_usd=Decimal("12.00"),
            currency_id=currency.pk,
            wallet_address=WALLET,
        ).pk
        for i in range(count)
    ]
    for pk in made:
        withdrawals.withdrawal_approve(withdrawal_id=pk, admin_user=reviewer)
    return made


def settled_withdrawals(ids: list[int]) -> int:
    finished = WithdrawalRequest.objects.filter(pk__in=ids, status__in=("completed", "failed"))
    return finished.count()


def wait_for_withdrawals(stack: FaultStack, ids: list[int], *, what: str) -> None:
    """Wait until every one of ``ids`` is completed or failed; say where each one is if not."""
    try:
        stack.wait_until(lambda: settled_withdrawals(ids) == len(ids), timeout=120, what=what)
    except AssertionError as exc:
        rows = WithdrawalRequest.objects.filter(pk__in=ids).values_list(
            "pk",
            "status",
            "provider_batch_id",
            "provider_payout_id",
            "payout_attempts",
            "payout_retry_at",
            "payout_last_error",
        )
        leases = PeriodicRun.objects.values_list("name", "holder", "running_until", "last_error")
        raise AssertionError(f"{exc}\nwithdrawals: {list(rows)}\nleases: {list(leases)}") from exc


def test_terminated_connections_and_a_postgres_crash_lose_and_double_nothing(
    cluster: PrivatePostgres, cluster_stack: FaultStack, sandbox: Any
) -> None:
    stack = cluster_stack
    usdt = CurrencyFactory(
        code="USDTTRC20", name="Tether", token="USDT", network="TRC20", decimal_places=6
    )
    set_intervals({POLL: 2, SETTLE: 5, PAYOUTS: 1, PAYOUT_POLL: 2})
    users = make_users(20)
    reviewer = make_users(1, prefix="reviewer")[0]
    reviewer.is_staff = True
    reviewer.save()
    reviewer.user_permissions.add(Permission.objects.get(codename="approve_withdrawalrequest"))
    stack.start_worker("settle", queues="settlement", concurrency=2)
    stack.start_worker("rest", queues="provider,payouts,default", concurrency=2)
    stack.start_beat()
    web = stack.start_web()
    desk = PayoutDesk(sandbox)
    desk.start()
    try:
        funding = completed_wave(users, usdt, 100)
        send_wave(stack, funding)
        stack.wait_until(lambda: deposits_among(funding) == 100, timeout=90, what="funding")

        # --- 1. running tasks' connections terminated, again and again --------------------
        # Work keeps arriving while a thread cuts, at its own pace (not in step with the work).
        paid_a = approve_withdrawals(users, reviewer, usdt, 10)
        wave_a: list[str] = []
        cutter = Cutter(cluster)
        cutter.start()
        # At least KILL_FOR, and on a fast machine (fewer busy backends to catch) longer, up
        # to three times that, until the cuts the asserts below require have been made.
        started = time.monotonic()
        while time.monotonic() < started + KILL_FOR or (
            not cutter.enough() and time.monotonic() < started + 3 * KILL_FOR
        ):
            ids = completed_wave(users, usdt, 2 * BATCH)
            wave_a += ids
            send_wave(stack, ids)
            time.sleep(0.1)
        cutter.done.set()
        cutter.join(timeout=10)
        cut = cutter.cut
        mid_transaction = [c for c in cut if c[1].startswith("idle in transaction")]
        assert len(cut) >= 10, cut
        assert mid_transaction, cut
        stack.wait_until(
            lambda: deposits_among(wave_a) == len(wave_a),
            timeout=180,
            what="every payment of phase 1 settled after the cuts",
        )
        wait_for_withdrawals(stack, paid_a, what="the withdrawals of phase 1 paid out or failed")
        stack.assert_alive("a process died of a cut connection")

        # --- 2. PostgreSQL crashed while a wave settles, restarted on the same port -------
        remote = [
            service.payment_create(
                user_id=users[i].pk, amount_usd=Decimal("30.00"), currency_code="USDTTRC20"
            )
            for i in range(8)
        ]
        wave_b = completed_wave(users, usdt, WAVE)
        send_wave(stack, wave_b)
        stack.wait_until(lambda: deposits_among(wave_b) >= BATCH, timeout=90, what="wave B going")
        connection.close()
        cluster.stop("immediate")
        for payment in remote:  # NowPayments goes on while our database is down
            sandbox.control.complete(payment.provider_payment_id)
        body = ipn_body(sandbox, remote[0], "finished")
        raw = js_dumps(body).encode()
        headers = {
            "Content-Type": "application/json",
            "x-nowpayments-sig": sign_ipn(body, IPN_SECRET),
        }
        during = requests.post(f"{web}{IPN_PATH}", data=raw, headers=headers, timeout=30)
        assert during.status_code == 503, during.text
        assert during.json()["code"] == "database_unavailable"
        assert during.headers["Retry-After"]
        time.sleep(OUTAGE)
        stack.assert_alive("a process died with PostgreSQL")
        cluster.start()

        redelivered = stack.wait_until(
            lambda: (
                answer
                if (
                    answer := requests.post(
                        f"{web}{IPN_PATH}", data=raw, headers=headers, timeout=30
                    )
                ).status_code
                != 503
                else None
            ),
            timeout=60,
            what="the web process answering again after the restart",
        )
        assert redelivered.status_code == 200, redelivered.text
        stack.wait_until(
            lambda: deposits_among(wave_b) == WAVE,
            timeout=180,
            what="wave B settled after the crash",
        )
        stack.wait_until(
            lambda: (
                Transaction.objects.filter(transaction_type="deposit", payment__in=remote).count()
                == len(remote)
            ),
            timeout=120,
            what="payments finished during the outage credited",
        )
        paid_b = approve_withdrawals(users, reviewer, usdt, 5)
        wait_for_withdrawals(
            stack, paid_b, what="withdrawals approved after the restart paid out or failed"
        )
    finally:
        desk.done.set()
    stack.assert_alive("a process died")
    completed = 100 + len(wave_a) + WAVE + len(remote)
    assert Payment.objects.filter(status="completed").count() == completed
    stack.assert_books_clean()
