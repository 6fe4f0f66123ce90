"""Payments in review: credit what was received, credit in full with four eyes, or reject."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Permission

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


def test_crediting_the_received_amount_posts_the_share_once(in_review: Payment) -> None:
    op = operator("resolve_payment")
    deposits.payment_review_request(
        payment_id=in_review.pk, action="credit_received", operator=op, reason="customer paid 1/4"
    )
    payment = Payment.objects.get(pk=in_review.pk)
    assert (payment.status, deposits_of(payment)) == ("completed", [Decimal("10.00")])
    resolution = PaymentResolution.objects.get(payment=payment)
    assert (resolution.outcome, resolution.decided_by_id) == ("applied", op.pk)
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


def test_rejecting_credits_nothing(in_review: Payment) -> None:
    deposits.payment_review_request(
        payment_id=in_review.pk,
        action="reject",
        operator=operator("resolve_payment"),
        reason="not ours",
    )
    payment = Payment.objects.get(pk=in_review.pk)
    assert (payment.status, deposits_of(payment)) == ("failed", [])
    assert "not ours" in payment.provider_error


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


def test_the_admin_actions_go_through_a_confirmation_with_a_reason(
    in_review: Payment, client: Any
) -> None:
    op = operator("resolve_payment", "view_payment", "change_payment")
    client.force_login(op)
    url = "/admin/payments/payment/"
    form = {"action": "credit_received", "_selected_action": [str(in_review.pk)]}
    page = client.post(url, form)
    assert page.status_code == 200
    assert b"Reason" in page.content
    assert Payment.objects.get(pk=in_review.pk).status == "review"
    done = client.post(url, {**form, "apply": "1", "reason": "checked on chain"}, follow=True)
    assert done.status_code == 200
    assert Payment.objects.get(pk=in_review.pk).status == "completed"
    assert PaymentResolution.objects.get(payment=in_review).reason == "checked on chain"


def test_the_database_refuses_a_full_credit_decided_by_its_requester(in_review: Payment) -> None:
    from django.db import IntegrityError, transaction

    requester = operator("resolve_payment")
    resolution = deposits.payment_review_request(
        payment_id=in_review.pk, action="credit_full", operator=requester, reason="goodwill"
    )
    with pytest.raises(IntegrityError, match="second_operator"), transaction.atomic():
        PaymentResolution.objects.filter(pk=resolution.pk).update(decided_by=requester)
