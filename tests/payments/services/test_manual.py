"""Manual money with four eyes (payments/services/manual.py and its admin): requested by one
operator, posted exactly once when another approves it, never when refused."""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any

import factory
import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.contrib.messages import get_messages
from django.db import IntegrityError, connection, connections, transaction
from django.test import Client

from payments import ledger
from payments.errors import InsufficientFunds, InvalidAmount, PermissionDenied
from payments.models import ManualAdjustment, Transaction, UserBalance
from payments.services import manual
from tests.factories import UserFactory

# Checks that write no money run in a rolled-back transaction; what posts, races or tests the
# database's guards commits for real (transaction=True), so the ledger's commit-time triggers run.
pytestmark = pytest.mark.django_db
committed = pytest.mark.django_db(transaction=True)

ADMIN = "/admin/payments/manualadjustment/"


# An unusable password: hashing a real one costs most of a test's time, and force_login needs none.
NO_PASSWORD = factory.Transformer.Force("!")


def member(*roles: str, username: str | None = None) -> Any:
    """A staff user in these role groups, loaded fresh (no cached permissions)."""
    named = {"username": username} if username else {}
    user = UserFactory(is_staff=True, password=NO_PASSWORD, **named)
    user.groups.add(*Group.objects.filter(name__in=roles))
    return type(user).objects.get(pk=user.pk)


@pytest.fixture
def alice() -> Any:
    """An operator: requests manual money."""
    return member("operator", username="alice")


@pytest.fixture
def bob() -> Any:
    """A supervisor: approves it."""
    return member("supervisor", username="bob")


@pytest.fixture
def carol() -> Any:
    return UserFactory(username="carol", password=NO_PASSWORD)


def ask(requester: Any, user: Any, amount: str, kind: str = "bonus", reason: str = "goodwill"):
    return manual.manual_request(
        user_id=user.pk,
        kind=kind,
        amount_usd=Decimal(amount),
        reason=reason,
        requested_by=requester,
    )


def postings(user: Any) -> list[tuple[str, Decimal, str]]:
    return list(
        Transaction.objects.filter(user=user)
        .order_by("sequence")
        .values_list("transaction_type", "amount_usd", "idempotency_key")
    )


def balance(user: Any) -> Decimal:
    row = UserBalance.objects.filter(user=user).first()
    return row.balance_usd if row else Decimal("0.00")


def reload(adjustment: ManualAdjustment) -> ManualAdjustment:
    return ManualAdjustment.objects.get(pk=adjustment.pk)


# --- the service ----------------------------------------------------------------------------


@committed
def test_a_request_posts_nothing_until_a_second_operator_approves_it_once(alice, bob, carol):
    asked = ask(alice, carol, "25.00", reason="  compensation for the outage  ")
    assert (asked.outcome, asked.reason, asked.transaction_id) == (
        "pending",
        "compensation for the outage",
        None,
    )
    assert postings(carol) == []

    done = manual.manual_approve(adjustment_id=asked.pk, approver=bob, notes="checked the ticket")
    stored = reload(done)
    assert (stored.outcome, stored.decided_by, stored.decision_notes) == (
        "applied",
        bob,
        "checked the ticket",
    )
    assert stored.decided_at is not None
    assert postings(carol) == [("bonus", Decimal("25.00"), f"manual:{asked.pk}")]
    assert stored.transaction == Transaction.objects.get(user=carol)
    assert balance(carol) == Decimal("25.00")

    with pytest.raises(manual.ManualAlreadyDecided):
        manual.manual_approve(adjustment_id=asked.pk, approver=bob)
    with pytest.raises(manual.ManualAlreadyDecided):
        manual.manual_refuse(adjustment_id=asked.pk, approver=bob, notes="too late")
    assert len(postings(carol)) == 1
    assert reload(asked).outcome == "applied"


@committed
def test_an_adjustment_debits_and_one_the_balance_cannot_cover_stays_pending(alice, bob, carol):
    ledger.post(user_id=carol.pk, kind="deposit", amount_usd=Decimal("10.00"), idempotency_key="d")
    small = ask(alice, carol, "-4.00", kind="adjustment", reason="double credit on the 3rd")
    large = ask(alice, carol, "-6.01", kind="adjustment", reason="the rest of it")

    manual.manual_approve(adjustment_id=small.pk, approver=bob)
    assert balance(carol) == Decimal("6.00")
    with pytest.raises(InsufficientFunds):
        manual.manual_approve(adjustment_id=large.pk, approver=bob)
    stored = reload(large)
    assert (stored.outcome, stored.decided_by, stored.transaction) == ("pending", None, None)
    assert balance(carol) == Decimal("6.00")

    ledger.post(user_id=carol.pk, kind="deposit", amount_usd=Decimal("0.01"), idempotency_key="e")
    manual.manual_approve(adjustment_id=large.pk, approver=bob)
    assert balance(carol) == Decimal("0.00")
    assert [p[:2] for p in postings(carol)] == [
        ("deposit", Decimal("10.00")),
        ("adjustment", Decimal("-4.00")),
        ("deposit", Decimal("0.01")),
        ("adjustment", Decimal("-6.01")),
    ]


def test_a_debit_of_someone_with_no_balance_is_refused(alice, bob, carol):
    asked = ask(alice, carol, "-1.00", kind="adjustment")
    with pytest.raises(InsufficientFunds):
        manual.manual_approve(adjustment_id=asked.pk, approver=bob)
    assert reload(asked).outcome == "pending"


@pytest.mark.parametrize(
    ("kind", "amount", "reason", "error", "field"),
    [
        ("gift", Decimal("1.00"), "x", manual.ManualKindInvalid, "kind"),
        ("bonus", Decimal("0.00"), "x", manual.ManualAmountInvalid, "amount_usd"),
        ("adjustment", Decimal("1.005"), "x", manual.ManualAmountInvalid, "amount_usd"),
        ("bonus", Decimal("-1.00"), "x", manual.ManualAmountInvalid, "amount_usd"),
        ("bonus", Decimal("10000000000.00"), "x", manual.ManualAmountInvalid, "amount_usd"),
        ("bonus", Decimal("NaN"), "x", manual.ManualAmountInvalid, "amount_usd"),
        ("bonus", "1.00", "x", manual.ManualAmountInvalid, "amount_usd"),
        ("bonus", Decimal("1.00"), "   ", manual.ManualReasonRequired, "reason"),
    ],
)
def test_bad_terms_are_refused_with_their_own_error(
    alice, carol, kind, amount, reason, error, field
):
    with pytest.raises(error) as caught:
        manual.manual_request(
            user_id=carol.pk, kind=kind, amount_usd=amount, reason=reason, requested_by=alice
        )
    assert caught.value.field == field
    assert caught.value.code.startswith("manual_")
    if error is manual.ManualAmountInvalid:
        assert isinstance(caught.value, InvalidAmount)  # the API's invalid_amount family
    assert not ManualAdjustment.objects.exists()


def test_who_may_request(alice, bob, carol):
    with pytest.raises(manual.ManualOwnAccount):
        ask(alice, alice, "5.00")
    with pytest.raises(manual.ManualNotAllowed):
        ask(bob, carol, "5.00")  # a supervisor approves; they do not request
    with pytest.raises(manual.ManualNotAllowed):
        ask(member("viewer"), carol, "5.00")
    with pytest.raises(manual.ManualUserUnknown):
        manual.manual_request(
            user_id=carol.pk + 1000,
            kind="bonus",
            amount_usd=Decimal("5.00"),
            reason="x",
            requested_by=alice,
        )
    assert not ManualAdjustment.objects.exists()


def test_nobody_approves_their_own_request_nor_money_for_themselves(alice, bob, carol):
    both = member("operator", "supervisor")
    own = ask(both, carol, "5.00")
    with pytest.raises(manual.ManualSecondOperator) as caught:
        manual.manual_approve(adjustment_id=own.pk, approver=both)
    assert isinstance(caught.value, PermissionDenied)
    for_bob = ask(alice, bob, "5.00")
    with pytest.raises(manual.ManualOwnAccount):
        manual.manual_approve(adjustment_id=for_bob.pk, approver=bob)
    with pytest.raises(manual.ManualOwnAccount):
        manual.manual_refuse(adjustment_id=for_bob.pk, approver=bob, notes="no thanks")
    with pytest.raises(manual.ManualNotAllowed):
        manual.manual_approve(adjustment_id=own.pk, approver=alice)
    with pytest.raises(manual.ManualNotFound):
        manual.manual_approve(adjustment_id=own.pk + 1000, approver=bob)
    assert set(ManualAdjustment.objects.values_list("outcome", flat=True)) == {"pending"}
    assert Transaction.objects.count() == 0


def test_a_refusal_needs_a_reason_and_is_never_posted(alice, bob, carol):
    asked = ask(alice, carol, "9.99")
    with pytest.raises(manual.ManualReasonRequired):
        manual.manual_refuse(adjustment_id=asked.pk, approver=bob, notes="  ")
    with pytest.raises(manual.ManualReasonRequired):
        manual.manual_refuse(adjustment_id=asked.pk, approver=bob, notes="x" * 501)
    with pytest.raises(manual.ManualNotAllowed):
        manual.manual_refuse(adjustment_id=asked.pk, approver=member("operator"), notes="no")
    manual.manual_refuse(adjustment_id=asked.pk, approver=bob, notes="no ticket for it")
    stored = reload(asked)
    assert (stored.outcome, stored.decided_by, stored.decision_notes, stored.transaction) == (
        "refused",
        bob,
        "no ticket for it",
        None,
    )
    with pytest.raises(manual.ManualAlreadyDecided):
        manual.manual_approve(adjustment_id=asked.pk, approver=bob)
    assert postings(carol) == []


def test_the_requester_may_withdraw_their_own_request(alice, carol):
    asked = ask(alice, carol, "3.00")
    manual.manual_refuse(adjustment_id=asked.pk, approver=alice, notes="wrong user")
    stored = reload(asked)
    assert (stored.outcome, stored.decided_by) == ("refused", alice)
    assert postings(carol) == []
    # ... while they still hold the request permission.
    again = ask(alice, carol, "3.00")
    alice.groups.clear()
    former = type(alice).objects.get(pk=alice.pk)
    with pytest.raises(manual.ManualNotAllowed):
        manual.manual_refuse(adjustment_id=again.pk, approver=former, notes="oops")


@committed
def test_the_database_keeps_a_decision_final_and_its_posting_the_one_asked_for(alice, bob, carol):
    applied = ask(alice, carol, "5.00")
    manual.manual_approve(adjustment_id=applied.pk, approver=bob)
    pending = ask(alice, carol, "5.00")
    other = ledger.post(
        user_id=carol.pk, kind="bonus", amount_usd=Decimal("7.00"), idempotency_key="other"
    )
    same = ledger.post(
        user_id=carol.pk, kind="bonus", amount_usd=Decimal("5.00"), idempotency_key="same"
    )
    with pytest.raises(IntegrityError, match="a decision is final"), transaction.atomic():
        ManualAdjustment.objects.filter(pk=applied.pk).update(outcome="refused")
    with pytest.raises(IntegrityError, match="cannot change"), transaction.atomic():
        ManualAdjustment.objects.filter(pk=pending.pk).update(amount_usd=Decimal("500.00"))
    with pytest.raises(IntegrityError, match="must be the"), transaction.atomic():
        ManualAdjustment.objects.filter(pk=pending.pk).update(
            outcome="applied", decided_by=bob, transaction=other
        )
    with (
        pytest.raises(IntegrityError, match="second_operator"),
        transaction.atomic(),
        connection.cursor() as cursor,  # raw SQL: the CHECK holds whatever the client
    ):
        cursor.execute(
            "UPDATE payments_manualadjustment SET outcome = 'applied', decided_by_id = %s, "
            "transaction_id = %s WHERE id = %s",
            [alice.pk, same.pk, pending.pk],
        )
    assert reload(pending).outcome == "pending"


@committed
def test_two_supervisors_approving_at_once_post_once(alice, carol):
    supervisors = [member("supervisor") for _ in range(4)]
    asked = ask(alice, carol, "12.34")
    barrier = threading.Barrier(len(supervisors))
    outcomes: list[str] = []

    def approve(supervisor: Any) -> None:
        try:
            barrier.wait()
            manual.manual_approve(adjustment_id=asked.pk, approver=supervisor)
            outcomes.append("applied")
        except manual.ManualAlreadyDecided:
            outcomes.append("already decided")
        except BaseException as exc:  # noqa: BLE001 - reported below
            outcomes.append(repr(exc))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=approve, args=(s,)) for s in supervisors]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["already decided"] * 3 + ["applied"]
    assert postings(carol) == [("bonus", Decimal("12.34"), f"manual:{asked.pk}")]
    assert balance(carol) == Decimal("12.34")
    assert reload(asked).decided_by in supervisors


# --- the admin ------------------------------------------------------------------------------


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def shown(response: Any) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def logged(obj: Any) -> list[tuple[str, str]]:
    return [
        (entry.user.username, entry.get_change_message())
        for entry in LogEntry.objects.filter(
            content_type=ContentType.objects.get_for_model(obj), object_id=str(obj.pk)
        ).order_by("pk")
    ]


def test_the_add_form_requests_through_the_service_and_logs_it(alice, carol):
    ledger.post(user_id=carol.pk, kind="deposit", amount_usd=Decimal("1.00"), idempotency_key="d")
    client = signed_in(alice)
    assert client.get(f"{ADMIN}add/").status_code == 200
    form = {"user": carol.pk, "kind": "bonus", "amount_usd": "15.00", "reason": "outage"}
    done = client.post(f"{ADMIN}add/", form, follow=True)
    asked = ManualAdjustment.objects.get()
    assert done.redirect_chain[-1][0] == f"{ADMIN}{asked.pk}/change/"
    assert (asked.requested_by, asked.outcome, asked.amount_usd) == (
        alice,
        "pending",
        Decimal("15.00"),
    )
    message = "Requested a bonus of 15.00 USD for carol (a supervisor approves): outage"
    assert logged(asked) == [("alice", message)]
    assert logged(UserBalance.objects.get(user=carol)) == [
        ("alice", f"Manual request {asked.pk}: {message}")
    ]
    assert postings(carol)[1:] == []


@pytest.mark.parametrize(
    ("form", "said"),
    [
        ({"kind": "bonus", "amount_usd": "-5.00"}, "A bonus is a credit"),
        ({"kind": "adjustment", "amount_usd": "0"}, "non-zero amount"),
        ({"amount_usd": "1.001"}, "2 decimal places"),
        ({"amount_usd": "lots"}, "Enter a number"),
        ({"reason": " "}, "This field is required"),
        ({"kind": "gift"}, "Select a valid choice"),
        ({"user": "999999"}, "Select a valid choice"),
        ({"user": "self"}, "their own account"),
    ],
)
def test_bad_input_in_the_add_form_is_a_message_and_changes_nothing(alice, carol, form, said):
    data = {"user": carol.pk, "kind": "bonus", "amount_usd": "5.00", "reason": "outage", **form}
    if data["user"] == "self":
        data["user"] = alice.pk
    page = signed_in(alice).post(f"{ADMIN}add/", data)
    assert page.status_code == 200
    assert said in page.content.decode()
    assert not ManualAdjustment.objects.exists()
    assert not LogEntry.objects.exists()


def test_only_a_requester_sees_the_add_form(bob):
    assert signed_in(bob).get(f"{ADMIN}add/").status_code == 403
    assert signed_in(bob).get(ADMIN).status_code == 200  # a supervisor reads the list


def test_the_change_page_is_read_only_with_buttons_for_who_may_decide(alice, bob, carol):
    asked = ask(alice, carol, "8.00")
    page = signed_in(bob).get(f"{ADMIN}{asked.pk}/change/").content.decode()
    assert 'id="approve-button"' in page
    assert f'href="{ADMIN}{asked.pk}/approve/"' in page
    assert 'id="refuse-button"' in page
    assert 'name="_save"' not in page
    own = signed_in(alice).get(f"{ADMIN}{asked.pk}/change/").content.decode()
    assert 'id="approve-button"' not in own
    assert "Withdraw my request" in own  # the refuse button, for the requester
    viewer = signed_in(member("viewer")).get(f"{ADMIN}{asked.pk}/change/").content.decode()
    assert 'id="approve-button"' not in viewer
    assert 'id="refuse-button"' not in viewer
    manual.manual_approve(adjustment_id=asked.pk, approver=bob)
    decided = signed_in(bob).get(f"{ADMIN}{asked.pk}/change/").content.decode()
    assert 'id="approve-button"' not in decided
    assert 'id="refuse-button"' not in decided


@committed
def test_approving_in_the_admin_posts_once_and_logs_it(alice, bob, carol):
    asked = ask(alice, carol, "8.00", reason="outage")
    client = signed_in(bob)
    url = f"{ADMIN}{asked.pk}/approve/"
    page = client.get(url)
    assert page.status_code == 200
    body = page.content.decode()
    assert '<textarea id="id_reason" name="reason"' in body
    assert '<button type="submit" name="confirm" value="yes">' in body
    assert reload(asked).outcome == "pending"  # GET changes nothing
    client.post(url, {"reason": "ok"})  # no confirm=yes: nothing either
    assert reload(asked).outcome == "pending"

    done = client.post(url, {"reason": "ticket 42", "confirm": "yes"}, follow=True)
    assert done.redirect_chain[-1][0] == f"{ADMIN}{asked.pk}/change/"
    stored = reload(asked)
    assert (stored.outcome, stored.decision_notes) == ("applied", "ticket 42")
    message = (
        f"Approved a bonus of 8.00 USD for carol requested by alice (posting "
        f"{stored.transaction_id}): outage; note: ticket 42"
    )
    assert shown(done) == [f"{message}."]
    assert logged(stored) == [("bob", message)]
    assert logged(UserBalance.objects.get(user=carol))[-1] == (
        "bob",
        f"Manual request {asked.pk}: {message}",
    )
    again = client.post(url, {"confirm": "yes"}, follow=True)
    assert "already applied" in shown(again)[0]
    assert len(postings(carol)) == 1


def test_refusing_in_the_admin_needs_a_reason(alice, bob, carol):
    asked = ask(alice, carol, "8.00", kind="adjustment", reason="typo")
    client = signed_in(bob)
    url = f"{ADMIN}{asked.pk}/refuse/"
    assert "required" in client.get(url).content.decode()
    empty = client.post(url, {"reason": " ", "confirm": "yes"})
    assert empty.status_code == 200
    assert "needs a reason" in shown(empty)[0]
    assert reload(asked).outcome == "pending"
    done = client.post(url, {"reason": "not agreed", "confirm": "yes"}, follow=True)
    assert reload(asked).outcome == "refused"
    assert logged(asked)[-1] == (
        "bob",
        "Refused an adjustment of 8.00 USD for carol requested by alice: not agreed "
        "(it was requested because: typo)",
    )
    assert shown(done)[0].startswith("Refused an adjustment")
    assert postings(carol) == []


def test_deciding_in_the_admin_without_the_right_is_a_message_not_a_change(alice, bob, carol):
    asked = ask(alice, carol, "8.00")
    for client in (signed_in(alice), signed_in(member("viewer"))):
        response = client.post(f"{ADMIN}{asked.pk}/approve/", {"confirm": "yes"}, follow=True)
        assert response.status_code == 200
        assert shown(response)
    assert (
        signed_in(member()).post(f"{ADMIN}{asked.pk}/approve/", {"confirm": "yes"}).status_code
        == 403
    )
    missing = signed_in(bob).get(f"{ADMIN}999999/approve/", follow=True)
    assert missing.status_code == 200
    assert "exist. Perhaps it was deleted?" in shown(missing)[0]
    assert reload(asked).outcome == "pending"
