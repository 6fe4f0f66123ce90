"""The role matrix: each operator role (payments/roles.py) against each money action, through
the real services and the admin's POST endpoints; and nobody approves what they requested."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import factory
import pytest
from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group
from django.test import Client, RequestFactory

from payments import ledger
from payments.errors import PermissionDenied
from payments.models import (
    Currency,
    ManualAdjustment,
    Payment,
    PaymentResolution,
    ProviderEvent,
    Transaction,
    WithdrawalRequest,
)
from payments.models.withdrawal import WithdrawalOverride
from payments.services import deposits, events, manual, withdrawals
from tests.factories import UserFactory
from tests.payments.services.deposits.test_policy import apply

pytestmark = pytest.mark.django_db

ROLES = ("viewer", "approver", "operator", "supervisor", "no group")
TRON = "TQn9Y2khEsLJW1ChVWFMSMeRDow5KcbLSE"
NO_PASSWORD = factory.Transformer.Force("!")  # no hashing: force_login needs no password

# Who may do what: the table the roles' docstring states.
ALLOWED: dict[str, set[str]] = {
    "approve a withdrawal": {"approver"},
    "reject a withdrawal": {"approver"},
    "request a forced override": {"approver", "operator", "supervisor"},
    "approve a forced override": {"supervisor"},
    "reject a payment in review": {"operator"},
    "request crediting a payment in review": {"operator"},
    "approve crediting the received amount": {"supervisor"},
    "approve a full credit": {"supervisor"},
    "request manual money": {"operator"},
    "approve manual money": {"supervisor"},
    "refuse manual money": {"supervisor"},
    "reprocess an event": {"operator"},
    "edit a currency": {"operator"},
}


def member(*roles: str) -> Any:
    """A staff user in these groups ("no group": none), loaded fresh (no cached permissions)."""
    user = UserFactory(is_staff=True, password=NO_PASSWORD)
    user.groups.add(*Group.objects.filter(name__in=roles))
    return type(user).objects.get(pk=user.pk)


def customer(funds: str = "100.00") -> Any:
    user = UserFactory(password=NO_PASSWORD)
    ledger.post(
        user_id=user.pk, kind="deposit", amount_usd=Decimal(funds), idempotency_key=f"f{user.pk}"
    )
    return user


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def refused(call: Callable[[], Any]) -> bool:
    """True when the service refused the actor (PermissionDenied); False when it acted."""
    try:
        call()
    except PermissionDenied:
        return True
    return False


# --- the world each action acts on ----------------------------------------------------------


def pending_withdrawal(currency: Currency) -> WithdrawalRequest:
    return withdrawals.withdrawal_create(
        user_id=customer().pk,
        amount_usd=Decimal("20.00"),
        currency_id=currency.pk,
        wallet_address=TRON,
    )


def processing_withdrawal(currency: Currency, settings: Any) -> WithdrawalRequest:
    """Processing with payouts on, so only a forced override may fail it (no sandbox payout:
    the override's approval moves it on our side only)."""
    settings.PAYMENTS_PAYOUTS_ENABLED = False
    withdrawal = pending_withdrawal(currency)
    withdrawals.withdrawal_approve(withdrawal_id=withdrawal.pk, admin_user=member("approver"))
    withdrawals.withdrawal_start_processing(withdrawal_id=withdrawal.pk)
    settings.PAYMENTS_PAYOUTS_ENABLED = True
    return withdrawal


def in_review(sandbox: Any, settings: Any) -> Payment:
    settings.PAYMENTS_UNDERPAYMENT_POLICY = "review"
    payment = deposits.payment_create(
        user_id=UserFactory(password=NO_PASSWORD).pk,
        amount_usd=Decimal("40.00"),
        currency_code="USDTTRC20",
    )
    done = apply(sandbox, payment, "finished", actually_paid=payment.pay_amount / 4)
    assert done.status == "review"
    return done


def requested_credit(sandbox: Any, settings: Any, action: str) -> PaymentResolution:
    return deposits.payment_review_request(
        payment_id=in_review(sandbox, settings).pk,
        action=action,
        operator=member("operator"),
        reason="the customer wrote in",
    )


def manual_pending(amount: str = "5.00") -> ManualAdjustment:
    return manual.manual_request(
        user_id=customer().pk,
        kind="adjustment",
        amount_usd=Decimal(amount),
        reason="support ticket 7",
        requested_by=member("operator"),
    )


# --- the actions: each returns whether the actor was allowed and it happened ----------------


def approve_withdrawal(actor: Any, ctx: dict[str, Any]) -> bool:
    withdrawal = pending_withdrawal(ctx["usdt"])
    if refused(
        lambda: withdrawals.withdrawal_approve(withdrawal_id=withdrawal.pk, admin_user=actor)
    ):
        assert WithdrawalRequest.objects.get(pk=withdrawal.pk).status == "pending"
        return False
    assert WithdrawalRequest.objects.get(pk=withdrawal.pk).status == "approved"
    return True


def reject_withdrawal(actor: Any, ctx: dict[str, Any]) -> bool:
    withdrawal = pending_withdrawal(ctx["usdt"])
    reject = withdrawals.withdrawal_reject
    if refused(lambda: reject(withdrawal_id=withdrawal.pk, admin_user=actor, notes="fraud")):
        assert WithdrawalRequest.objects.get(pk=withdrawal.pk).status == "pending"
        return False
    assert WithdrawalRequest.objects.get(pk=withdrawal.pk).status == "rejected"
    return True


def request_forced_override(actor: Any, ctx: dict[str, Any]) -> bool:
    """Through the admin: the request is an admin action, gated by the permissions it needs."""
    withdrawal = processing_withdrawal(ctx["usdt"], ctx["settings"])
    response = signed_in(actor).post(
        "/admin/payments/withdrawalrequest/",
        {
            "action": "request_forced_failure",
            "_selected_action": [str(withdrawal.pk)],
            "apply": "1",
            "override_reason": "NowPayments support says it is never sent",
        },
    )
    assert response.status_code in (200, 302, 403)
    return WithdrawalOverride.objects.filter(withdrawal=withdrawal).exists()


def approve_forced_override(actor: Any, ctx: dict[str, Any]) -> bool:
    withdrawal = processing_withdrawal(ctx["usdt"], ctx["settings"])
    override = withdrawals.withdrawal_override_request(
        withdrawal_id=withdrawal.pk,
        action="fail",
        requested_by=member("operator"),
        reason="never sent",
    )
    approve = withdrawals.withdrawal_override_approve
    if refused(lambda: approve(override_id=override.pk, approver=actor)):
        assert WithdrawalRequest.objects.get(pk=withdrawal.pk).status == "processing"
        return False
    assert WithdrawalRequest.objects.get(pk=withdrawal.pk).status == "failed"
    return True


def reject_in_review(actor: Any, ctx: dict[str, Any]) -> bool:
    payment = in_review(ctx["sandbox"], ctx["settings"])
    request = deposits.payment_review_request
    if refused(
        lambda: request(payment_id=payment.pk, action="reject", operator=actor, reason="stolen")
    ):
        assert Payment.objects.get(pk=payment.pk).status == "review"
        return False
    assert Payment.objects.get(pk=payment.pk).status == "failed"
    return True


def request_credit_in_review(actor: Any, ctx: dict[str, Any]) -> bool:
    payment = in_review(ctx["sandbox"], ctx["settings"])
    request = deposits.payment_review_request
    allowed = not refused(
        lambda: request(payment_id=payment.pk, action="credit_full", operator=actor, reason="ok")
    )
    assert Payment.objects.get(pk=payment.pk).status == "review"  # a credit waits either way
    assert PaymentResolution.objects.filter(payment=payment).exists() == allowed
    return allowed


def approver_of(action: str) -> Callable[[Any, dict[str, Any]], bool]:
    def approve_credit(actor: Any, ctx: dict[str, Any]) -> bool:
        resolution = requested_credit(ctx["sandbox"], ctx["settings"], action)
        approve = deposits.payment_review_approve
        allowed = not refused(lambda: approve(resolution_id=resolution.pk, approver=actor))
        credited = Transaction.objects.filter(payment_id=resolution.payment_id).exists()
        assert credited == allowed
        return allowed

    return approve_credit


def request_manual(actor: Any, ctx: dict[str, Any]) -> bool:
    user = customer()
    allowed = not refused(
        lambda: manual.manual_request(
            user_id=user.pk,
            kind="bonus",
            amount_usd=Decimal("5.00"),
            reason="outage",
            requested_by=actor,
        )
    )
    assert ManualAdjustment.objects.filter(user=user).exists() == allowed
    return allowed


def approve_manual(actor: Any, ctx: dict[str, Any]) -> bool:
    """Through the admin's confirmation page (POST with confirm=yes)."""
    asked = manual_pending()
    response = signed_in(actor).post(
        f"/admin/payments/manualadjustment/{asked.pk}/approve/", {"confirm": "yes"}
    )
    assert response.status_code in (302, 403)
    done = ManualAdjustment.objects.get(pk=asked.pk)
    assert (done.transaction_id is not None) == (done.outcome == "applied")
    return done.outcome == "applied"


def refuse_manual(actor: Any, ctx: dict[str, Any]) -> bool:
    asked = manual_pending()
    refuse = manual.manual_refuse
    allowed = not refused(lambda: refuse(adjustment_id=asked.pk, approver=actor, notes="no"))
    assert ManualAdjustment.objects.get(pk=asked.pk).outcome == (
        "refused" if allowed else "pending"
    )
    return allowed


def reprocess_event(actor: Any, ctx: dict[str, Any]) -> bool:
    """Through the admin's action (the event store commits on its own: see the test)."""
    event_id, _ = events.event_store(
        kind="payment",
        object_id="999000111",
        status="finished",
        body=b'{"payment_id": 999000111, "payment_status": "finished"}',
        signature="f" * 128,
    )
    signed_in(actor).post(
        "/admin/payments/providerevent/",
        {"action": "reprocess_selected", "_selected_action": [str(event_id)]},
    )
    reprocessed = ProviderEvent.objects.get(pk=event_id).outcome != "received"
    assert LogEntry.objects.filter(object_id=str(event_id)).exists() == reprocessed
    return reprocessed


def edit_currency(actor: Any, ctx: dict[str, Any]) -> bool:
    """The admin's change permission, and what its change page offers (a Save button)."""
    currency = ctx["usdt"]
    request = RequestFactory().get("/")
    request.user = actor
    allowed = admin.site._registry[Currency].has_change_permission(request, currency)
    page = signed_in(actor).get(f"/admin/payments/currency/{currency.pk}/change/")
    if page.status_code == 403:
        assert not allowed
    else:
        assert ('name="_save"' in page.content.decode()) == allowed
    return allowed


ACTIONS: dict[str, Callable[[Any, dict[str, Any]], bool]] = {
    "approve a withdrawal": approve_withdrawal,
    "reject a withdrawal": reject_withdrawal,
    "request a forced override": request_forced_override,
    "approve a forced override": approve_forced_override,
    "reject a payment in review": reject_in_review,
    "request crediting a payment in review": request_credit_in_review,
    "approve crediting the received amount": approver_of("credit_received"),
    "approve a full credit": approver_of("credit_full"),
    "request manual money": request_manual,
    "approve manual money": approve_manual,
    "refuse manual money": refuse_manual,
    "reprocess an event": reprocess_event,
    "edit a currency": edit_currency,
}
# These commit for real: the event store runs in a durable transaction of its own, and a
# payment is created at the sandbox, which is never called inside a database transaction.
COMMITTED = {
    "reprocess an event",
    "reject a payment in review",
    "request crediting a payment in review",
    "approve crediting the received amount",
    "approve a full credit",
}
# Known holes, each a strict xfail so that fixing it turns the case red until it is removed.
HOLES: dict[tuple[str, str], str] = {}


def _cases() -> list[Any]:
    cases = []
    for action in ACTIONS:
        for role in ROLES:
            marks = [pytest.mark.django_db(transaction=True)] if action in COMMITTED else []
            if (action, role) in HOLES:
                marks.append(pytest.mark.xfail(strict=True, reason=HOLES[action, role]))
            cases.append(pytest.param(action, role, marks=marks, id=f"{action}-{role}"))
    return cases


@pytest.fixture
def ctx(sandbox: Any, usdt: Currency, settings: Any) -> dict[str, Any]:
    settings.PAYMENTS_PAYOUTS_ENABLED = False
    return {"sandbox": sandbox, "usdt": usdt, "settings": settings}


def test_the_table_names_every_action() -> None:
    assert set(ALLOWED) == set(ACTIONS)
    assert {role for allowed in ALLOWED.values() for role in allowed} <= set(ROLES)


@pytest.mark.parametrize(("action", "role"), _cases())
def test_each_role_may_do_exactly_what_the_table_says(action: str, role: str, ctx) -> None:
    actor = member(role)
    assert ACTIONS[action](actor, ctx) == (role in ALLOWED[action])


# --- nobody approves what they requested ----------------------------------------------------


def own_withdrawal(ctx: dict[str, Any]) -> bool:
    """An approver's own withdrawal request: they may not approve nor reject it."""
    me = member("approver")
    ledger.post(user_id=me.pk, kind="deposit", amount_usd=Decimal("50"), idempotency_key="me")
    mine = withdrawals.withdrawal_create(
        user_id=me.pk, amount_usd=Decimal("20.00"), currency_id=ctx["usdt"].pk, wallet_address=TRON
    )
    approve, reject = withdrawals.withdrawal_approve, withdrawals.withdrawal_reject
    assert refused(lambda: reject(withdrawal_id=mine.pk, admin_user=me, notes="mine"))
    return refused(lambda: approve(withdrawal_id=mine.pk, admin_user=me)) and (
        WithdrawalRequest.objects.get(pk=mine.pk).status == "pending"
    )


def own_override(ctx: dict[str, Any]) -> bool:
    me = member("operator", "supervisor")
    withdrawal = processing_withdrawal(ctx["usdt"], ctx["settings"])
    override = withdrawals.withdrawal_override_request(
        withdrawal_id=withdrawal.pk, action="fail", requested_by=me, reason="never sent"
    )
    approve = withdrawals.withdrawal_override_approve
    return refused(lambda: approve(override_id=override.pk, approver=me)) and (
        WithdrawalRequest.objects.get(pk=withdrawal.pk).status == "processing"
    )


def own_credit(action: str) -> Callable[[dict[str, Any]], bool]:
    def check(ctx: dict[str, Any]) -> bool:
        me = member("operator", "supervisor")
        payment = in_review(ctx["sandbox"], ctx["settings"])
        asked = deposits.payment_review_request(
            payment_id=payment.pk, action=action, operator=me, reason="mine to approve?"
        )
        approve, refuse = deposits.payment_review_approve, deposits.payment_review_refuse
        assert refused(lambda: refuse(resolution_id=asked.pk, approver=me))
        return refused(lambda: approve(resolution_id=asked.pk, approver=me)) and not (
            Transaction.objects.filter(payment=payment).exists()
        )

    return check


def own_manual(ctx: dict[str, Any]) -> bool:
    me = member("operator", "supervisor")
    asked = manual.manual_request(
        user_id=customer().pk,
        kind="bonus",
        amount_usd=Decimal("5.00"),
        reason="mine to approve?",
        requested_by=me,
    )
    response = signed_in(me).post(
        f"/admin/payments/manualadjustment/{asked.pk}/approve/", {"confirm": "yes"}
    )
    assert response.status_code == 302
    return refused(lambda: manual.manual_approve(adjustment_id=asked.pk, approver=me)) and (
        ManualAdjustment.objects.get(pk=asked.pk).outcome == "pending"
    )


FOUR_EYES: dict[str, Callable[[dict[str, Any]], bool]] = {
    "withdrawal": own_withdrawal,
    "forced override": own_override,
    "crediting the received amount": own_credit("credit_received"),
    "crediting in full": own_credit("credit_full"),
    "manual money": own_manual,
}


@pytest.mark.parametrize(
    "action",
    [
        pytest.param(a, marks=[pytest.mark.django_db(transaction=True)] if "credit" in a else [])
        for a in FOUR_EYES
    ],
)
def test_nobody_approves_what_they_requested(action: str, ctx) -> None:
    assert FOUR_EYES[action](ctx)
