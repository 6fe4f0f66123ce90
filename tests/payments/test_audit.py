"""The operators' audit trail: every admin action that succeeds is in the object's History (and
Recent actions) with who did it and why; withdrawal notes are only ever appended."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.test import Client

from payments import ledger
from payments.models import LedgerDrift, Payment, ProviderEvent, WithdrawalRequest
from payments.services import deposits, findings, withdrawals
from tests.factories import CurrencyFactory, UserFactory
from tests.payments.services.deposits.test_policy import apply
from tests.payments.services.test_events import ipn_body, store
from tests.payments.test_admin_withdrawals import (
    GOOD_TRON_HASH,
    TRON,
    act,
    operator,
    processing,
    reload,
)

pytestmark = pytest.mark.django_db(transaction=True)

ADMIN = "/admin/payments/"


def entries(obj: Any) -> list[tuple[str, str]]:
    """(username, message) of each LogEntry on ``obj``, oldest first."""
    found = LogEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(obj), object_id=str(obj.pk)
    ).order_by("pk")
    assert all(entry.action_flag == CHANGE for entry in found)
    return [(entry.user.username, entry.get_change_message()) for entry in found]


def history(client: Client, obj: Any) -> str:
    model = obj._meta.model_name
    page = client.get(f"{ADMIN}{model}/{obj.pk}/history/")
    assert page.status_code == 200
    return page.content.decode()


def pending(currency: Any, *, amount: str = "20.00") -> WithdrawalRequest:
    user = UserFactory()
    ledger.post(
        user_id=user.pk, kind="deposit", amount_usd=Decimal("50.00"), idempotency_key=f"{user.pk}"
    )
    return withdrawals.withdrawal_create(
        user_id=user.pk, amount_usd=Decimal(amount), currency_id=currency.pk, wallet_address=TRON
    )


@pytest.fixture
def alice() -> Client:
    return operator("alice", "approve_withdrawalrequest", "override_withdrawalrequest")


@pytest.fixture
def bob() -> Client:
    return operator("bob", "approve_withdrawalrequest", "override_withdrawalrequest")


@pytest.fixture
def manual(settings: Any, usdt: Any) -> Any:
    settings.PAYMENTS_PAYOUTS_ENABLED = False
    return usdt


# --- withdrawals ----------------------------------------------------------------------------


def test_approve_processing_completed_are_logged_with_the_operator(manual, alice):
    withdrawal = pending(manual)
    assert act(alice, "approve_selected", [withdrawal], apply="1") == ["1 withdrawal(s) approved."]
    assert act(alice, "mark_processing", [withdrawal]) == ["1 withdrawal(s) marked processing."]
    # No hash yet: refused, and nothing logged for it.
    assert "needs its blockchain transaction hash" in act(alice, "mark_completed", [withdrawal])[0]
    alice.post(
        f"{ADMIN}withdrawalrequest/{withdrawal.pk}/change/",
        {"transaction_hash": GOOD_TRON_HASH, "failure_reason": "", "add_note": ""},
    )
    assert act(alice, "mark_completed", [withdrawal]) == ["1 withdrawal(s) completed."]
    assert entries(withdrawal) == [
        ("alice", "Approved."),
        ("alice", "Marked processing (the payout was started outside NowPayments)."),
        ("alice", "Changed Transaction hash."),  # Django's own entry for the change form
        ("alice", f"Marked completed, transaction hash {GOOD_TRON_HASH}."),
    ]
    page = history(alice, withdrawal)
    assert "Approved." in page
    assert f"Marked completed, transaction hash {GOOD_TRON_HASH}." in page


def test_reject_and_mark_failed_are_logged_with_the_reason(manual, alice):
    rejected, failed = pending(manual), pending(manual)
    act(alice, "reject_selected", [rejected], apply="1", reason="address on a sanctions list")
    act(alice, "approve_selected", [failed], apply="1")
    act(alice, "mark_processing", [failed])
    alice.post(
        f"{ADMIN}withdrawalrequest/{failed.pk}/change/",
        {"transaction_hash": "", "failure_reason": "hot wallet empty", "add_note": ""},
    )
    assert act(alice, "mark_failed", [failed]) == ["1 withdrawal(s) marked failed."]
    assert entries(rejected) == [
        ("alice", "Rejected (the hold is refunded): address on a sanctions list")
    ]
    assert entries(failed)[-1] == (
        "alice",
        "Marked failed (the hold is refunded): hot wallet empty",
    )
    assert "address on a sanctions list" in history(alice, rejected)
    assert "hot wallet empty" in history(alice, failed)


def test_a_refused_action_writes_no_log_entry(manual, alice):
    own = pending(manual)
    ledger.post(
        user_id=alice.user.pk, kind="deposit", amount_usd=Decimal("50.00"), idempotency_key="own"
    )
    mine = withdrawals.withdrawal_create(
        user_id=alice.user.pk,
        amount_usd=Decimal("20.00"),
        currency_id=manual.pk,
        wallet_address=TRON,
    )
    assert "their own withdrawal" in act(alice, "approve_selected", [mine], apply="1")[0]
    assert "cannot move from pending to processing" in act(alice, "mark_processing", [own])[0]
    assert act(alice, "reject_selected", [own], apply="1", reason="") == [
        "Say why the withdrawals are rejected."
    ]
    viewer = operator("viewer")  # no approve permission: the action is not even offered
    act(viewer, "approve_selected", [own], apply="1")
    assert entries(mine) == entries(own) == []
    assert reload(own).status == "pending"


def test_forced_overrides_are_logged_when_requested_approved_and_refused(
    sandbox, usdt, settings, alice, bob
):
    settings.PAYMENTS_PAYOUTS_ENABLED = True
    sandbox.control.set_balance("usdttrc20", "1000000")
    forced, refused = processing(usdt, count=2)
    for withdrawal in (forced, refused):
        act(
            alice,
            "request_forced_failure",
            [withdrawal],
            apply="1",
            override_reason="NowPayments support says it is never sent",
        )
    # Alice may not decide on her own request: refused, nothing logged.
    assert "they requested" in act(alice, "approve_forced_override", [forced], apply="1")[0]
    assert act(bob, "approve_forced_override", [forced], apply="1") == [
        "1 forced override(s) approved."
    ]
    assert act(bob, "refuse_forced_override", [refused], apply="1") == [
        "1 forced override(s) refused."
    ]
    asked = ("alice", "Requested a forced fail: NowPayments support says it is never sent")
    assert entries(forced) == [
        asked,
        (
            "bob",
            "Approved the forced fail requested by alice: NowPayments support says it is "
            "never sent",
        ),
    ]
    assert entries(refused) == [
        asked,
        (
            "bob",
            "Refused the forced fail requested by alice: NowPayments support says it is never sent",
        ),
    ]
    assert "Approved the forced fail requested by alice" in history(bob, forced)
    assert "Refused the forced fail requested by alice" in history(bob, refused)
    assert reload(forced).status == "failed"
    assert reload(refused).status == "processing"


# --- payments in review ---------------------------------------------------------------------


def in_review(sandbox: Any) -> Payment:
    payment = deposits.payment_create(
        user_id=UserFactory().pk, amount_usd=Decimal("40.00"), currency_code="USDTTRC20"
    )
    done = apply(sandbox, payment, "finished", actually_paid=payment.pay_amount / 4)
    assert done.status == "review"
    return done


def review(client: Client, action: str, payment: Payment, reason: str = "") -> None:
    form = {"action": action, "_selected_action": [str(payment.pk)], "apply": "1"}
    assert client.post(f"{ADMIN}payment/", {**form, "reason": reason}).status_code == 302


def test_review_decisions_are_logged_with_the_reason(sandbox, usdt, settings):
    settings.PAYMENTS_UNDERPAYMENT_POLICY = "review"
    received, full, rejected = in_review(sandbox), in_review(sandbox), in_review(sandbox)
    dora = operator("dora", "resolve_payment", "view_payment", "change_payment")
    erin = operator("erin", "approve_full_credit", "view_payment", "change_payment")
    review(dora, "credit_received", received, "a quarter arrived on chain")
    review(erin, "approve_full_credit", received)  # approves either credit
    review(dora, "request_full_credit", full, "the customer paid the rest by wire")
    review(erin, "approve_full_credit", full)
    review(dora, "reject_payment", rejected, "paid with stolen funds")
    review(dora, "reject_payment", rejected, "twice")  # no longer in review: refused

    assert entries(received) == [
        (
            "dora",
            "Requested crediting the received amount, 10.00 USD (a second operator approves): "
            "a quarter arrived on chain",
        ),
        (
            "erin",
            "Approved crediting the received amount, 10.00 USD, requested by dora: a quarter "
            "arrived on chain",
        ),
    ]
    assert entries(full) == [
        (
            "dora",
            "Requested crediting 40.00 USD in full (a second operator approves): the customer "
            "paid the rest by wire",
        ),
        (
            "erin",
            "Approved crediting 40.00 USD in full, requested by dora: the customer paid the rest "
            "by wire",
        ),
    ]
    assert entries(rejected) == [("dora", "Rejected (credited nothing): paid with stolen funds")]
    assert "a quarter arrived on chain" in history(dora, received)
    assert "Approved crediting 40.00 USD in full" in history(dora, full)
    assert "paid with stolen funds" in history(dora, rejected)


# --- operations and currencies --------------------------------------------------------------


def test_reprocessing_an_event_is_logged_with_its_outcome(sandbox, usdt):
    payment = deposits.payment_create(
        user_id=UserFactory().pk, amount_usd=Decimal("25.00"), currency_code="USDTTRC20"
    )
    event_id, _ = store(ipn_body(sandbox, payment, "teleported"))
    frank = operator("frank", "view_providerevent", "change_providerevent")
    frank.post(
        f"{ADMIN}providerevent/",
        {"action": "reprocess_selected", "_selected_action": [str(event_id)]},
    )
    event = ProviderEvent.objects.get(pk=event_id)
    assert entries(event) == [("frank", "Reprocessed: outcome error.")]
    assert "Reprocessed: outcome error." in history(frank, event)


def test_resolving_a_finding_is_logged_with_its_notes():
    drift = LedgerDrift.objects.create(kind="balance_mismatch", subject="user:1")
    done = LedgerDrift.objects.create(kind="balance_mismatch", subject="user:2")
    grace = operator("grace", "view_ledgerdrift", "change_ledgerdrift")
    grace.post(
        f"{ADMIN}ledgerdrift/{drift.pk}/change/",
        {"resolution_notes": "corrected with ADJUSTMENT 42"},
    )
    grace.post(f"{ADMIN}ledgerdrift/", {"action": "mark_resolved", "_selected_action": [drift.pk]})
    findings.finding_resolve(finding_id=done.pk, user=grace.user, notes="by hand")
    grace.post(f"{ADMIN}ledgerdrift/", {"action": "mark_resolved", "_selected_action": [done.pk]})
    assert entries(drift)[-1] == ("grace", "Marked resolved: corrected with ADJUSTMENT 42")
    assert entries(done) == []  # already resolved: nothing done, nothing logged
    assert "Marked resolved: corrected with ADJUSTMENT 42" in history(grace, drift)


def test_a_currency_changed_in_the_list_is_logged():
    currency = CurrencyFactory(is_active=True, sort_order=1)
    henry = operator("henry", "view_currency", "change_currency")
    response = henry.post(
        f"{ADMIN}currency/",
        {
            "form-TOTAL_FORMS": "1",
            "form-INITIAL_FORMS": "1",
            "form-MIN_NUM_FORMS": "0",
            "form-MAX_NUM_FORMS": "1000",
            "form-0-id": str(currency.pk),
            "form-0-sort_order": "7",
            "_save": "Save",
        },
    )
    assert response.status_code == 302
    currency.refresh_from_db()
    assert (currency.is_active, currency.sort_order) == (False, 7)
    ((user, message),) = entries(currency)
    assert user == "henry"
    assert "Active" in message or "active" in message
    assert "Sort order" in message or "sort order" in message
    assert message in history(henry, currency)


# --- notes: appended, never overwritten -----------------------------------------------------


def add_note(client: Client, withdrawal: WithdrawalRequest, text: str, **extra: str) -> None:
    response = client.post(
        f"{ADMIN}withdrawalrequest/{withdrawal.pk}/change/",
        {"transaction_hash": "", "failure_reason": "", "add_note": text, **extra},
    )
    assert response.status_code == 302, response.content.decode()[:2000]


def test_two_operators_notes_are_kept_through_approve_and_reject(manual, alice, bob):
    approved, rejected = pending(manual), pending(manual)
    for withdrawal in (approved, rejected):
        add_note(alice, withdrawal, "called the customer,\nconfirmed the address")
        add_note(bob, withdrawal, "second look: fine")
    act(alice, "approve_selected", [approved], apply="1")
    act(bob, "reject_selected", [rejected], apply="1", reason="changed their mind")

    kept = reload(approved).admin_notes.splitlines()
    assert len(kept) == 2
    assert kept[0].endswith(" UTC alice: called the customer, confirmed the address")
    assert kept[1].endswith(" UTC bob: second look: fine")
    assert kept[0][:4].isdigit()
    assert kept[0][4] == "-"
    lines = reload(rejected).admin_notes.splitlines()
    assert len(lines) == 3
    assert lines[0].endswith(" UTC alice: called the customer, confirmed the address")
    assert lines[1].endswith(" UTC bob: second look: fine")
    assert lines[2].endswith(" UTC bob: changed their mind")  # the reason, as a note
    assert ("alice", "Added a note: called the customer,\nconfirmed the address") in entries(
        approved
    )
    assert ("bob", "Added a note: second look: fine") in entries(approved)
    assert "second look: fine" in history(alice, approved)


def test_a_note_cannot_be_edited_or_removed_in_the_admin(manual, alice):
    withdrawal = pending(manual)
    add_note(alice, withdrawal, "first")
    before = reload(withdrawal).admin_notes
    form = alice.get(f"{ADMIN}withdrawalrequest/{withdrawal.pk}/change/").content.decode()
    assert 'name="add_note"' in form
    assert 'name="admin_notes"' not in form
    assert "alice: first" in form  # shown, read-only
    add_note(alice, withdrawal, "", admin_notes="rewritten")
    add_note(alice, withdrawal, "", admin_notes="")
    assert reload(withdrawal).admin_notes == before
    # An empty note adds nothing and logs nothing.
    assert entries(withdrawal) == [("alice", "Added a note: first")]


def test_a_viewer_sees_the_notes_and_adds_none(manual, alice):
    withdrawal = pending(manual)
    add_note(alice, withdrawal, "looked at it")
    viewer = Client()
    user = UserFactory(username="vera", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_withdrawalrequest"))
    viewer.force_login(user)
    form = viewer.get(f"{ADMIN}withdrawalrequest/{withdrawal.pk}/change/")
    assert form.status_code == 200
    page = form.content.decode()
    assert "alice: looked at it" in page
    assert 'name="add_note"' not in page
    assert "looked at it" in history(viewer, withdrawal)
