"""Forced overrides: the one writer of WithdrawalOverride rows (two operators, one finding).

Where a payout exists, a withdrawal becomes completed or failed on NowPayments' word only
(DESIGN.md §3). In a real emergency an operator requests a forced completion or failure with a
reason; a different operator who holds the override permission approves it; only then does the
lifecycle apply it, and a ``forced_override`` finding tells reconciliation and operators.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from payments.errors import InvalidTransition, PermissionDenied
from payments.models import WithdrawalRequest
from payments.models.common import DecisionOutcome
from payments.models.ops import DriftKind
from payments.models.withdrawal import (
    OverrideAction,
    WithdrawalOverride,
    WithdrawalStatus,
)
from payments.services.findings import finding_record
from payments.services.withdrawals import lifecycle

logger = logging.getLogger(__name__)

OVERRIDE_PERMISSION = "payments.override_withdrawalrequest"
REQUEST_PERMISSION = "payments.change_withdrawalrequest"


def withdrawal_override_request(
    *,
    withdrawal_id: uuid.UUID,
    action: str,
    requested_by: Any,
    reason: str,
    transaction_hash: str = "",
) -> WithdrawalOverride:
    """Ask for a forced completion or failure of a processing withdrawal; applies nothing."""
    action = OverrideAction(action)
    reason = reason.strip()
    transaction_hash = transaction_hash.strip()
    if not requested_by.has_perm(REQUEST_PERMISSION):
        raise PermissionDenied(f"{requested_by} may not request a forced override.")
    if not reason:
        raise InvalidTransition("A forced override needs a reason.")
    if action == OverrideAction.COMPLETE and not transaction_hash:
        raise InvalidTransition("A forced completion needs the payout's transaction hash.")
    with transaction.atomic():
        withdrawal = lifecycle.withdrawal_lock(withdrawal_id=withdrawal_id)
        if withdrawal.status != WithdrawalStatus.PROCESSING:
            raise InvalidTransition(
                f"Withdrawal {withdrawal.internal_withdrawal_id} is {withdrawal.status}: only "
                "a processing withdrawal can be forced."
            )
        if not lifecycle.payout_may_exist(withdrawal):
            raise InvalidTransition(
                f"Withdrawal {withdrawal.internal_withdrawal_id} has no NowPayments payout: "
                "mark it completed or failed instead."
            )
        try:
            with transaction.atomic():
                override = WithdrawalOverride.objects.create(
                    withdrawal=withdrawal,
                    action=action,
                    reason=reason,
                    transaction_hash=transaction_hash,
                    requested_by=requested_by,
                )
        except IntegrityError:
            raise InvalidTransition(
                f"Withdrawal {withdrawal.internal_withdrawal_id} already has a forced override "
                "waiting for approval."
            ) from None
    logger.warning(
        "forced %s of withdrawal %s requested by user=%s", action, withdrawal_id, requested_by.pk
    )
    return override


def withdrawal_override_approve(*, override_id: int, approver: Any) -> WithdrawalOverride:
    """A second operator approves a pending override: the lifecycle applies it, once.

    An override that can no longer apply (the withdrawal completed or failed meanwhile) is
    marked refused; a refused approver (no permission, or the requester) leaves it pending.
    """
    _check_approver(approver)
    withdrawal_id = WithdrawalOverride.objects.values_list("withdrawal_id", flat=True).get(
        pk=override_id
    )
    with transaction.atomic():
        # Lock order: the withdrawal, then its override (as a request takes them).
        lifecycle.withdrawal_lock(withdrawal_id=withdrawal_id)
        override = WithdrawalOverride.objects.select_for_update().get(pk=override_id)
        _check_decision(override, approver)
        try:
            withdrawal = _apply(override, approver)
        except InvalidTransition as exc:
            _decide(override, approver, DecisionOutcome.REFUSED, notes=exc.message)
            refused = exc.message
        else:
            _decide(override, approver, DecisionOutcome.APPLIED)
            finding_record(
                kind=DriftKind.FORCED_OVERRIDE,
                subject=f"withdrawal:{withdrawal.pk}",
                user_id=withdrawal.user_id,
                expected="NowPayments' word on the payout",
                actual=f"forced {withdrawal.status}",
                detail=(
                    f"Withdrawal {withdrawal.internal_withdrawal_id} was forced "
                    f"{withdrawal.status} without NowPayments confirming its payout (batch "
                    f"{withdrawal.provider_batch_id or '?'}, item "
                    f"{withdrawal.provider_payout_id or '?'}): requested by "
                    f"{override.requested_by} ({override.reason}), approved by {approver}. "
                    "Check the payout at NowPayments: if it is paid after a forced failure, "
                    "the user has been paid twice."
                ),
            )
            refused = ""
    if refused:
        raise InvalidTransition(f"The forced override was refused: {refused}")
    logger.warning(
        "forced %s of withdrawal %s applied, approved by user=%s",
        override.action,
        withdrawal_id,
        approver.pk,
    )
    return override


def withdrawal_override_refuse(
    *, override_id: int, approver: Any, notes: str = ""
) -> WithdrawalOverride:
    """A second operator turns a pending override down; nothing changes on the withdrawal."""
    _check_approver(approver)
    with transaction.atomic():
        override = WithdrawalOverride.objects.select_for_update().get(pk=override_id)
        _check_decision(override, approver)
        _decide(override, approver, DecisionOutcome.REFUSED, notes=notes or "refused")
    return override


def pending_overrides(*, withdrawal_ids: list[uuid.UUID]) -> list[WithdrawalOverride]:
    return list(
        WithdrawalOverride.objects.filter(
            withdrawal_id__in=withdrawal_ids, outcome=DecisionOutcome.PENDING
        )
        .select_related("withdrawal", "requested_by")
        .order_by("requested_at", "pk")
    )


def _check_approver(approver: Any) -> None:
    if not approver.has_perm(OVERRIDE_PERMISSION):
        raise PermissionDenied(f"{approver} may not approve forced withdrawal overrides.")


def _check_decision(override: WithdrawalOverride, approver: Any) -> None:
    if override.outcome != DecisionOutcome.PENDING:
        raise InvalidTransition(
            f"The forced override {override.pk} was already {override.outcome}."
        )
    if override.requested_by_id == approver.pk:
        raise PermissionDenied("Nobody approves or refuses the forced override they requested.")


def _apply(override: WithdrawalOverride, approver: Any) -> WithdrawalRequest:
    reason = f"forced by {override.requested_by} and {approver}: {override.reason}"
    if override.action == OverrideAction.COMPLETE:
        return lifecycle.withdrawal_complete(
            withdrawal_id=override.withdrawal_id,
            transaction_hash=override.transaction_hash,
            admin_user=approver,
            confirmation=lifecycle.Confirmation.OVERRIDE,
        )
    return lifecycle.withdrawal_fail(
        withdrawal_id=override.withdrawal_id,
        reason=reason,
        confirmation=lifecycle.Confirmation.OVERRIDE,
    )


def _decide(override: WithdrawalOverride, approver: Any, outcome: str, *, notes: str = "") -> None:
    override.outcome = outcome
    override.decided_by = approver
    override.decided_at = timezone.now()
    override.decision_notes = notes[:500]
    override.save(update_fields=["outcome", "decided_by", "decided_at", "decision_notes"])
