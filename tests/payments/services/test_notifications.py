"""Operator e-mails: one per event, only recent events, retried on SMTP errors, never twice."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from datetime import timedelta
from decimal import Decimal

import pytest
import redis
from django.contrib.auth.models import Group
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend
from django.db import connection
from django.utils import timezone
from kombu import pools as kombu_pools

from payments import ledger
from payments.models import Notification
from payments.models.ops import DriftKind
from payments.models.payment import PaymentStatus
from payments.services import deposits, withdrawals
from payments.services.findings import finding_record
from payments.services.notifications import (
    SendOutcome,
    notification_send,
    notifications_sweep,
    operator_recipients,
)
from project.celery import app as celery_app
from tests.factories import CurrencyFactory, PaymentFactory, UserFactory
from tests.workers.processes import REDIS_HOST, broker_url, redis_db
from workers.tasks import notification_send_task, notifications_sweep_task

pytestmark = pytest.mark.django_db

LOCMEM = "django.core.mail.backends.locmem.EmailBackend"


@pytest.fixture
def mailbox(settings):
    settings.EMAIL_BACKEND = LOCMEM
    settings.PAYMENTS_OPERATOR_EMAILS = ["ops@example.com", "lead@example.com"]
    settings.PAYMENTS_NOTIFY_WITHDRAWAL_WAITING_MINUTES = 30
    settings.PAYMENTS_NOTIFY_LOOKBACK_HOURS = 24
    mail.outbox = []
    return mail.outbox


def sweep_and_send(now=None) -> list[str]:
    """One sweep, then each send task it asks for, called as a worker would; the outcomes."""
    result = notifications_sweep(now=now)
    return [notification_send_task(notification_id=pk) for pk in result.to_send]


def new_withdrawal(amount: str = "40.00"):
    user = UserFactory()
    ledger.post(
        user_id=user.pk,
        kind="deposit",
        amount_usd=Decimal("100.00"),
        idempotency_key=f"fund:{user.pk}",
    )
    return withdrawals.withdrawal_create(
        user_id=user.pk,
        amount_usd=Decimal(amount),
        currency_id=CurrencyFactory().pk,
        wallet_address="TAddr1",
    )


@pytest.fixture
def approver():
    user = UserFactory(username="approver1", is_staff=True, email="approver1@example.com")
    user.groups.add(Group.objects.get(name="approver"))
    return user


def test_a_withdrawal_waiting_too_long_is_mailed_once(mailbox):
    withdrawal = new_withdrawal()
    assert sweep_and_send() == [], "not waiting 30 minutes yet"
    later = timezone.now() + timedelta(minutes=31)
    assert sweep_and_send(now=later) == ["sent"]
    [message] = mailbox
    assert withdrawal.internal_withdrawal_id in message.subject
    assert message.to == ["ops@example.com", "lead@example.com"]
    assert f"/admin/payments/withdrawalrequest/{withdrawal.pk}/change/" in message.body
    row = Notification.objects.get()
    assert row.key == f"withdrawal_waiting:{withdrawal.pk}"
    assert row.sent_at is not None
    assert (row.attempts, row.recipients) == (1, ["ops@example.com", "lead@example.com"])
    assert sweep_and_send(now=later + timedelta(minutes=5)) == []
    assert len(mailbox) == 1


def test_a_failed_payout_is_mailed_once(mailbox, approver):
    withdrawal = new_withdrawal()
    withdrawals.withdrawal_approve(withdrawal_id=withdrawal.pk, admin_user=approver)
    withdrawals.withdrawal_start_processing(withdrawal_id=withdrawal.pk)
    withdrawals.withdrawal_fail(withdrawal_id=withdrawal.pk, reason="address blacklisted")
    assert sweep_and_send() == ["sent"]
    [message] = mailbox
    assert "failed" in message.subject
    assert "address blacklisted" in message.body
    assert Notification.objects.get().key == f"payout_failed:{withdrawal.pk}"
    assert sweep_and_send() == []
    assert len(mailbox) == 1


def test_a_payment_put_into_review_is_mailed_once_not_also_as_its_finding(mailbox):
    payment = PaymentFactory()
    deposits.payment_move(
        payment_id=payment.pk, status=PaymentStatus.REVIEW, reason="wrong asset received"
    )
    assert sweep_and_send() == ["sent"]
    [message] = mailbox
    assert payment.internal_payment_id in message.subject
    assert "wrong asset received" in message.body
    assert list(Notification.objects.values_list("key", flat=True)) == [
        f"payment_in_review:{payment.pk}"
    ]
    assert sweep_and_send() == []
    assert len(mailbox) == 1


def test_a_new_finding_is_mailed_once_however_often_it_is_seen(mailbox):
    finding = finding_record(kind=DriftKind.CHAIN_BROKEN, subject="user:7", detail="gap at 3")
    assert sweep_and_send() == ["sent"]
    finding_record(kind=DriftKind.CHAIN_BROKEN, subject="user:7", detail="gap at 3")
    assert sweep_and_send() == []
    [message] = mailbox
    assert "Ledger chain broken" in message.subject
    assert "gap at 3" in message.body
    assert Notification.objects.get().key == f"finding:{finding.pk}"


def test_events_older_than_the_lookback_window_are_not_mailed(mailbox, settings):
    finding = finding_record(kind=DriftKind.BALANCE_MISMATCH, subject="user:8")
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE payments_ledgerdrift SET first_seen_at = now() - interval '3 days' "
            "WHERE id = %s",
            [finding.pk],
        )
    assert sweep_and_send() == []
    assert not Notification.objects.exists()
    settings.PAYMENTS_NOTIFY_LOOKBACK_HOURS = 24 * 4
    assert sweep_and_send() == ["sent"]


def test_recipients_are_the_configured_list_or_else_the_operators(settings, approver):
    settings.PAYMENTS_OPERATOR_EMAILS = ["a@example.com", "A@example.com", "not-an-address"]
    assert operator_recipients() == ["a@example.com"]

    settings.PAYMENTS_OPERATOR_EMAILS = []
    UserFactory(username="root", is_staff=False, is_superuser=True, email="root@example.com")
    UserFactory(username="mute", is_superuser=True, email="")
    viewer = UserFactory(username="viewer1", is_staff=True, email="viewer1@example.com")
    viewer.groups.add(Group.objects.get(name="viewer"))
    gone = UserFactory(username="gone", is_staff=True, is_active=False, email="gone@example.com")
    gone.groups.add(Group.objects.get(name="supervisor"))
    outsider = UserFactory(username="outsider", is_staff=False, email="outsider@example.com")
    outsider.groups.add(Group.objects.get(name="operator"))
    both = UserFactory(username="both", is_staff=True, is_superuser=True, email="both@example.com")
    both.groups.add(Group.objects.get(name="operator"), Group.objects.get(name="supervisor"))
    assert sorted(operator_recipients()) == [
        "approver1@example.com",
        "both@example.com",
        "root@example.com",
    ]


def test_without_recipients_nothing_is_sent_and_the_row_says_why(mailbox, settings):
    settings.PAYMENTS_OPERATOR_EMAILS = []
    finding_record(kind=DriftKind.CHAIN_BROKEN, subject="user:9")
    assert sweep_and_send() == ["no_recipients"]
    row = Notification.objects.get()
    assert row.sent_at is None
    assert "No recipients" in row.last_error
    assert mailbox == []


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_smtp_failure_leaves_it_unsent_and_a_later_run_sends_it_once(mailbox, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", closed_port()
    settings.EMAIL_TIMEOUT = 2
    finding_record(kind=DriftKind.CHAIN_BROKEN, subject="user:10")
    [pk] = notifications_sweep().to_send
    with pytest.raises(ConnectionRefusedError):
        notification_send_task(notification_id=pk)
    row = Notification.objects.get()
    assert (row.sent_at, row.attempts) == (None, 1)
    assert "ConnectionRefusedError" in row.last_error

    # The sweep hands it back once its backoff has passed (5 min x 2^attempts), not before.
    assert notifications_sweep(now=row.created_at + timedelta(minutes=9)).to_send == []
    assert notifications_sweep(now=row.created_at + timedelta(minutes=11)).to_send == [pk]

    settings.EMAIL_BACKEND = LOCMEM
    assert notification_send_task(notification_id=pk) == "sent"
    assert notification_send_task(notification_id=pk) == "already_sent"
    assert len(mailbox) == 1
    row.refresh_from_db()
    assert row.sent_at is not None
    assert (row.attempts, row.last_error) == (2, "")
    assert notifications_sweep(now=row.created_at + timedelta(hours=1)).to_send == []


class SlowBackend(EmailBackend):
    """Django's locmem backend, slowed down so that a second send overlaps the first."""

    def send_messages(self, messages):  # type: ignore[no-untyped-def]
        time.sleep(0.5)
        return super().send_messages(messages)


@pytest.mark.django_db(transaction=True)
def test_two_sends_racing_on_one_row_send_it_once(mailbox, settings):
    settings.EMAIL_BACKEND = f"{__name__}.SlowBackend"
    finding_record(kind=DriftKind.CHAIN_BROKEN, subject="user:11")
    [pk] = notifications_sweep().to_send
    start = threading.Barrier(2)
    outcomes: list[str] = []
    errors: list[BaseException] = []

    def send() -> None:
        try:
            start.wait()
            outcomes.append(notification_send(notification_id=pk))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert sorted(outcomes) in (["busy", "sent"], ["already_sent", "sent"])
    assert len(mailbox) == 1
    row = Notification.objects.get()
    assert row.sent_at is not None
    assert row.attempts == 1


@pytest.fixture
def redis_broker():
    """The Celery app pointed at this test's Redis database (real broker, real messages)."""
    client = redis.Redis(host=REDIS_HOST, port=6379, db=redis_db())
    client.flushdb()
    saved = (celery_app.conf.broker_url, celery_app.conf.broker_transport_options)

    def reset_pools() -> None:
        # Celery keeps its connection pools in kombu's registry, shared by every app in this
        # process that uses the same broker URL: close them *and* forget them, or the next
        # app (another test's) would be handed a closed pool.
        kombu_pools.reset()
        celery_app._pool = None
        celery_app.amqp._producer_pool = None

    reset_pools()
    celery_app.conf.broker_url, celery_app.conf.broker_transport_options = broker_url(), {}
    yield client
    reset_pools()
    celery_app.conf.broker_url, celery_app.conf.broker_transport_options = saved
    client.flushdb()
    client.close()


def test_the_sweep_task_runs_under_its_lease_and_enqueues_one_send_per_row(mailbox, redis_broker):
    first = finding_record(kind=DriftKind.CHAIN_BROKEN, subject="user:12")
    second = finding_record(kind=DriftKind.HOLD_MISSING, subject="withdrawal:x")
    result = notifications_sweep_task()
    assert result == {"created": {"finding": 2}, "to_send": 2}
    assert notifications_sweep_task() == {"skipped": True}, "one run per tick"
    messages = [json.loads(raw) for raw in redis_broker.lrange("default", 0, -1)]
    assert [m["headers"]["task"] for m in messages] == ["workers.notification_send"] * 2
    kwargs = [json.loads(base64.b64decode(m["body"]))[1] for m in messages]
    rows = Notification.objects.filter(key__in=[f"finding:{first.pk}", f"finding:{second.pk}"])
    assert sorted(k["notification_id"] for k in kwargs) == sorted(r.pk for r in rows)
    for k in kwargs:  # what a worker would do with them
        assert notification_send_task(**k) == "sent"
    assert len(mailbox) == 2
    assert SendOutcome(notification_send_task(**kwargs[0])) is SendOutcome.ALREADY_SENT
