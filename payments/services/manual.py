"""Manual money with four eyes: the one writer of ManualAdjustment.

An operator holding ``payments.request_manualadjustment`` asks to credit (BONUS, ADJUSTMENT)
or debit (ADJUSTMENT) a user by hand, with a reason; nothing is posted. A second operator
holding ``payments.approve_manualadjustment`` approves it, which posts it to the ledger exactly
once (key ``manual:<id>``), or refuses it with a reason. Nobody decides a request they made,
nobody requests or decides money for their own account, and a decision is final (the
PostgreSQL trigger of migration 0013 refuses to change one, and checks that the posting is the
one asked for).

The requester may withdraw their own pending request: that is a refusal by the requester,
with a reason, and needs no approver's permission (it moves no money); they still need the
request permission, so someone whose role was taken away withdraws nothing.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from payments import ledger
from payments.errors import InvalidAmount, InvalidTransition, PaymentsError, PermissionDenied
from payments.models import ManualAdjustment, Transaction
from payments.models.common import DecisionOutcome
from payments.models.manual import ManualKind
from payments.money import is_cents

logger = logging.getLogger(__name__)

REQUEST_PERMISSION = "payments.request_manualadjustment"
APPROVE_PERMISSION = "payments.approve_manualadjustment"
MAX_AMOUNT = Decimal("10000000000")  # the column's 12 digits, 2 of them cents
NOTES_MAX = 500  # ManualAdjustment.decision_notes


class ManualError(PaymentsError):
    """Base of the refusals of manual money; ``field`` names the form field it is about."""

    code = "manual_error"
    field: str | None = None


class ManualKindInvalid(ManualError):
    """Manual money is a bonus or an adjustment."""

    code = "manual_kind_invalid"
    field = "kind"


class ManualAmountInvalid(ManualError, InvalidAmount):
    """The amount is not a non-zero amount in whole cents (a bonus is positive)."""

    code = "manual_amount_invalid"
    field = "amount_usd"


class ManualReasonRequired(ManualError):
    """Manual money needs a reason (and refusing it too)."""

    code = "manual_reason_required"
    field = "reason"


class ManualUserUnknown(ManualError):
    """No user has this id."""

    code = "manual_user_unknown"
    field = "user"


class ManualOwnAccount(ManualError, PermissionDenied):
    """Nobody requests or decides manual money for their own account."""

    code = "manual_own_account"
    field = "user"


class ManualSecondOperator(ManualError, PermissionDenied):
    """Nobody approves the manual money they requested."""

    code = "manual_second_operator"


class ManualNotAllowed(ManualError, PermissionDenied):
    """The acting user lacks the permission for this step of manual money."""

    code = "manual_not_allowed"


class ManualAlreadyDecided(ManualError, InvalidTransition):
    """The request was already approved or refused: a decision is final."""

    code = "manual_already_decided"


class ManualNotFound(ManualError):
    """No manual credit or debit has this id."""

    code = "manual_not_found"
    status_code = 404


def manual_check_request(
    *, user_id: int | None, kind: str, amount_usd: Any, reason: str, requested_by: Any
) -> str:
    """Raise the ManualError a ``manual_request`` with these terms would; return the reason
    as it would be stored (stripped). Writes nothing: the admin's form validates with it."""
    if not requested_by.has_perm(REQUEST_PERMISSION):
        raise ManualNotAllowed(f"{requested_by} may not request manual credits or debits.")
    if kind not in ManualKind.values:
        raise ManualKindInvalid(f"{kind!r} is not a kind of manual money: bonus or adjustment.")
    if not isinstance(amount_usd, Decimal):
        raise ManualAmountInvalid(f"The amount must be a Decimal, not {type(amount_usd)}.")
    if not is_cents(amount_usd) or amount_usd == 0 or abs(amount_usd) >= MAX_AMOUNT:
        raise ManualAmountInvalid(
            f"{amount_usd} is not a non-zero amount in whole cents below {MAX_AMOUNT} USD."
        )
    if kind == ManualKind.BONUS and amount_usd < 0:
        raise ManualAmountInvalid("A bonus is a credit: its amount is positive.")
    reason = (reason or "").strip()
    if not reason:
        raise ManualReasonRequired("Say why: manual money needs a reason.")
    if user_id is None or not get_user_model().objects.filter(pk=user_id).exists():
        raise ManualUserUnknown(f"No user has the id {user_id}.")
    if user_id == requested_by.pk:
        raise ManualOwnAccount("Nobody requests manual money for their own account.")
    return reason


def manual_request(
    *, user_id: int, kind: str, amount_usd: Decimal, reason: str, requested_by: Any
) -> ManualAdjustment:
    """Ask for a manual credit or debit; it waits for a second operator and posts nothing."""
    reason = manual_check_request(
        user_id=user_id,
        kind=kind,
        amount_usd=amount_usd,
        reason=reason,
        requested_by=requested_by,
    )
    adjustment = ManualAdjustment.objects.create(
        user_id=user_id,
        kind=kind,
        amount_usd=amount_usd,
        reason=reason,
        requested_by=requested_by,
    )
    logger.info(
        "manual %s %s %s for user=%s requested by user=%s",
        adjustment.pk,
        kind,
        amount_usd,
        user_id,
        requested_by.pk,
    )
    return adjustment


def manual_check_decision(*, adjustment: ManualAdjustment, actor: Any, decision: str) -> None:
    """Raise the ManualError that ``actor`` approving (``decision="approve"``) or refusing
    (``"refuse"``) this request would meet, reason aside; writes nothing (the admin shows its
    buttons with it)."""
    if adjustment.outcome != DecisionOutcome.PENDING:
        raise ManualAlreadyDecided(
            f"Manual request {adjustment.pk} is already {adjustment.outcome}: a decision is final."
        )
    own = adjustment.requested_by_id == actor.pk
    if decision == "approve":
        if not actor.has_perm(APPROVE_PERMISSION):
            raise ManualNotAllowed(f"{actor} may not approve manual credits or debits.")
        if own:
            raise ManualSecondOperator(
                "The second pair of eyes must be someone else's: nobody approves the manual "
                "money they requested."
            )
    elif decision == "refuse":
        if own and not actor.has_perm(REQUEST_PERMISSION):
            raise ManualNotAllowed(f"{actor} may no longer withdraw manual money requests.")
        if not own and not actor.has_perm(APPROVE_PERMISSION):
            raise ManualNotAllowed(f"{actor} may not refuse manual credits or debits.")
    else:
        raise ValueError(f"A decision is 'approve' or 'refuse', not {decision!r}.")
    if adjustment.user_id == actor.pk:
        raise ManualOwnAccount("Nobody decides manual money for their own account.")


def manual_approve(*, adjustment_id: int, approver: Any, notes: str = "") -> ManualAdjustment:
    """A second operator approves a pending request: it is posted once, then marked applied.

    A debit the balance cannot cover raises the ledger's InsufficientFunds and the request
    stays pending (nothing is written).
    """
    if not approver.has_perm(APPROVE_PERMISSION):  # before taking any lock
        raise ManualNotAllowed(f"{approver} may not approve manual credits or debits.")
    notes = _notes(notes, required=False)
    with transaction.atomic():
        adjustment = _locked(adjustment_id)
        manual_check_decision(adjustment=adjustment, actor=approver, decision="approve")
        posting = ledger.post(
            user_id=adjustment.user_id,
            kind=adjustment.kind,
            amount_usd=adjustment.amount_usd,
            idempotency_key=f"manual:{adjustment.pk}",
            description=f"{adjustment.get_kind_display()}: {adjustment.reason}"[:500],
            metadata={
                "manual_adjustment_id": adjustment.pk,
                "requested_by": adjustment.requested_by_id,
                "approved_by": approver.pk,
            },
        )
        _decide(adjustment, approver, DecisionOutcome.APPLIED, notes=notes, posting=posting)
    logger.info(
        "manual %s applied (posting %s), approved by user=%s",
        adjustment.pk,
        posting.pk,
        approver.pk,
    )
    return adjustment


def manual_refuse(*, adjustment_id: int, approver: Any, notes: str) -> ManualAdjustment:
    """Turn a pending request down with a reason; it is never posted.

    A holder of the approve permission refuses someone else's request; the requester may
    withdraw their own (see the module's docstring).
    """
    notes = _notes(notes, required=True)
    with transaction.atomic():
        adjustment = _locked(adjustment_id)
        manual_check_decision(adjustment=adjustment, actor=approver, decision="refuse")
        _decide(adjustment, approver, DecisionOutcome.REFUSED, notes=notes)
    logger.info(
        "manual %s refused by user=%s%s",
        adjustment.pk,
        approver.pk,
        " (withdrawn by its requester)" if adjustment.requested_by_id == approver.pk else "",
    )
    return adjustment


def _notes(notes: str, *, required: bool) -> str:
    notes = (notes or "").strip()
    if required and not notes:
        raise ManualReasonRequired("Say why: refusing manual money needs a reason.")
    if len(notes) > NOTES_MAX:
        raise ManualReasonRequired(f"Keep the reason under {NOTES_MAX} characters.")
    return notes


def _locked(adjustment_id: int) -> ManualAdjustment:
    """The request, its row locked until the transaction ends."""
    try:
        return (
            ManualAdjustment.objects.select_for_update(of=("self",))
            .select_related("user", "requested_by")
            .get(pk=adjustment_id)
        )
    except (ManualAdjustment.DoesNotExist, ValueError, TypeError):
        raise ManualNotFound(f"No manual credit or debit has the id {adjustment_id}.") from None


def _decide(
    adjustment: ManualAdjustment,
    decider: Any,
    outcome: str,
    *,
    notes: str,
    posting: Transaction | None = None,
) -> None:
    adjustment.outcome = outcome
    adjustment.decided_by = decider
    adjustment.decided_at = timezone.now()
    adjustment.decision_notes = notes
    adjustment.transaction = posting
    adjustment.save(
        update_fields=["outcome", "decided_by", "decided_at", "decision_notes", "transaction"]
    )
