"""Payments in review: crediting what was received or the price in full takes four eyes;
rejecting applies at once."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages

from payments.errors import InvalidAmount, InvalidTransition, PermissionDenied
from payments.models import LedgerDrift, Payment, PaymentResolution, Transaction
from payments.services import deposits
from tests.factories import UserFactory
from tests.payments.services.deposits.test_policy import apply

pytestmark = pytest.mark.django_db(transaction=True)


def operator(*perms: str) -> Any:
    user = UserFactory(is_staff=True)
    for codename in perms:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return type(user).objects.get(pk=user.pk)  # a fresh object: no cached permissions


@pytest.fixture
def in_review(sandbox: Any, usdt: Any, settings: Any) -> Payment:
    settings.PAYMENTS_UNDERPAYMENT_POLICY = "review"
    payment = deposits.payment_create(
        user_id=UserFactory().pk, amount_usd=Decimal("40.00"), currency_code="USDTTRC20"
    )
    done = apply(sandbox, payment, "finished", actually_paid=payment.pay_amount / 4)
    assert done.status == "review"
    return done


def deposits_of(payment: Payment) -> list[Decimal]:
    return list(
        Transaction.objects.filter(payment=payment, transaction_type="deposit").values_list(
            "amount_usd", flat=True
        )
    )


def test_crediting_the_received_amount_waits_for_a_second_operator_then_posts_once(
    in_review: Payment,
) -> None:
    op = operator("resolve_payment", "approve_full_credit")
    requested = deposits.payment_review_request(
        payment_id=in_review.pk, action="credit_received", operator=op, reason="customer paid 1/4"
    )
    assert (requested.outcome, requested.credit_usd) == ("pending", Decimal("10.00"))
    assert Payment.objects.get(pk=in_review.pk).status == "review"
    assert deposits_of(in_review) == []
    with pytest.raises(PermissionDenied, match="someone else"):
        deposits.payment_review_approve(resolution_id=requested.pk, approver=op)
    with pytest.raises(PermissionDenied, match="someone else"):
        deposits.payment_review_refuse(resolution_id=requested.pk, approver=op)
    with pytest.raises(PermissionDenied):
        deposits.payment_review_approve(
            resolution_id=requested.pk, approver=operator("resolve_payment")
        )
    assert deposits_of(in_review) == []
    second = operator("approve_full_credit")
    deposits.payment_review_approve(resolution_id=requested.pk, approver=second)
    payment = Payment.objects.get(pk=in_review.pk)
    assert (payment.status, deposits_of(payment)) == ("completed", [Decimal("10.00")])
    resolution = PaymentResolution.objects.get(payment=payment)
    assert (resolution.outcome, resolution.requested_by_id, resolution.decided_by_id) == (
        "applied",
        op.pk,
        second.pk,
    )
    finding = LedgerDrift.objects.get(payment=payment, kind="payment_in_review")
    assert finding.resolved_at is not None
    assert "customer paid 1/4" in finding.resolution_notes
    with pytest.raises(InvalidTransition):
        deposits.payment_review_request(
            payment_id=payment.pk, action="credit_received", operator=op, reason="again"
        )
    assert deposits_of(payment) == [Decimal("10.00")]


def test_crediting_in_full_needs_a_second_operator(in_review: Payment) -> None:
    requester = operator("resolve_payment", "approve_full_credit")
    resolution = deposits.payment_review_request(
        payment_id=in_review.pk, action="credit_full", operator=requester, reason="goodwill"
    )
    assert Payment.objects.get(pk=in_review.pk).status == "review"
    assert deposits_of(in_review) == []
    with pytest.raises(PermissionDenied, match="someone else"):
        deposits.payment_review_approve(resolution_id=resolution.pk, approver=requester)
    with pytest.raises(PermissionDenied):
        deposits.payment_review_approve(
            resolution_id=resolution.pk, approver=operator("resolve_payment")
        )
    deposits.payment_review_approve(
        resolution_id=resolution.pk, approver=operator("approve_full_credit")
    )
    payment = Payment.objects.get(pk=in_review.pk)
    assert (payment.status, deposits_of(payment)) == ("completed", [Decimal("40.00")])


def test_a_refused_credit_leaves_the_payment_in_review_for_another_decision(
    in_review: Payment,
) -> None:
    requester = operator("resolve_payment")
    asked = deposits.payment_review_request(
        payment_id=in_review.pk, action="credit_received", operator=requester, reason="1/4"
    )
    with pytest.raises(InvalidTransition, match="waiting for approval"):
        deposits.payment_review_request(
            payment_id=in_review.pk, action="reject", operator=requester, reason="changed my mind"
        )
    owner = in_review.user
    owner.user_permissions.add(Permission.objects.get(codename="approve_full_credit"))
    with pytest.raises(PermissionDenied, match="own payment"):
        deposits.payment_review_refuse(
            resolution_id=asked.pk, approver=type(owner).objects.get(pk=owner.pk)
        )
    refused = deposits.payment_review_refuse(
        resolution_id=asked.pk, approver=operator("approve_full_credit")
    )
    assert refused.outcome == "refused"
    with pytest.raises(InvalidTransition, match="already refused"):
        deposits.payment_review_approve(
            resolution_id=asked.pk, approver=operator("approve_full_credit")
        )
    assert (Payment.objects.get(pk=in_review.pk).status, deposits_of(in_review)) == ("review", [])
    deposits.payment_review_request(
        payment_id=in_review.pk, action="reject", operator=requester, reason="not ours after all"
    )
    assert Payment.objects.get(pk=in_review.pk).status == "failed"


def test_rejecting_applies_at_once_and_credits_nothing(in_review: Payment) -> None:
    op = operator("resolve_payment")
    deposits.payment_review_request(
        payment_id=in_review.pk, action="reject", operator=op, reason="not ours"
    )
    payment = Payment.objects.get(pk=in_review.pk)
    assert (payment.status, deposits_of(payment)) == ("failed", [])
    assert "not ours" in payment.provider_error
    resolution = PaymentResolution.objects.get(payment=payment)
    assert (resolution.outcome, resolution.decided_by_id) == ("applied", op.pk)


def test_decisions_need_the_permission_a_reason_and_not_ones_own_payment(
    in_review: Payment,
) -> None:
    with pytest.raises(PermissionDenied):
        deposits.payment_review_request(
            payment_id=in_review.pk, action="reject", operator=operator(), reason="x"
        )
    with pytest.raises(InvalidAmount, match="reason"):
        deposits.payment_review_request(
            payment_id=in_review.pk,
            action="reject",
            operator=operator("resolve_payment"),
            reason=" ",
        )
    owner = in_review.user
    owner.user_permissions.add(Permission.objects.get(codename="resolve_payment"))
    owner = type(owner).objects.get(pk=owner.pk)
    with pytest.raises(PermissionDenied, match="own"):
        deposits.payment_review_request(
            payment_id=in_review.pk, action="credit_received", operator=owner, reason="mine"
        )
    assert Payment.objects.get(pk=in_review.pk).status == "review"


def test_a_wrong_asset_cannot_be_credited_as_a_share(sandbox: Any, usdt: Any) -> None:
    payment = deposits.payment_create(
        user_id=UserFactory().pk, amount_usd=Decimal("40.00"), currency_code="USDTTRC20"
    )
    apply(sandbox, payment, "finished", pay_currency="btc", actually_paid=Decimal("0.001"))
    with pytest.raises(InvalidAmount, match="BTC arrived"):
        deposits.payment_review_request(
            payment_id=payment.pk,
            action="credit_received",
            operator=operator("resolve_payment"),
            reason="?",
        )


def test_the_admin_requests_with_a_reason_and_a_second_operator_approves(
    in_review: Payment, client: Any
) -> None:
    op = operator("resolve_payment", "view_payment", "change_payment")
    client.force_login(op)
    url = "/admin/payments/payment/"
    form = {"action": "credit_received", "_selected_action": [str(in_review.pk)]}
    page = client.post(url, form)
    assert page.status_code == 200
    assert b"Reason" in page.content
    assert b"second operator" in page.content
    assert Payment.objects.get(pk=in_review.pk).status == "review"
    done = client.post(url, {**form, "apply": "1", "reason": "checked on chain"}, follow=True)
    assert done.status_code == 200
    assert [str(m) for m in get_messages(done.wsgi_request)] == [
        "Credit the received amount: 1 payment(s) requested; a second operator approves."
    ]
    assert Payment.objects.get(pk=in_review.pk).status == "review"
    assert PaymentResolution.objects.get(payment=in_review).reason == "checked on chain"

    approve = {"action": "approve_full_credit", "_selected_action": [str(in_review.pk)]}
    own = client.post(url, approve, follow=True)  # no approve permission: not even offered
    assert own.status_code == 200
    assert Payment.objects.get(pk=in_review.pk).status == "review"
    client.force_login(operator("approve_full_credit", "view_payment", "change_payment"))
    approved = client.post(url, approve, follow=True)
    assert [str(m) for m in get_messages(approved.wsgi_request)] == [
        "1 credit(s) approved and posted."
    ]
    assert Payment.objects.get(pk=in_review.pk).status == "completed"
    assert deposits_of(in_review) == [Decimal("10.00")]


def test_the_admin_refuses_a_requested_credit_with_a_reason(
    in_review: Payment, client: Any
) -> None:
    deposits.payment_review_request(
        payment_id=in_review.pk,
        action="credit_full",
        operator=operator("resolve_payment"),
        reason="goodwill",
    )
    client.force_login(operator("approve_full_credit", "view_payment", "change_payment"))
    url = "/admin/payments/payment/"
    form = {"action": "refuse_credit", "_selected_action": [str(in_review.pk)]}
    assert b"Reason" in client.post(url, form).content
    empty = client.post(url, {**form, "apply": "1", "reason": " "}, follow=True)
    assert [str(m) for m in get_messages(empty.wsgi_request)] == [
        "Say why the credits are refused."
    ]
    assert PaymentResolution.objects.get(payment=in_review).outcome == "pending"
    done = client.post(url, {**form, "apply": "1", "reason": "no wire arrived"}, follow=True)
    assert [str(m) for m in get_messages(done.wsgi_request)] == ["1 credit(s) refused."]
    assert PaymentResolution.objects.get(payment=in_review).outcome == "refused"
    assert (Payment.objects.get(pk=in_review.pk).status, deposits_of(in_review)) == ("review", [])


def test_the_database_refuses_a_full_credit_decided_by_its_requester(in_review: Payment) -> None:
    # Only crediting in full: for crediting what was received the service alone enforces it
    # (see test_crediting_the_received_amount_waits_for_a_second_operator_then_posts_once).
    from django.db import IntegrityError, transaction

    requester = operator("resolve_payment")
    resolution = deposits.payment_review_request(
        payment_id=in_review.pk, action="credit_full", operator=requester, reason="goodwill"
    )
    with pytest.raises(IntegrityError, match="second_operator"), transaction.atomic():
        PaymentResolution.objects.filter(pk=resolution.pk).update(decided_by=requester)
