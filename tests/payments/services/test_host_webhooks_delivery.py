"""Sending webhooks to a real HTTP receiver: the signature, retries with backoff, the attempt
log, giving up, redelivery, and the admin's endpoints, events and Redeliver action."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone

from payments.errors import InvalidTransition, PermissionDenied
from payments.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from payments.services import host_webhooks
from tests.factories import UserFactory
from tests.workers.processes import free_port
from workers.tasks import webhook_send_task

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "whsec_test_secret_of_the_host"
BLOCK = -1  # an answer that never comes (until the receiver is released)


@dataclass
class Received:
    headers: dict[str, str]  # names in lower case
    body: bytes
    at: float


class Receiver:
    """A host application in miniature: a real HTTP server in a thread that records every
    request and answers each with the next of ``answers`` (status, or BLOCK), the last one
    repeated; ``delay`` seconds before each answer."""

    def __init__(self, answers: list[int], *, delay: float = 0.0) -> None:
        self.answers = answers
        self.delay = delay
        self.received: list[Received] = []
        self.release = threading.Event()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    receiver.received.append(
                        Received(
                            headers={k.lower(): v for k, v in self.headers.items()},
                            body=body,
                            at=time.time(),
                        )
                    )
                    index = len(receiver.received) - 1
                status = receiver.answers[min(index, len(receiver.answers) - 1)]
                if status == BLOCK:
                    receiver.release.wait(60)
                    status = 200
                time.sleep(receiver.delay)
                answer = json.dumps({"seen": index + 1}).encode()
                try:
                    self.send_response(status)
                    if 300 <= status < 400:
                        self.send_header("Location", "/elsewhere")
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except OSError:
                    pass  # the sender is gone

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/payments-hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def verify(secret: str, headers: dict[str, str], body: bytes, *, now: float | None = None) -> bool:
    """The host's check, written from the documented scheme alone: HMAC-SHA256 keyed with the
    secret over "<timestamp>.<raw body>", and a timestamp at most five minutes old."""
    timestamp = headers.get("x-payments-timestamp", "")
    scheme, _, signature = headers.get("x-payments-signature", "").partition("=")
    if scheme != "v1" or not timestamp.isdigit():
        return False
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    if not hmac.compare_digest(expected.hexdigest(), signature):
        return False
    return abs((time.time() if now is None else now) - int(timestamp)) <= 300


@pytest.fixture
def fast_retries(settings: Any) -> None:
    settings.PAYMENTS_WEBHOOK_RETRY_SECONDS = 0
    settings.PAYMENTS_WEBHOOK_TIMEOUT = 2.0


@pytest.fixture
def receiver() -> Iterator[Callable[..., Receiver]]:
    started: list[Receiver] = []

    def start(answers: list[int], **kwargs: Any) -> Receiver:
        started.append(Receiver(answers, **kwargs).__enter__())
        return started[-1]

    yield start
    for one in started:
        one.__exit__()


def delivery_to(url: str, *, key: str = "withdrawal:w1:completed") -> WebhookDelivery:
    endpoint, _ = WebhookEndpoint.objects.get_or_create(url=url, defaults={"secret": SECRET})
    with transaction.atomic():
        event = host_webhooks.webhook_event_record(
            event_type="withdrawal.completed",
            dedupe_key=key,
            payload={"withdrawal_id": "w1", "amount_usd": "40.00", "note": "déjà vu"},
        )
    assert event is not None
    return WebhookDelivery.objects.get(event=event, endpoint=endpoint)


def send(delivery: WebhookDelivery) -> str:
    return str(host_webhooks.webhook_delivery_send(delivery_id=delivery.pk))


def fresh(delivery: WebhookDelivery) -> WebhookDelivery:
    return WebhookDelivery.objects.get(pk=delivery.pk)


def attempts_of(delivery: WebhookDelivery) -> list[WebhookAttempt]:
    return list(WebhookAttempt.objects.filter(delivery=delivery).order_by("pk"))


# --- the signature ---------------------------------------------------------------------------


def test_a_delivery_is_signed_over_the_timestamp_and_the_exact_body(
    receiver: Any, fast_retries: None
) -> None:
    host = receiver([200])
    delivery = delivery_to(host.url)
    sent_at = time.time()
    assert send(delivery) == "delivered"
    [got] = host.received
    assert verify(SECRET, got.headers, got.body)
    assert not verify("another-secret-entirely", got.headers, got.body)
    assert not verify(SECRET, got.headers, got.body.replace(b"40.00", b"41.00"))
    assert got.headers["content-type"] == "application/json"
    assert got.headers["x-payments-event"] == "withdrawal.completed"
    assert got.headers["x-payments-delivery"] == str(delivery.pk)
    assert abs(int(got.headers["x-payments-timestamp"]) - sent_at) <= 2
    envelope = json.loads(got.body)
    assert envelope["id"] == str(delivery.event_id)
    assert envelope["type"] == "withdrawal.completed"
    assert envelope["data"] == {"withdrawal_id": "w1", "amount_usd": "40.00", "note": "déjà vu"}


def test_a_captured_request_cannot_be_replayed_later(receiver: Any, fast_retries: None) -> None:
    host = receiver([200])
    send(delivery_to(host.url))
    [got] = host.received
    stamp = int(got.headers["x-payments-timestamp"])
    assert verify(SECRET, got.headers, got.body, now=stamp + 299)
    assert not verify(SECRET, got.headers, got.body, now=stamp + 301)  # too old
    # Nor can its timestamp be refreshed: the signature covers it.
    refreshed = {**got.headers, "x-payments-timestamp": str(stamp + 301)}
    assert not verify(SECRET, refreshed, got.body, now=stamp + 301)


# --- retries, the log, giving up -------------------------------------------------------------


def test_a_500_then_a_200_delivers_on_the_second_attempt_and_logs_both(
    receiver: Any, fast_retries: None
) -> None:
    host = receiver([500, 200])
    delivery = delivery_to(host.url)
    assert send(delivery) == "retry"
    failed = fresh(delivery)
    assert (failed.status, failed.attempts, failed.last_status_code) == ("pending", 1, 500)
    assert failed.claimed_until is None
    assert send(delivery) == "delivered"
    done = fresh(delivery)
    assert (done.status, done.attempts, done.last_status_code) == ("delivered", 2, 200)
    assert done.delivered_at is not None
    log = attempts_of(delivery)
    assert [a.status_code for a in log] == [500, 200]
    assert log[0].error == "HTTP 500"
    assert log[0].response_excerpt == '{"seen": 1}'
    assert log[1].error == ""
    assert all(a.duration_ms >= 0 for a in log)
    # The same delivery both times: the same id and body, each attempt signed afresh.
    first, second = host.received
    assert first.body == second.body
    assert first.headers["x-payments-delivery"] == second.headers["x-payments-delivery"]
    assert all(verify(SECRET, r.headers, r.body) for r in host.received)
    assert send(delivery) == "skipped"  # delivered: never sent again by itself
    assert len(host.received) == 2


def test_a_failure_waits_its_backoff_before_the_next_attempt(receiver: Any, settings: Any) -> None:
    host = receiver([503])
    delivery = delivery_to(host.url)
    before = timezone.now()
    assert send(delivery) == "retry"
    due = fresh(delivery).next_attempt_at
    assert due is not None
    assert before + timedelta(seconds=7.9) <= due <= timezone.now() + timedelta(seconds=12.1)
    assert host_webhooks.webhook_deliveries_due(limit=10) == []
    assert send(delivery) == "skipped"
    assert len(host.received) == 1


def test_the_backoff_grows_threefold_with_jitter_and_stops_at_an_hour(settings: Any) -> None:
    settings.PAYMENTS_WEBHOOK_RETRY_SECONDS = 10
    for attempts, nominal in [(1, 10), (2, 30), (3, 90), (4, 270), (8, 3600), (30, 3600)]:
        delays = [host_webhooks.webhook_retry_delay(attempts=attempts) for _ in range(50)]
        assert all(nominal * 0.8 <= d <= nominal * 1.2 for d in delays), (attempts, delays)
        assert len(set(delays)) > 1  # jittered


def test_a_network_error_is_logged_and_retried(fast_retries: None) -> None:
    delivery = delivery_to(f"http://127.0.0.1:{free_port()}/nobody-listens")
    assert send(delivery) == "retry"
    [attempt] = attempts_of(delivery)
    assert attempt.status_code is None
    assert "ConnectionError" in attempt.error
    assert fresh(delivery).last_error == attempt.error


def test_a_timeout_is_logged_and_retried(receiver: Any, settings: Any) -> None:
    settings.PAYMENTS_WEBHOOK_TIMEOUT = 0.5
    host = receiver([200], delay=2.0)
    delivery = delivery_to(host.url)
    started = time.monotonic()
    assert send(delivery) == "retry"
    assert time.monotonic() - started < 1.8
    [attempt] = attempts_of(delivery)
    assert attempt.status_code is None
    assert "Timeout" in attempt.error or "timed out" in attempt.error
    assert attempt.duration_ms >= 400


def test_a_redirect_is_not_followed(receiver: Any, fast_retries: None) -> None:
    host = receiver([302])
    delivery = delivery_to(host.url)
    assert send(delivery) == "retry"
    assert len(host.received) == 1
    assert fresh(delivery).last_status_code == 302


def test_it_gives_up_after_the_last_attempt(
    receiver: Any, fast_retries: None, settings: Any
) -> None:
    settings.PAYMENTS_WEBHOOK_MAX_ATTEMPTS = 3
    host = receiver([500])
    delivery = delivery_to(host.url)
    assert [send(delivery) for _ in range(4)] == ["retry", "retry", "gave_up", "skipped"]
    done = fresh(delivery)
    assert (done.status, done.attempts, done.next_attempt_at) == ("failed", 3, None)
    assert len(attempts_of(delivery)) == len(host.received) == 3
    assert host_webhooks.webhook_deliveries_due(limit=10) == []


# --- claims ----------------------------------------------------------------------------------


def test_two_senders_at_once_post_it_once(receiver: Any, fast_retries: None) -> None:
    host = receiver([200], delay=0.5)
    delivery = delivery_to(host.url)
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def sender() -> None:
        try:
            barrier.wait()
            outcomes.append(send(delivery))
        finally:
            connection.close()

    threads = [threading.Thread(target=sender) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(outcomes) == ["delivered", "skipped"]
    assert len(host.received) == 1


def test_a_dead_senders_claim_expires_and_the_delivery_is_due_again(
    receiver: Any, fast_retries: None
) -> None:
    host = receiver([200])
    delivery = delivery_to(host.url)
    # As a sender leaves it when it dies mid-POST: claimed, nothing logged.
    held = timezone.now() + timedelta(seconds=30)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(claimed_until=held)
    assert host_webhooks.webhook_deliveries_due(limit=10) == []
    assert send(delivery) == "skipped"
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        claimed_until=timezone.now() - timedelta(seconds=1)
    )
    assert host_webhooks.webhook_deliveries_due(limit=10) == [delivery.pk]
    assert webhook_send_task(delivery_id=delivery.pk) == "delivered"  # the task, called directly
    assert len(host.received) == 1


def test_sending_inside_a_transaction_is_refused(receiver: Any) -> None:
    delivery = delivery_to(receiver([200]).url)
    with pytest.raises(RuntimeError), transaction.atomic():
        send(delivery)


def test_a_switched_off_endpoint_is_not_sent_to(receiver: Any, fast_retries: None) -> None:
    host = receiver([200])
    delivery = delivery_to(host.url)
    WebhookEndpoint.objects.filter(pk=delivery.endpoint_id).update(is_active=False)
    assert host_webhooks.webhook_deliveries_due(limit=10) == []
    assert send(delivery) == "endpoint_inactive"
    assert fresh(delivery).claimed_until is None
    assert host.received == []


# --- redelivery ------------------------------------------------------------------------------


def member(*roles: str) -> Any:
    user = UserFactory(is_staff=True)
    user.groups.add(*Group.objects.filter(name__in=roles))
    return type(user).objects.get(pk=user.pk)


def test_an_operator_redelivers_a_given_up_delivery(
    receiver: Any, fast_retries: None, settings: Any
) -> None:
    settings.PAYMENTS_WEBHOOK_MAX_ATTEMPTS = 1
    host = receiver([500, 200])
    delivery = delivery_to(host.url)
    assert send(delivery) == "gave_up"
    with pytest.raises(PermissionDenied):
        host_webhooks.webhook_delivery_redeliver(delivery_id=delivery.pk, user=member("viewer"))
    assert fresh(delivery).status == "failed"
    again = host_webhooks.webhook_delivery_redeliver(
        delivery_id=delivery.pk, user=member("operator")
    )
    assert (again.status, again.attempts) == ("pending", 0)
    assert host_webhooks.webhook_deliveries_due(limit=10) == [delivery.pk]
    assert send(delivery) == "delivered"
    assert [a.status_code for a in attempts_of(delivery)] == [500, 200]


def test_a_delivered_one_is_sent_again_when_asked(receiver: Any, fast_retries: None) -> None:
    host = receiver([200])
    delivery = delivery_to(host.url)
    assert send(delivery) == "delivered"
    host_webhooks.webhook_delivery_redeliver(delivery_id=delivery.pk, user=member("operator"))
    assert send(delivery) == "delivered"
    first, second = host.received
    assert first.headers["x-payments-delivery"] == second.headers["x-payments-delivery"]


def test_no_redelivery_to_a_switched_off_endpoint(receiver: Any, fast_retries: None) -> None:
    delivery = delivery_to(receiver([200]).url)
    WebhookEndpoint.objects.filter(pk=delivery.endpoint_id).update(is_active=False)
    with pytest.raises(InvalidTransition):
        host_webhooks.webhook_delivery_redeliver(delivery_id=delivery.pk, user=member("operator"))


# --- the admin -------------------------------------------------------------------------------


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_an_operator_adds_an_endpoint_whose_secret_is_never_shown_again() -> None:
    operator = signed_in(member("operator"))
    page = operator.get("/admin/payments/webhookendpoint/add/")
    assert page.status_code == 200
    assert "whsec_" in page.content.decode()  # a generated secret, offered once
    response = operator.post(
        "/admin/payments/webhookendpoint/add/",
        {
            "url": "https://host.example/payments/hooks",
            "description": "the shop",
            "events": ["payment.credited", "withdrawal.completed"],
            "is_active": "on",
            "new_secret": "my-own-secret-0123456789",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.secret == "my-own-secret-0123456789"
    assert endpoint.events == ["payment.credited", "withdrawal.completed"]
    change = operator.get(f"/admin/payments/webhookendpoint/{endpoint.pk}/change/").content
    listing = operator.get("/admin/payments/webhookendpoint/").content
    assert b"my-own-secret" not in change
    assert b"my-own-secret" not in listing
    assert "…6789" in listing.decode()
    # Saved without a new secret, it keeps the one it has.
    operator.post(
        f"/admin/payments/webhookendpoint/{endpoint.pk}/change/",
        {"url": endpoint.url, "events": ["payment.credited"], "is_active": "on"},
    )
    endpoint.refresh_from_db()
    assert (endpoint.secret, endpoint.events) == ("my-own-secret-0123456789", ["payment.credited"])


@pytest.mark.parametrize(
    ("url", "secret", "error"),
    [
        ("ftp://host.example/hooks", "a-long-enough-secret", "http"),
        ("https://host.example/hooks", "short", "16 characters"),
    ],
)
def test_an_endpoint_that_could_never_deliver_is_refused(url: str, secret: str, error: str) -> None:
    response = signed_in(member("operator")).post(
        "/admin/payments/webhookendpoint/add/",
        {"url": url, "is_active": "on", "new_secret": secret},
    )
    assert response.status_code == 200
    assert error in response.content.decode()
    assert not WebhookEndpoint.objects.exists()


def test_a_viewer_sees_events_and_deliveries_but_changes_nothing(
    receiver: Any, fast_retries: None, settings: Any
) -> None:
    settings.PAYMENTS_WEBHOOK_MAX_ATTEMPTS = 1
    delivery = delivery_to(receiver([500]).url)
    send(delivery)
    viewer = signed_in(member("viewer"))
    assert viewer.get("/admin/payments/webhookdelivery/").status_code == 200
    page = viewer.get(f"/admin/payments/webhookdelivery/{delivery.pk}/change/")
    assert page.status_code == 200
    assert "HTTP 500" in page.content.decode()  # the attempt log, inline
    event_page = viewer.get(f"/admin/payments/webhookevent/{delivery.event_id}/change/")
    assert event_page.status_code == 200
    assert "withdrawal_id" in event_page.content.decode()  # the payload as sent
    assert viewer.get("/admin/payments/webhookendpoint/add/").status_code == 403
    endpoint_page = viewer.get(f"/admin/payments/webhookendpoint/{delivery.endpoint_id}/change/")
    assert endpoint_page.status_code == 200
    assert SECRET not in endpoint_page.content.decode()
    viewer.post(
        "/admin/payments/webhookdelivery/",
        {"action": "redeliver_selected", "_selected_action": [str(delivery.pk)]},
    )
    assert fresh(delivery).status == "failed"
    assert not LogEntry.objects.filter(object_id=str(delivery.pk)).exists()


def test_an_operator_redelivers_from_the_admin_and_it_is_logged(
    receiver: Any, fast_retries: None, settings: Any
) -> None:
    settings.PAYMENTS_WEBHOOK_MAX_ATTEMPTS = 1
    delivery = delivery_to(receiver([500]).url)
    send(delivery)
    response = signed_in(member("operator")).post(
        "/admin/payments/webhookdelivery/",
        {"action": "redeliver_selected", "_selected_action": [str(delivery.pk)]},
    )
    assert response.status_code == 302
    assert fresh(delivery).status == "pending"
    entry = LogEntry.objects.get(object_id=str(delivery.pk))
    assert entry.change_message == "Redelivered (was failed)."
