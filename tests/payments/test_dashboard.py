"""The operators' dashboard on the admin index: figures, links, queue depth, chart, cost."""

from __future__ import annotations

import re
import socket
import time
from datetime import timedelta
from decimal import Decimal

import pytest
import redis
from django.contrib import admin
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from payments import ledger
from payments.admin.dashboard import INDEX_TEMPLATE, queue_names
from payments.models.ops import DriftKind
from payments.models.payment import PaymentStatus
from payments.services import deposits, withdrawals
from payments.services.findings import finding_record, finding_resolve
from payments.services.notifications import notifications_sweep
from tests.factories import CurrencyFactory, PaymentFactory, UserFactory
from tests.workers.processes import REDIS_HOST, broker_url, redis_db
from workers.leases import run_periodic

pytestmark = pytest.mark.django_db

INDEX = "/admin/"


@pytest.fixture
def viewer(client):
    user = UserFactory(username="dash-viewer", is_staff=True)
    user.groups.add(Group.objects.get(name="viewer"))
    client.force_login(user)
    return user


@pytest.fixture
def approver():
    user = UserFactory(username="dash-approver", is_staff=True)
    user.groups.add(Group.objects.get(name="approver"))
    return user


def figure(html: str, name: str) -> str:
    found = re.findall(rf'data-figure="{re.escape(name)}">([^<]*)<', html)
    assert len(found) == 1, f"{name}: {found}"
    return found[0].strip()


def index(client) -> str:
    response = client.get(INDEX)
    assert response.status_code == 200
    return response.content.decode()


def shift(table: str, pk, **columns: str) -> None:
    """Move a row's timestamps into the past (``column="3 days"``), as history would have.

    Test set-up only: the creation time is a frozen column, so the guard triggers are off for
    this one statement (the tests log in as the owner, a superuser).
    """
    assignments = ", ".join(f"{name} = now() - %s::interval" for name in columns)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(
            f"UPDATE {table} SET {assignments} WHERE id = %s",
            [*columns.values(), pk],
        )
        cursor.execute("SET LOCAL session_replication_role = origin")


def funded_user(usd: str = "500.00"):
    # No password: hashing one per user would cost most of the history test's time.
    user = UserFactory(password=None)
    ledger.post(
        user_id=user.pk,
        kind="deposit",
        amount_usd=Decimal(usd),
        idempotency_key=f"fund:{user.pk}",
    )
    return user


def withdrawal(amount: str = "40.00", user=None):
    user = user or funded_user()
    return withdrawals.withdrawal_create(
        user_id=user.pk,
        amount_usd=Decimal(amount),
        currency_id=CurrencyFactory().pk,
        wallet_address="TAddr1",
    )


def processing(approver, amount: str = "40.00"):
    w = withdrawal(amount)
    withdrawals.withdrawal_approve(withdrawal_id=w.pk, admin_user=approver)
    return withdrawals.withdrawal_start_processing(withdrawal_id=w.pk)


def completed_payment(amount: str = "25.00", user=None):
    payment = PaymentFactory(amount_usd=Decimal(amount), user=user or UserFactory(password=None))
    return deposits.payment_move(payment_id=payment.pk, status=PaymentStatus.COMPLETED)


def test_the_index_uses_our_template_and_keeps_the_app_list(client, viewer):
    assert admin.site.index_template == INDEX_TEMPLATE
    response = client.get(INDEX)
    names = [t.name for t in response.templates]
    assert INDEX_TEMPLATE in names
    assert "admin/index.html" in names, "ours extends the admin's (or the host's) index"
    assert "admin/payments/dashboard.html" in names
    html = response.content.decode()
    assert html.index('id="payments-dashboard"') < html.index("app-payments")


def test_the_figures_count_the_rows_and_link_to_the_filtered_changelists(
    client, viewer, approver, settings
):
    settings.PAYMENTS_PAYOUT_STUCK_MINUTES = 60
    old = withdrawal()
    shift("payments_withdrawalrequest", old.pk, created_at="3 hours")
    withdrawal()
    withdrawals.withdrawal_approve(withdrawal_id=withdrawal().pk, admin_user=approver)
    stuck = processing(approver)
    shift("payments_withdrawalrequest", stuck.pk, processing_at="2 hours")
    processing(approver)  # processing, but not for long
    for reason in ("wrong asset", "underpaid"):
        deposits.payment_move(
            payment_id=PaymentFactory().pk, status=PaymentStatus.REVIEW, reason=reason
        )
    finding_record(kind=DriftKind.CHAIN_BROKEN, subject="user:1")
    finding_record(kind=DriftKind.CHAIN_BROKEN, subject="user:2")
    resolved = finding_record(kind=DriftKind.BALANCE_MISMATCH, subject="user:3")
    finding_resolve(finding_id=resolved.pk, user=approver, notes="corrected")
    finding_record(kind=DriftKind.BALANCE_MISMATCH, subject="user:4")

    html = index(client)
    assert figure(html, "withdrawals-pending") == "2"
    assert "oldest waiting 3\xa0hours" in html
    assert figure(html, "payouts-stuck") == "1"
    assert "oldest processing 2\xa0hours" in html
    assert figure(html, "payments-review") == "2"
    assert figure(html, "finding-chain_broken") == "2"
    assert figure(html, "finding-balance_mismatch") == "1"
    assert figure(html, "finding-payment_in_review") == "2", "each review records a finding"

    links = dict(re.findall(r'<a href="([^"]+)" data-figure="([^"]+)"', html))
    expected = {
        "withdrawals-pending": 2,
        "payouts-stuck": 1,
        "payments-review": 2,
        "finding-chain_broken": 2,
        "finding-balance_mismatch": 1,
    }
    by_figure = {name: url.replace("&amp;", "&") for url, name in links.items()}
    for name, count in expected.items():
        response = client.get(by_figure[name])
        assert response.status_code == 200, name
        assert response.context["cl"].result_count == count, name


def test_each_periodic_job_shows_its_runs_skips_and_last_error(client, viewer):
    run_periodic("workers.ledger_reconcile", lambda: {"ok": 1}, min_interval=3600, max_runtime=60)
    run_periodic("workers.ledger_reconcile", lambda: {"ok": 1}, min_interval=3600, max_runtime=60)

    def broken() -> dict:
        raise RuntimeError("the ledger is on fire")

    with pytest.raises(RuntimeError):
        run_periodic("workers.provider_reconcile", broken, min_interval=0, max_runtime=60)
    html = index(client)
    rows = dict(re.findall(r'<tr data-job="([^"]+)"[^>]*>(.*?)</tr>', html, re.S))
    assert set(rows) >= {"workers.ledger_reconcile", "workers.notifications_sweep"}
    ledger_row = rows["workers.ledger_reconcile"]
    assert figure(ledger_row, "job-runs") == "1"
    assert figure(ledger_row, "job-skips") == "1"
    assert figure(ledger_row, "job-state").startswith("ok")
    assert "Reconcile the ledger" in ledger_row, "its beat schedule"
    failed = rows["workers.provider_reconcile"]
    assert figure(failed, "job-state").startswith("failed")
    assert "RuntimeError: the ledger is on fire" in failed
    assert figure(rows["workers.notifications_sweep"], "job-state") == "never ran"


def test_queue_depth_is_read_from_the_redis_broker(client, viewer, settings):
    settings.CELERY_BROKER_URL = broker_url()
    broker = redis.Redis(host=REDIS_HOST, port=6379, db=redis_db())
    broker.flushdb()
    try:
        broker.rpush("default", "a", "b", "c")
        broker.rpush("default\x06\x163", "high priority")
        broker.rpush("payouts", "p")
        html = index(client)
    finally:
        broker.flushdb()
        broker.close()
    assert figure(html, "queue-default") == "4"
    assert figure(html, "queue-payouts") == "1"
    assert {"provider", "settlement", "payouts", "default"} <= set(queue_names())
    for name in queue_names():
        assert figure(html, f"queue-{name}").isdigit()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("url", ["redis://127.0.0.1:{port}/0", "filesystem://"])
def test_a_broker_that_cannot_report_says_so_quickly(client, viewer, settings, url):
    settings.CELERY_BROKER_URL = url.format(port=closed_port())
    started = time.monotonic()
    html = index(client)
    assert time.monotonic() - started < 3
    message = figure(html, "queues-unknown")
    assert message.startswith("The broker cannot report queue depth (")
    assert "queue-default" not in html


def test_the_chart_shows_thirty_days_with_their_counts_and_sums(client, viewer):
    for amount in ("25.00", "10.50"):
        payment = completed_payment(amount)
        shift("payments_payment", payment.pk, completed_at="3 days")
    completed_payment("5.00")  # today
    w = withdrawal("40.00")
    shift("payments_withdrawalrequest", w.pk, created_at="3 days")
    ancient = completed_payment("99.00")
    shift("payments_payment", ancient.pk, completed_at="40 days")
    html = index(client)

    assert '<svg xmlns="http://www.w3.org/2000/svg"' in html
    assert '<title id="pd-chart-title">' in html
    assert "Day (UTC)" in html, "a labelled x axis"
    assert "USD per day" in html, "a labelled y axis"
    days = re.findall(r'<g class="pd-day" data-day="([\d-]+)">', html)
    today = timezone.now().date()
    assert len(days) == 30
    assert days[0] == str(today - timedelta(days=29))
    assert days[-1] == str(today)
    day = str(today - timedelta(days=3))
    group = re.search(rf'data-day="{day}">(.*?)</g>', html, re.S)
    assert group is not None
    assert f"{day}: 2 deposits credited, $35.50" in group.group(1)
    assert f"{day}: 1 withdrawals requested, $40" in group.group(1)
    assert "3 deposits credited worth 40.50 USD" in html, "the 40-day-old one is out"
    row = re.search(rf'<tr data-row="{day}">(.*?)</tr>', html, re.S)
    assert row is not None
    assert "35.50" in row.group(1)
    assert "40.00" in row.group(1)
    bar_link = re.search(rf'data-day="{day}"><a href="([^"]+)"', html)
    assert bar_link is not None
    response = client.get(bar_link.group(1).replace("&amp;", "&"))
    assert response.context["cl"].result_count == 2


def test_only_staff_who_may_view_payments_see_it(client):
    nobody = UserFactory(username="staff-without-perms", is_staff=True)
    client.force_login(nobody)
    assert 'id="payments-dashboard"' not in index(client)

    nobody.user_permissions.add(Permission.objects.get(codename="view_ledgerdrift"))
    nobody = type(nobody).objects.get(pk=nobody.pk)  # a fresh permission cache
    client.force_login(nobody)
    html = index(client)
    assert 'id="payments-dashboard"' in html
    assert "Open findings" in html
    assert "withdrawals-pending" not in html
    assert "Queue depth" not in html
    assert "pd-chart-title" not in html

    client.logout()
    response = client.get(INDEX)
    assert response.status_code == 302


def history(approver, rows: int) -> None:
    """``rows`` of each: withdrawals, payments settled, findings, over the last 30 days."""
    kinds = list(DriftKind.values)
    user = funded_user(f"{30 * rows}.00")
    for n in range(rows):
        withdrawal("20.00" if n % 2 else "30.00", user=user)
        completed_payment("12.00", user=user)
        finding_record(kind=kinds[n % len(kinds)], subject=f"user:{n}")
    if rows > 2:
        processing(approver)
        deposits.payment_move(
            payment_id=PaymentFactory().pk, status=PaymentStatus.REVIEW, reason="x"
        )
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(
            "UPDATE payments_withdrawalrequest SET created_at = "
            "now() - (abs(hashtext(id::text)) % 30) * interval '1 day'"
        )
        cursor.execute(
            "UPDATE payments_payment SET completed_at = "
            "now() - (abs(hashtext(id::text)) % 30) * interval '1 day' "
            "WHERE completed_at IS NOT NULL"
        )
        cursor.execute("SET LOCAL session_replication_role = origin")


def queries_of_the_index(client) -> int:
    with CaptureQueriesContext(connection) as queries:
        index(client)
    return len(queries)


def test_the_index_runs_as_many_queries_with_200_rows_of_history_as_with_5(
    client, viewer, approver
):
    history(approver, 5)
    index(client)  # warm: content types, session
    few = queries_of_the_index(client)
    history(approver, 195)
    html = index(client)
    assert figure(html, "withdrawals-pending") == "200"
    assert queries_of_the_index(client) == few
    assert few <= 20


def test_notifications_have_a_read_only_admin(client, viewer):
    finding_record(kind=DriftKind.CHAIN_BROKEN, subject="user:5")
    notifications_sweep()
    response = client.get("/admin/payments/notification/")
    assert response.status_code == 200
    assert response.context["cl"].result_count == 1
    html = response.content.decode()
    for column in ("column-created_at", "column-kind", "column-subject", "column-sent_at"):
        assert column in html
    assert "column-attempts" in html
    row = response.context["cl"].result_list[0]
    change = client.post(f"/admin/payments/notification/{row.pk}/change/", {"subject": "x"})
    assert change.status_code == 403
    assert client.get("/admin/payments/notification/add/").status_code == 403
    row.refresh_from_db()
    assert row.subject.startswith("[Payments] Finding")
