"""ProviderEvent's writer: store committed and deduplicated, apply once, reprocess safely."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.core.management import CommandError, call_command
from django.db import transaction
from django.utils import timezone

from payments.errors import EventNotFound, InvalidEventBody
from payments.models import ProviderEvent, Transaction, UserBalance
from payments.services import deposits as service
from payments.services import events
from payments.services.providers.nowpayments.signature import js_dumps
from tests.factories import UserFactory
from tests.payments.test_ledger_concurrency import run_threads
from tests.payments.test_webhooks import deposits, fail_apply_once, ipn_body, variants

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def payment(sandbox, usdt):
    return service.payment_create(
        user_id=UserFactory().pk, amount_usd=Decimal("25.00"), currency_code="USDTTRC20"
    )


@pytest.fixture
def finished(sandbox, payment) -> dict:
    """The finished IPN of ``payment``, the payment completed at the sandbox."""
    sandbox.control.complete(payment.provider_payment_id)
    return ipn_body(sandbox, payment, "finished")


def store(body: dict | bytes) -> tuple[int, bool]:
    raw = body if isinstance(body, bytes) else js_dumps(body).encode()
    payload = events.event_parse(body=raw)
    return events.event_store(
        kind="payment" if "payment_id" in payload else "payout",
        object_id=str(payload.get("payment_id", payload.get("id", ""))),
        status=str(payload.get("payment_status", payload.get("status", ""))),
        body=raw,
        signature="f" * 128,
    )


def balance(payment) -> Decimal:
    return UserBalance.objects.get(user=payment.user).balance_usd


def errored_event(payment, body: dict, monkeypatch) -> ProviderEvent:
    """A stored finished IPN whose apply raised an unexpected error: outcome error, no credit."""
    fail_apply_once(monkeypatch)
    event_id, created = store(body)
    assert created
    with pytest.raises(RuntimeError, match="database fell over"):
        events.event_apply(event_id=event_id)
    event = ProviderEvent.objects.get(pk=event_id)
    assert (event.outcome, event.detail) == ("error", "unexpected RuntimeError: database fell over")
    assert deposits(payment) == 0
    return event


# -- storing -----------------------------------------------------------------------------------


def test_variants_of_one_ipn_are_one_event_counting_deliveries(finished):
    stored = [store(raw) for raw in variants(finished)]
    event_id = stored[0][0]
    assert stored == [(event_id, True)] + [(event_id, False)] * 4
    event = ProviderEvent.objects.get()
    assert (event.deliveries, event.outcome, event.processed_at) == (5, "received", None)
    assert event.dedupe_key == events.event_dedupe_key(payload=finished)


def test_a_different_payload_is_a_different_event(finished):
    assert store(finished)[1]
    assert store({**finished, "actually_paid": Decimal("1")})[1]
    assert ProviderEvent.objects.count() == 2


def test_the_store_commits_on_its_own_and_refuses_to_run_inside_a_transaction(finished):
    with transaction.atomic(), pytest.raises(RuntimeError, match="durable"):
        store(finished)
    assert not ProviderEvent.objects.exists()


@pytest.mark.parametrize("raw", [b"not json", b"[1]", b'{"a": Infinity}', b'{"a": 1e400}'])
def test_the_store_refuses_a_body_that_is_no_signable_json_object(raw):
    with pytest.raises(InvalidEventBody) as caught:
        events.event_store(kind="payment", object_id="1", status="", body=raw, signature="")
    assert caught.value.code == "invalid_body"
    assert not ProviderEvent.objects.exists()


def test_concurrent_duplicate_deliveries_make_one_event_and_one_deposit(payment, finished):
    raws = variants(finished)
    results: list[tuple[int, bool, events.EventResult]] = []

    def deliver(index: int) -> None:
        event_id, created = store(raws[index % len(raws)])
        results.append((event_id, created, events.event_apply(event_id=event_id)))

    assert run_threads(deliver, count=10) == []
    event = ProviderEvent.objects.get()
    assert (event.deliveries, event.outcome) == (10, "applied")
    assert sorted(created for _, created, _ in results) == [False] * 9 + [True]
    assert sorted(r.repeated for _, _, r in results) == [False] + [True] * 9
    assert deposits(payment) == 1
    assert balance(payment) == Decimal("25.00")


# -- applying ----------------------------------------------------------------------------------


def test_apply_records_the_outcome_and_the_payment(payment, finished):
    event_id, _ = store(finished)
    result = events.event_apply(event_id=event_id)
    assert (result.outcome, result.repeated, result.code) == ("applied", False, "")
    event = ProviderEvent.objects.get()
    assert (event.outcome, event.payment_id) == ("applied", payment.pk)
    assert event.processed_at is not None
    assert deposits(payment) == 1


def test_applying_a_processed_event_again_is_a_no_op(payment, finished):
    event_id, _ = store(finished)
    events.event_apply(event_id=event_id)
    before = ProviderEvent.objects.get()
    again = events.event_apply(event_id=event_id)
    assert (again.outcome, again.repeated) == ("applied", True)
    after = ProviderEvent.objects.get()
    assert (after.outcome, after.processed_at) == ("applied", before.processed_at)
    assert deposits(payment) == 1


def test_a_forced_apply_goes_through_the_service_which_credits_only_once(payment, finished):
    event_id, _ = store(finished)
    events.event_apply(event_id=event_id)
    forced = events.event_apply(event_id=event_id, force=True)
    assert (forced.outcome, forced.repeated) == ("unchanged", False)
    assert ProviderEvent.objects.get().detail == "reprocessed (was applied)."
    assert deposits(payment) == 1
    assert balance(payment) == Decimal("25.00")


def test_a_domain_error_is_recorded_with_its_code_and_message(sandbox, payment):
    event_id, _ = store(ipn_body(sandbox, payment, "teleported"))
    result = events.event_apply(event_id=event_id)
    assert (result.outcome, result.code) == ("error", "unknown_provider_status")
    event = ProviderEvent.objects.get()
    assert event.outcome == "error"
    assert event.detail.startswith("unknown_provider_status: ")
    payment.refresh_from_db()
    assert payment.status == "pending"


def test_an_unknown_event_id_is_a_domain_error():
    with pytest.raises(EventNotFound):
        events.event_apply(event_id=424242)


def test_a_payout_ipn_is_ignored_as_the_payout_poller_applies_payouts():
    event_id, _ = store({"id": 5000000001, "status": "FINISHED"})
    assert events.event_apply(event_id=event_id).outcome == "ignored"
    assert ProviderEvent.objects.get().detail == events.PAYOUT_DETAIL


# -- reprocessing ------------------------------------------------------------------------------


def test_reprocess_applies_an_event_that_failed_unexpectedly_exactly_once(
    payment, finished, monkeypatch
):
    event = errored_event(payment, finished, monkeypatch)

    counts = events.events_reprocess()
    assert (counts["selected"], counts["applied"], counts["unexpected_error"]) == (1, 1, 0)
    event.refresh_from_db()
    assert (event.outcome, event.detail, event.payment_id) == ("applied", "", payment.pk)
    payment.refresh_from_db()
    assert (payment.status, deposits(payment)) == ("completed", 1)
    assert balance(payment) == Decimal("25.00")

    # Again: nothing is failed any more; forcing it by id goes through the idempotent service.
    assert events.events_reprocess()["selected"] == 0
    forced = events.events_reprocess(event_ids=[event.pk])
    assert (forced["selected"], forced["unchanged"]) == (1, 1)
    unforced = events.events_reprocess(event_ids=[event.pk], force=False)
    assert (unforced["selected"], unforced["skipped"]) == (1, 1)
    assert deposits(payment) == 1
    assert Transaction.objects.filter(user=payment.user).count() == 1
    assert balance(payment) == Decimal("25.00")


def test_reprocess_counts_an_unexpected_error_and_goes_on(sandbox, usdt, monkeypatch):
    users = [UserFactory() for _ in range(2)]
    payments = [
        service.payment_create(user_id=u.pk, amount_usd=Decimal("10.00"), currency_code="USDTTRC20")
        for u in users
    ]
    ids = []
    for p in payments:
        sandbox.control.complete(p.provider_payment_id)
        ids.append(store(ipn_body(sandbox, p, "finished"))[0])
    ProviderEvent.objects.update(received_at=timezone.now() - timedelta(minutes=5))
    fail_apply_once(monkeypatch)

    counts = events.events_reprocess()
    assert (counts["selected"], counts["unexpected_error"], counts["applied"]) == (2, 1, 1)
    first = ProviderEvent.objects.get(pk=ids[0])
    assert (first.outcome, first.detail) == ("error", "unexpected RuntimeError: database fell over")
    assert events.events_reprocess()["applied"] == 1
    assert [deposits(p) for p in payments] == [1, 1]


def test_only_events_stuck_in_received_for_a_minute_count_as_failed(payment, finished):
    fresh_id, _ = store(finished)
    stuck_id, _ = store({**finished, "payment_status": "confirming"})
    ProviderEvent.objects.filter(pk=stuck_id).update(
        received_at=timezone.now() - timedelta(minutes=2)
    )
    counts = events.events_reprocess(outcome="received")
    assert (counts["selected"], counts["applied"]) == (1, 1)
    assert ProviderEvent.objects.get(pk=fresh_id).outcome == "received"
    assert events.events_reprocess(outcome="error")["selected"] == 0
    with pytest.raises(ValueError, match="outcome must be"):
        events.events_reprocess(outcome="applied")


def test_reprocess_counts_ids_with_no_event_as_missing():
    counts = events.events_reprocess(event_ids=[98765])
    assert (counts["selected"], counts["missing"]) == (0, 1)
    assert events.reprocess_summary(counts) == "0 event(s) reprocessed: missing 1."


# -- the command -------------------------------------------------------------------------------


def run(*args: str) -> str:
    out = StringIO()
    call_command("reprocess_events", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_the_command_reprocesses_a_failed_event_once(payment, finished, monkeypatch):
    event = errored_event(payment, finished, monkeypatch)
    assert run("--all-failed") == "1 event(s) reprocessed: applied 1.\n"
    assert run("--all-failed") == "0 event(s) reprocessed.\n"
    assert run("--outcome", "error") == "0 event(s) reprocessed.\n"
    assert run("--id", str(event.pk)) == "1 event(s) reprocessed: unchanged 1.\n"
    assert (deposits(payment), balance(payment)) == (1, Decimal("25.00"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "Say which events to reprocess"),
        (("--id", "1", "--all-failed"), "cannot be combined"),
        (("--outcome", "error", "--all-failed"), "already covers both"),
        (("--outcome", "applied"), "invalid choice"),
        (("--id", "x"), "invalid int value"),
        (("--id", "0"), "positive integers"),
        (("--id", "777", "778"), "No stored event has id 777, 778"),
    ],
)
def test_the_command_refuses_bad_input_with_a_sentence(args, message):
    with pytest.raises(CommandError, match=message):
        run(*args)


# -- the admin action --------------------------------------------------------------------------


def reprocess_in_admin(client, objects) -> tuple[int, list[str]]:
    response = client.post(
        "/admin/payments/providerevent/",
        {"action": "reprocess_selected", "_selected_action": [str(o.pk) for o in objects]},
        follow=True,
    )
    return response.status_code, [str(m) for m in get_messages(response.wsgi_request)]


def test_the_admin_action_reprocesses_selected_events_once(client, payment, finished, monkeypatch):
    event = errored_event(payment, finished, monkeypatch)
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    assert reprocess_in_admin(client, [event]) == (200, ["1 event(s) reprocessed: applied 1."])
    assert reprocess_in_admin(client, [event]) == (200, ["1 event(s) reprocessed: unchanged 1."])
    assert (deposits(payment), balance(payment)) == (1, Decimal("25.00"))


def test_the_admin_action_shows_errors_as_messages(client, sandbox, payment):
    event_id, _ = store(ipn_body(sandbox, payment, "teleported"))
    operator = UserFactory(is_staff=True)
    operator.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_providerevent", "change_providerevent"])
    )
    client.force_login(operator)
    status, shown = reprocess_in_admin(client, [ProviderEvent.objects.get(pk=event_id)])
    assert status == 200
    assert shown[0] == "1 event(s) reprocessed: error 1."
    assert shown[1].startswith(f"Event {event_id} (payment {payment.provider_payment_id}): ")
    assert "unknown_provider_status" in shown[1]


def test_the_admin_action_needs_the_change_permission(client, payment, finished, monkeypatch):
    event = errored_event(payment, finished, monkeypatch)
    viewer = UserFactory(is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_providerevent"))
    client.force_login(viewer)
    page = client.get("/admin/payments/providerevent/")
    assert page.status_code == 200
    assert "reprocess_selected" not in page.content.decode()
    assert reprocess_in_admin(client, [event]) == (200, [])
    event.refresh_from_db()
    assert event.outcome == "error"
    assert deposits(payment) == 0
