"""Several worker hosts on separate queues, web and beat, all through PgBouncer (transaction pool).

What an operator who outgrows one machine runs (README, "Across several hosts"): workers
named for three hosts, each consuming its own queues (settlement on two of them, so two drains
and settle batches race), one beat, a gunicorn web receiving the sandbox's IPNs, every process
logged in as the application role through a PgBouncer in transaction pooling that has fewer
server connections than there are clients keeping theirs (CONN_MAX_AGE). Deposits are paid
and a withdrawal is paid out; the books must come out exact.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from decimal import Decimal
from urllib.parse import quote

import pytest
from celery import Celery
from django.conf import settings as django_settings
from django.contrib.auth.models import Permission
from django.db import connection
from django.db.models import Count, Sum

from payments import ledger
from payments.models import Payment, ProviderEvent, Transaction, UserBalance, WithdrawalRequest
from payments.services import deposits, withdrawals
from tests.factories import UserFactory
from tests.payments.test_ledger_concurrency import assert_ledger_consistent
from tests.scale.pgbouncer import PgBouncer
from tests.workers.processes import (
    Processes,
    broker_url,
    flush_broker,
    free_port,
    process_env,
    set_intervals,
    start_web,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

HOSTS = {"hostA": "provider", "hostB": "settlement", "hostC": "settlement,payouts,default"}
DEPOSITS = 6
POOL_SIZE = 3


@pytest.fixture
def bouncer() -> Iterator[PgBouncer]:
    db = connection.settings_dict
    app_password = os.environ.get("PAYMENTS_DB_APP_PASSWORD", "")
    server = PgBouncer(
        port=free_port(),
        upstream_host=db["HOST"] or "127.0.0.1",
        upstream_port=int(db["PORT"] or 5432),
        users={django_settings.PAYMENTS_DB_APP_ROLE: app_password, "postgres": ""},
        pool_size=POOL_SIZE,
    ).start()
    try:
        yield server
    finally:
        server.stop()


def through(bouncer: PgBouncer) -> str:
    """This test's database as the application role, through PgBouncer."""
    user = quote(django_settings.PAYMENTS_DB_APP_ROLE, safe="")
    password = os.environ.get("PAYMENTS_DB_APP_PASSWORD", "")
    credentials = f"{user}:{quote(password, safe='')}" if password else user
    name = connection.settings_dict["NAME"]
    return f"postgres://{credentials}@127.0.0.1:{bouncer.port}/{name}"


def test_worker_hosts_on_their_own_queues_through_pgbouncer_keep_the_books_exact(
    sandbox, usdt, bouncer, settings
):
    flush_broker()
    env = process_env(
        sandbox,
        DATABASE_URL=through(bouncer),
        DATABASE_POOLER="pgbouncer",
        DATABASE_CONN_MAX_AGE="60",  # clients keep their connection; PgBouncer shares servers
        PAYMENTS_PAYOUTS_ENABLED="1",
    )
    procs = Processes(env)
    try:
        set_intervals(
            {
                "workers.payments_poll": 2,
                "workers.payments_settle_sweep": 2,
                "workers.withdrawals_payout_sweep": 1,
            }
        )
        sandbox.control.set_balance("usdttrc20", "100000")
        port = free_port()
        start_web(procs, port)
        settings.PAYMENTS_PUBLIC_BASE_URL = f"http://127.0.0.1:{port}"  # the sandbox's IPNs
        for host, queues in HOSTS.items():
            procs.worker(concurrency=1, queues=queues, hostname=host)
        procs.beat()

        # A withdrawal, held on a balance that exists before the deposits arrive.
        payer = UserFactory()
        reviewer = UserFactory(is_staff=True)
        reviewer.user_permissions.add(Permission.objects.get(codename="approve_withdrawalrequest"))
        ledger.post(
            user_id=payer.pk, kind="deposit", amount_usd=Decimal("30.00"), idempotency_key="seed"
        )
        withdrawal = withdrawals.withdrawal_create(
            user_id=payer.pk,
            amount_usd=Decimal("20.00"),
            currency_id=usdt.pk,
            wallet_address="TQn9Y2khEsLJW1ChVWFMSMeRDow5KcbLSE",
        )
        withdrawals.withdrawal_approve(withdrawal_id=withdrawal.pk, admin_user=reviewer)

        users = [payer, UserFactory(), UserFactory()]
        payments = [
            deposits.payment_create(
                user_id=users[i % len(users)].pk,
                amount_usd=Decimal(10 + i),
                currency_code="USDTTRC20",
            )
            for i in range(DEPOSITS)
        ]
        for payment in payments:
            sandbox.control.complete(payment.provider_payment_id)

        def credited() -> bool:
            return (
                Transaction.objects.filter(payment__in=payments, transaction_type="deposit").count()
                == DEPOSITS
            )

        wait_until(credited, timeout=90, what="every deposit credited", logs=procs)
        sent = wait_until(
            lambda: WithdrawalRequest.objects.get(pk=withdrawal.pk).provider_batch_id,
            timeout=60,
            what="the payout to be sent",
            logs=procs,
        )
        sandbox.control.advance_payout(sent, status="FINISHED")
        wait_until(
            lambda: WithdrawalRequest.objects.get(pk=withdrawal.pk).status == "completed",
            timeout=60,
            what="the withdrawal to complete",
            logs=procs,
        )

        def ipns_applied() -> bool:
            log = sandbox.control.ipn_log()
            delivered = log and all(entry["delivered"] for entry in log)
            return bool(delivered) and not ProviderEvent.objects.filter(outcome="received").exists()

        wait_until(ipns_applied, timeout=60, what="every IPN delivered and applied", logs=procs)

        # Each host answers under its own name.
        names = {
            name for reply in Celery(broker=broker_url()).control.ping(timeout=3) for name in reply
        }
        assert {name.split("@", 1)[1] for name in names} == set(HOSTS), names

        # PgBouncer multiplexed: more clients kept their connection than it had servers.
        pools = [
            p for p in bouncer.show("POOLS") if p["database"] == connection.settings_dict["NAME"]
        ]
        clients = [
            c for c in bouncer.show("CLIENTS") if c["database"] == connection.settings_dict["NAME"]
        ]
        servers = [
            s for s in bouncer.show("SERVERS") if s["database"] == connection.settings_dict["NAME"]
        ]
        assert len(clients) > POOL_SIZE, (clients, pools)
        assert len(servers) <= POOL_SIZE, servers
        assert {c["user"] for c in clients} == {django_settings.PAYMENTS_DB_APP_ROLE}
    finally:
        procs.stop_all()
        flush_broker()

    # The books: every payment credited exactly once, the payout debited once, no event lost.
    per_payment = (
        Transaction.objects.filter(transaction_type="deposit", payment__isnull=False)
        .values("payment_id")
        .annotate(n=Count("id"))
    )
    assert {row["payment_id"] for row in per_payment} == {p.pk for p in payments}
    assert {row["n"] for row in per_payment} == {1}
    for payment in payments:
        payment.refresh_from_db()
        assert payment.status == Payment.PaymentStatus.COMPLETED
    assert not ProviderEvent.objects.filter(outcome__in=["received", "error"]).exists()
    assert Transaction.objects.filter(withdrawal_request_id=withdrawal.pk).count() == 1
    expected = Decimal("30.00") - Decimal("20.00") + sum(Decimal(10 + i) for i in range(DEPOSITS))
    assert UserBalance.objects.aggregate(s=Sum("balance_usd"))["s"] == expected
    for user in users:
        assert_ledger_consistent(user.pk)
    assert len(sandbox.control.payouts()) == 1
