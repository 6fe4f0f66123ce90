"""Payments in review: an operator rejects at once, or requests a credit (what was received, or
the price in full) that a second operator approves. The one writer of PaymentResolution.

Crediting a payment in review is manual money, so it takes four eyes whatever its size: the
requester never decides it (approving nor refusing). The database's
``resolution_credit_second_operator`` CHECK (migration 0015) refuses a credit applied by its
requester, whatever the client.
"""

from __future__ import annotations

import logging
import uuid
from decimal import ROUND_DOWN, Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from payments.errors import InvalidAmount, InvalidTransition, PermissionDenied
from payments.models import LedgerDrift, Payment, PaymentResolution
from payments.models.common import DecisionOutcome
from payments.models.ops import DriftKind
from payments.models.payment import PaymentStatus
from payments.models.resolution import ResolutionAction
from payments.money import CENT
from payments.services.deposits.moves import payment_move
from payments.services.findings import finding_resolve

logger = logging.getLogger(__name__)

RESOLVE_PERMISSION = "payments.resolve_payment"
APPROVE_FULL_PERMISSION = "payments.approve_full_credit"  # approves either kind of credit
CREDITS = (ResolutionAction.CREDIT_RECEIVED, ResolutionAction.CREDIT_FULL)


def payment_review_request(
    *, payment_id: uuid.UUID, action: str, operator: Any, reason: str
) -> PaymentResolution:
    """An operator's decision on a payment in review.

    Rejecting applies at once; crediting (what was received, or the price in full) waits for a
    second operator (``payment_review_approve`` or ``payment_review_refuse``).
    """
    reason = (reason or "").strip()
    if action not in ResolutionAction.values:
        raise InvalidTransition(f"{action!r} is not a decision on a payment in review.")
    if not reason:
        raise InvalidAmount("Say why: a decision on a payment in review needs a reason.")
    if not operator.has_perm(RESOLVE_PERMISSION):
        raise PermissionDenied(f"{operator} may not resolve payments in review.")
    with transaction.atomic():
        payment = _locked_in_review(payment_id)
        if payment.user_id == operator.pk:
            raise PermissionDenied("Nobody may resolve their own payment.")
        if PaymentResolution.objects.filter(
            payment_id=payment_id, outcome=DecisionOutcome.PENDING
        ).exists():
            raise InvalidTransition(
                f"{payment.internal_payment_id} already has a decision waiting for approval."
            )
        credit = _credit_for(payment, action)
        resolution = PaymentResolution.objects.create(
            payment=payment, action=action, reason=reason, credit_usd=credit, requested_by=operator
        )
        if action not in CREDITS:
            _apply(resolution, payment, decided_by=operator)
    logger.info("payment %s review: %s by %s", payment_id, action, operator.pk)
    return resolution


def payment_review_approve(*, resolution_id: int, approver: Any) -> PaymentResolution:
    """The second operator's approval of a requested credit of a payment in review."""
    if not approver.has_perm(APPROVE_FULL_PERMISSION):
        raise PermissionDenied(f"{approver} may not approve crediting a payment in review.")
    with transaction.atomic():
        resolution = PaymentResolution.objects.select_for_update().get(pk=resolution_id)
        if resolution.outcome != DecisionOutcome.PENDING:
            raise InvalidTransition(f"This decision is already {resolution.outcome}.")
        if resolution.requested_by_id == approver.pk:
            raise PermissionDenied("The second pair of eyes must be someone else's.")
        payment = _locked_in_review(resolution.payment_id)
        if payment.user_id == approver.pk:
            raise PermissionDenied("Nobody may approve crediting their own payment.")
        _apply(resolution, payment, decided_by=approver)
    return resolution


def payment_review_refuse(*, resolution_id: int, approver: Any) -> PaymentResolution:
    """The second operator refuses a requested credit; the payment stays in review.

    Not the requester (a mistaken request is refused by a supervisor), nor the payment's user.
    """
    if not approver.has_perm(APPROVE_FULL_PERMISSION):
        raise PermissionDenied(f"{approver} may not decide on crediting a payment in review.")
    with transaction.atomic():
        resolution = PaymentResolution.objects.select_for_update().get(pk=resolution_id)
        if resolution.outcome != DecisionOutcome.PENDING:
            raise InvalidTransition(f"This decision is already {resolution.outcome}.")
        if resolution.requested_by_id == approver.pk:
            raise PermissionDenied("The second pair of eyes must be someone else's.")
        if resolution.payment.user_id == approver.pk:
            raise PermissionDenied("Nobody may decide on crediting their own payment.")
        PaymentResolution.objects.filter(pk=resolution.pk).update(
            outcome=DecisionOutcome.REFUSED, decided_by=approver, decided_at=timezone.now()
        )
        resolution.refresh_from_db()
    return resolution


def _locked_in_review(payment_id: uuid.UUID) -> Payment:
    payment = (
        Payment._base_manager.select_for_update(of=("self",))
        .select_related("currency")
        .get(pk=payment_id)
    )
    if payment.status != PaymentStatus.REVIEW:
        raise InvalidTransition(
            f"{payment.internal_payment_id} is {payment.status}, not in review."
        )
    return payment


def _credit_for(payment: Payment, action: str) -> Decimal | None:
    if action == ResolutionAction.CREDIT_FULL:
        return payment.amount_usd
    if action == ResolutionAction.REJECT:
        return None
    reported_asset = str(payment.provider_data.get("pay_currency") or "").lower()
    if reported_asset and reported_asset != payment.currency.provider_code.lower():
        raise InvalidAmount(
            f"{reported_asset.upper()} arrived, not {payment.currency.provider_code.upper()}: "
            "what it is worth is not the received share; credit in full or reject."
        )
    paid, asked = payment.actual_amount, payment.pay_amount
    if not paid or not asked:
        raise InvalidAmount("NowPayments reports nothing received for this payment.")
    share = min(payment.amount_usd, (payment.amount_usd * paid / asked).quantize(CENT, ROUND_DOWN))
    if share <= 0:
        raise InvalidAmount("What was received is worth less than a cent.")
    return share


def _apply(resolution: PaymentResolution, payment: Payment, *, decided_by: Any) -> None:
    reason = f"{resolution.get_action_display()} by {decided_by}: {resolution.reason}"
    if resolution.action == ResolutionAction.REJECT:
        payment_move(payment_id=payment.pk, status=PaymentStatus.FAILED, reason=reason)
    else:
        payment_move(
            payment_id=payment.pk,
            status=PaymentStatus.COMPLETED,
            credit_usd=resolution.credit_usd,
            reason=reason,
        )
    PaymentResolution.objects.filter(pk=resolution.pk).update(
        outcome=DecisionOutcome.APPLIED, decided_by=decided_by, decided_at=timezone.now()
    )
    resolution.refresh_from_db()
    finding = LedgerDrift.objects.filter(
        kind=DriftKind.PAYMENT_IN_REVIEW, subject=f"payment:{payment.pk}", resolved_at=None
    ).first()
    if finding is not None:
        finding_resolve(finding_id=finding.pk, user=decided_by, notes=reason)
