"""Withdrawal requests: the hold on creation, the review, the payout steps and the refund."""

from __future__ import annotations

import logging
import re
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from payments import ledger
from payments.errors import (
    CurrencyUnavailable,
    DebtOutstanding,
    FeesExceedAmount,
    InvalidAddress,
    InvalidAmount,
    InvalidTransition,
    PermissionDenied,
)
from payments.models import Currency, Receivable, WithdrawalRequest
from payments.models.common import generate_public_id
from payments.models.transaction import TransactionType
from payments.models.withdrawal import (
    REFUNDED_STATUSES,
    WITHDRAWAL_TRANSITIONS,
    WithdrawalStatus,
)
from payments.money import is_cents
from payments.services import backoff
from payments.services.deposits.reverse import collect_locked
from payments.services.host_webhooks import webhook_withdrawal_record
from payments.services.withdrawals.fees import (
    withdrawal_extra_id_check,
    withdrawal_fees,
    withdrawal_minimum_check,
)

logger = logging.getLogger(__name__)

APPROVE_PERMISSION = "payments.approve_withdrawalrequest"


class Confirmation(StrEnum):
    """Whose word completes or fails a withdrawal (DESIGN.md §3, "pay out what the provider
    confirms")."""

    OPERATOR = "operator"  # an operator's (or the ORM's): enough only where no payout exists
    PROVIDER = "provider"  # NowPayments reports the payout finished, failed or refused
    OVERRIDE = "override"  # a forced override, approved by a second operator


# Fields fixed at creation: changing them later would pay someone else, or another amount.
_FROZEN_FIELDS = (
    "user_id",
    "amount_usd",
    "currency_id",
    "wallet_address",
    "wallet_extra_id",
    "network_fee_usd",
    "service_fee_usd",
)
# What a rejection without a reason tells the user (the seed's ORM path gives none).
DEFAULT_REJECTION_REASON = "Rejected by an operator."
REJECTION_REASON_MAX_LENGTH = WithdrawalRequest._meta.get_field("rejection_reason").max_length or 0
_STATUS_TIMESTAMPS = {
    WithdrawalStatus.APPROVED: "approved_at",
    WithdrawalStatus.PROCESSING: "processing_at",
    WithdrawalStatus.COMPLETED: "completed_at",
    WithdrawalStatus.REJECTED: "rejected_at",
    WithdrawalStatus.CANCELLED: "cancelled_at",
    WithdrawalStatus.FAILED: "failed_at",
}


def withdrawal_create(
    *,
    user_id: int,
    amount_usd: Decimal,
    currency_id: int,
    wallet_address: str,
    network_fee_usd: Decimal | None = None,
    service_fee_usd: Decimal | None = None,
    wallet_extra_id: str = "",
) -> WithdrawalRequest:
    """Create a pending request and hold its amount with a WITHDRAWAL posting.

    Given neither fee, it pays the currency's quoted fees (``fees.withdrawal_fees``); given
    one, the other is 0.00. The payout minimum and the memo rule apply either way.
    """
    if network_fee_usd is None and service_fee_usd is None:
        quoted = withdrawal_fees(
            currency=Currency.objects.filter(pk=currency_id).first(), amount_usd=amount_usd
        )
        network_fee_usd, service_fee_usd = quoted.network_fee_usd, quoted.service_fee_usd
    network_fee_usd = Decimal("0.00") if network_fee_usd is None else network_fee_usd
    service_fee_usd = Decimal("0.00") if service_fee_usd is None else service_fee_usd
    withdrawal = WithdrawalRequest(
        user_id=user_id,
        amount_usd=amount_usd,
        currency_id=currency_id,
        wallet_address=wallet_address,
        wallet_extra_id=wallet_extra_id,
        network_fee_usd=network_fee_usd,
        service_fee_usd=service_fee_usd,
    )
    return withdrawal_create_from_instance(withdrawal)


def withdrawal_create_from_instance(withdrawal: WithdrawalRequest) -> WithdrawalRequest:
    """Save a new request built through the ORM, with the hold in the same transaction."""
    _validate_new(withdrawal)
    withdrawal.status = WithdrawalStatus.PENDING
    if not withdrawal.internal_withdrawal_id:
        withdrawal.internal_withdrawal_id = generate_public_id("WD")
    with transaction.atomic():
        WithdrawalRequest._base_manager.bulk_create([withdrawal])
        withdrawal._state.adding = False
        withdrawal._loaded_status = withdrawal.status
        ledger.post(
            user_id=withdrawal.user_id,
            kind=TransactionType.WITHDRAWAL,
            amount_usd=-withdrawal.amount_usd,
            idempotency_key=f"withdrawal:{withdrawal.pk}:debit",
            description=f"Withdrawal {withdrawal.internal_withdrawal_id} requested",
            withdrawal_request_id=withdrawal.pk,
        )
    logger.info("withdrawal created id=%s user=%s", withdrawal.pk, withdrawal.user_id)
    return withdrawal


def withdrawal_approve(
    *, withdrawal_id: uuid.UUID, admin_user: Any, notes: str = ""
) -> WithdrawalRequest:
    """Approve a pending request; ``notes``, if any, are appended to its notes."""
    return _transition(withdrawal_id, WithdrawalStatus.APPROVED, note=notes, admin_user=admin_user)


def withdrawal_reject(
    *, withdrawal_id: uuid.UUID, admin_user: Any, notes: str = ""
) -> WithdrawalRequest:
    """Reject a pending or approved request (the hold is refunded).

    ``notes`` is the reason: stored (whitespace collapsed) as ``rejection_reason``, what the user
    is shown, and appended to the notes; without one the neutral ``DEFAULT_REJECTION_REASON`` is
    stored and no note is added.
    """
    reason = " ".join((notes or "").split())
    if len(reason) > REJECTION_REASON_MAX_LENGTH:
        raise InvalidTransition(
            f"A rejection reason is at most {REJECTION_REASON_MAX_LENGTH} characters "
            f"(this one has {len(reason)})."
        )
    return _transition(
        withdrawal_id,
        WithdrawalStatus.REJECTED,
        note=reason,
        admin_user=admin_user,
        rejection_reason=reason,
    )


def withdrawal_add_note(*, withdrawal_id: uuid.UUID, author: Any, text: str) -> WithdrawalRequest:
    """Append ``YYYY-MM-DD HH:MM UTC <username>: <text>`` to the request's notes (never edits or
    removes what is there); in any status."""
    if not " ".join((text or "").split()):
        raise InvalidTransition("A note needs some text.")
    with transaction.atomic():
        withdrawal = WithdrawalRequest.objects.select_for_update().get(pk=withdrawal_id)
        _append_note(withdrawal, author, text)
        withdrawal.updated_at = timezone.now()
        _write(withdrawal, ["admin_notes", "updated_at"])
    logger.info("withdrawal id=%s note added by user=%s", withdrawal.pk, author.pk)
    return withdrawal


def _append_note(withdrawal: WithdrawalRequest, author: Any, text: str) -> None:
    """Add one line to the notes: the text's whitespace (newlines included) collapsed, so each
    line is one note."""
    text = " ".join((text or "").split())
    if not text:
        return
    stamp = timezone.now().astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    name = author.get_username() if author is not None else "system"
    line = f"{stamp} {name}: {text}"
    notes = withdrawal.admin_notes.rstrip("\n")
    withdrawal.admin_notes = f"{notes}\n{line}" if notes else line


def withdrawal_cancel(*, withdrawal_id: uuid.UUID, user: Any) -> WithdrawalRequest:
    """The requester withdraws their own pending request; the hold is refunded."""
    with transaction.atomic():
        withdrawal = WithdrawalRequest.objects.select_for_update().get(pk=withdrawal_id)
        if withdrawal.user_id != user.pk:
            raise PermissionDenied("Only the user who made a withdrawal request can cancel it.")
        previous = withdrawal.status
        if previous == WithdrawalStatus.CANCELLED:
            raise InvalidTransition(
                f"Withdrawal {withdrawal.internal_withdrawal_id} is already cancelled."
            )
        withdrawal.status = WithdrawalStatus.CANCELLED
        _apply(withdrawal, previous=previous)
        return withdrawal


def withdrawal_start_processing(*, withdrawal_id: uuid.UUID, claim: str = "") -> WithdrawalRequest:
    """approved -> processing. ``claim``, a token the caller made up, is kept in
    ``provider_data["claim"]`` so that a caller whose commit got no answer can tell on a fresh
    connection whether the claim is its own (``payouts.withdrawal_payout_send``). A claimed
    withdrawal is marked unsent until ``withdrawal_mark_sending``."""
    return _transition(withdrawal_id, WithdrawalStatus.PROCESSING, claim=claim)


def withdrawal_complete(
    *,
    withdrawal_id: uuid.UUID,
    transaction_hash: str,
    admin_user: Any = None,
    confirmation: Confirmation = Confirmation.OPERATOR,
) -> WithdrawalRequest:
    changes: dict[str, Any] = {"transaction_hash": transaction_hash.strip()}
    if admin_user is not None:
        changes["admin_user"] = admin_user
    return _transition(
        withdrawal_id, WithdrawalStatus.COMPLETED, confirmation=confirmation, **changes
    )


def withdrawal_fail(
    *, withdrawal_id: uuid.UUID, reason: str, confirmation: Confirmation = Confirmation.OPERATOR
) -> WithdrawalRequest:
    return _transition(
        withdrawal_id,
        WithdrawalStatus.FAILED,
        confirmation=confirmation,
        failure_reason=reason[:500],
    )


def withdrawal_lock(*, withdrawal_id: uuid.UUID) -> WithdrawalRequest:
    """Lock a request's row until the caller's transaction ends (for a service deciding on it,
    e.g. a forced override); the lifecycle's own steps take the same lock."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("withdrawal_lock() holds its lock only inside a transaction.")
    return WithdrawalRequest.objects.select_for_update().get(pk=withdrawal_id)


def payout_may_exist(withdrawal: WithdrawalRequest, *, status: str | None = None) -> bool:
    """True when NowPayments may hold a payout of this withdrawal: its ids are known, or
    payouts are on and it is processing (the creation may have gone unanswered) with its
    payout call no longer unsent. (A claim still unsent cannot have gone out; its holder's
    ``withdrawal_mark_sending`` fails once the withdrawal has left processing.)"""
    if withdrawal.provider_batch_id or withdrawal.provider_payout_id:
        return True
    if is_unsent(withdrawal):
        return False
    processing = (status or withdrawal.status) == WithdrawalStatus.PROCESSING
    return processing and bool(getattr(settings, "PAYMENTS_PAYOUTS_ENABLED", False))


def withdrawal_save_instance(
    withdrawal: WithdrawalRequest, *, previous_status: str | None
) -> WithdrawalRequest:
    """Save an existing request changed through the ORM, applying the same rules."""
    with transaction.atomic():
        stored = WithdrawalRequest.objects.select_for_update().get(pk=withdrawal.pk)
        # The payout's provider fields (and its failure count) are the payout steps' to write,
        # never a stale copy's.
        for name in (*_PROVIDER_FIELDS, *_ATTEMPT_FIELDS):
            setattr(withdrawal, name, getattr(stored, name))
        if previous_status is not None and stored.status != previous_status:
            raise InvalidTransition(
                f"Withdrawal {stored.internal_withdrawal_id} was moved to {stored.status} "
                "by someone else; reload it and try again."
            )
        for name in _FROZEN_FIELDS:
            if getattr(stored, name) != getattr(withdrawal, name):
                raise InvalidTransition(
                    f"{name} of withdrawal {stored.internal_withdrawal_id} cannot change "
                    "after it is requested."
                )
        withdrawal.admin_notes = _appended_notes(stored, withdrawal.admin_notes)
        _apply(withdrawal, previous=stored.status)
    return withdrawal


def _appended_notes(stored: WithdrawalRequest, notes: str) -> str:
    """The notes an ORM save may write: the stored ones, or them with more added at the end.

    A copy loaded before a note was added (its notes a prefix of the stored ones) keeps the
    stored notes; anything else would edit or remove a note, and is refused.
    """
    notes = notes or ""
    if notes.startswith(stored.admin_notes):
        return notes
    if stored.admin_notes.startswith(notes):
        return stored.admin_notes
    raise InvalidTransition(
        f"The notes of withdrawal {stored.internal_withdrawal_id} are only ever added to: "
        "reload it and add a note."
    )


def _transition(
    withdrawal_id: uuid.UUID,
    new_status: str,
    *,
    confirmation: Confirmation = Confirmation.OPERATOR,
    note: str = "",
    claim: str = "",
    **changes: Any,
) -> WithdrawalRequest:
    with transaction.atomic():
        withdrawal = WithdrawalRequest.objects.select_for_update().get(pk=withdrawal_id)
        previous = withdrawal.status
        if previous == new_status:
            raise InvalidTransition(
                f"Withdrawal {withdrawal.internal_withdrawal_id} is already {new_status}."
            )
        for name, value in changes.items():
            setattr(withdrawal, name, value)
        if claim:
            withdrawal.provider_data = _claimed(withdrawal.provider_data, claim)
        if note:
            _append_note(withdrawal, withdrawal.admin_user, note)
        withdrawal.status = new_status
        _apply(withdrawal, previous=previous, confirmation=confirmation)
        return withdrawal


def _apply(
    withdrawal: WithdrawalRequest,
    *,
    previous: str,
    confirmation: Confirmation = Confirmation.OPERATOR,
) -> None:
    """Check and save a status change (or a plain edit); refund the hold on a final failure."""
    new = withdrawal.status
    if new != previous:
        if new not in WITHDRAWAL_TRANSITIONS[WithdrawalStatus(previous)]:
            raise InvalidTransition(
                f"Withdrawal {withdrawal.internal_withdrawal_id} cannot move from "
                f"{previous} to {new}."
            )
        if new in (WithdrawalStatus.APPROVED, WithdrawalStatus.REJECTED):
            _check_reviewer(withdrawal)
        if new == WithdrawalStatus.REJECTED and not withdrawal.rejection_reason.strip():
            withdrawal.rejection_reason = DEFAULT_REJECTION_REASON
        if _pays_out(previous, new, confirmation):
            _check_no_debt(withdrawal.user_id)
        if new in _PAYOUT_OUTCOMES and confirmation == Confirmation.OPERATOR:
            _check_no_payout(withdrawal, previous=previous, new=new)
        if new == WithdrawalStatus.COMPLETED and not withdrawal.transaction_hash.strip():
            raise InvalidTransition("A completed withdrawal needs its blockchain transaction hash.")
        stamp = _STATUS_TIMESTAMPS[WithdrawalStatus(new)]
        if getattr(withdrawal, stamp) is None:
            setattr(withdrawal, stamp, timezone.now())
    withdrawal.updated_at = timezone.now()
    _write(withdrawal, _EDITABLE_FIELDS)
    withdrawal._loaded_status = new
    if new != previous and new in REFUNDED_STATUSES:
        ledger.post(
            user_id=withdrawal.user_id,
            kind=TransactionType.REFUND,
            amount_usd=withdrawal.amount_usd,
            idempotency_key=f"withdrawal:{withdrawal.pk}:refund",
            description=f"Withdrawal {withdrawal.internal_withdrawal_id} {new}: hold returned",
            withdrawal_request_id=withdrawal.pk,
        )
        # Money back on the balance pays what a refunded deposit left owed first.
        collect_locked([withdrawal.user_id])
    if new != previous:
        # approved, completed, failed, rejected: the host hears of it from the outbox.
        webhook_withdrawal_record(withdrawal_id=withdrawal.pk, status=new)
        logger.info("withdrawal id=%s %s -> %s", withdrawal.pk, previous, new)


def _pays_out(previous: str, new: str, confirmation: Confirmation) -> bool:
    """Whether this move lets money leave: an approval, a payout starting, or a completion
    that is not the provider confirming a payout already sent."""
    if new in (WithdrawalStatus.APPROVED, WithdrawalStatus.PROCESSING):
        return True
    return new == WithdrawalStatus.COMPLETED and (
        previous == WithdrawalStatus.APPROVED or confirmation == Confirmation.OPERATOR
    )


def _check_no_debt(user_id: int) -> None:
    if Receivable.objects.filter(user_id=user_id, settled_at__isnull=True).exists():
        raise DebtOutstanding(
            "A refunded deposit left an amount owed on this account; no money leaves it until "
            "that is paid back."
        )


_PAYOUT_OUTCOMES = frozenset({WithdrawalStatus.COMPLETED, WithdrawalStatus.FAILED})


def _check_no_payout(withdrawal: WithdrawalRequest, *, previous: str, new: str) -> None:
    if payout_may_exist(withdrawal, status=previous):
        raise InvalidTransition(
            f"Withdrawal {withdrawal.internal_withdrawal_id} has a NowPayments payout: it "
            f"becomes {new} only when NowPayments reports it, or by a forced override that a "
            "second operator approves."
        )


def _check_reviewer(withdrawal: WithdrawalRequest) -> None:
    reviewer = withdrawal.admin_user
    if reviewer is None:
        raise PermissionDenied(
            "Approving or rejecting a withdrawal needs the reviewing admin user."
        )
    if not reviewer.has_perm(APPROVE_PERMISSION):
        raise PermissionDenied(f"{reviewer} may not approve or reject withdrawals.")
    if reviewer.pk == withdrawal.user_id:
        raise PermissionDenied("Nobody may approve or reject their own withdrawal request.")


def _validate_new(withdrawal: WithdrawalRequest) -> None:
    _check_no_debt(withdrawal.user_id)
    for name in ("amount_usd", "network_fee_usd", "service_fee_usd"):
        value = getattr(withdrawal, name)
        if not isinstance(value, Decimal) or not is_cents(value) or value < 0:
            raise InvalidAmount(f"{name} must be a non-negative Decimal amount in whole cents.")
    if withdrawal.amount_usd <= withdrawal.total_fee_usd:
        raise FeesExceedAmount(
            f"The amount {withdrawal.amount_usd} USD does not cover the fees "
            f"{withdrawal.total_fee_usd} USD."
        )
    currency = Currency.objects.filter(pk=withdrawal.currency_id).first()
    if currency is None or not currency.is_active:
        raise CurrencyUnavailable("This currency is not available for withdrawals.")
    withdrawal_minimum_check(
        currency=currency,
        amount_usd=withdrawal.amount_usd,
        network_fee_usd=withdrawal.network_fee_usd,
        service_fee_usd=withdrawal.service_fee_usd,
    )
    address = (withdrawal.wallet_address or "").strip()
    if not address:
        raise InvalidAddress("A withdrawal needs a destination wallet address.")
    if currency.address_regex and not re.fullmatch(currency.address_regex, address):
        raise InvalidAddress(f"{address[:12]}… is not a valid {currency.display_name} address.")
    withdrawal.wallet_address = address
    withdrawal.wallet_extra_id = withdrawal_extra_id_check(
        currency=currency, wallet_extra_id=withdrawal.wallet_extra_id
    )


# Written only by the payout steps below (and kept as stored when the ORM saves a request).
_PROVIDER_FIELDS = ("provider_batch_id", "provider_payout_id", "provider_data")

# What a save may write: everything but the key and the terms fixed at creation.
_EDITABLE_FIELDS = [
    f.attname
    for f in WithdrawalRequest._meta.concrete_fields
    if not f.primary_key
    and f.attname not in (*_FROZEN_FIELDS, "internal_withdrawal_id", "created_at")
]


def _write(withdrawal: WithdrawalRequest, fields: list[str]) -> None:
    WithdrawalRequest._base_manager.filter(pk=withdrawal.pk).update(
        **{name: getattr(withdrawal, name) for name in fields}
    )


# --- the payout's provider fields (written for payouts.py, which never writes rows itself) --


def withdrawal_record_payout(
    *, withdrawal_id: uuid.UUID, batch_id: str, payout_id: str, data: dict[str, Any]
) -> None:
    """Remember which NowPayments payout pays this withdrawal (batch id and item id), and
    what it said; what was noted before (a failure sighting) is kept."""
    with transaction.atomic():
        withdrawal = WithdrawalRequest.objects.select_for_update().get(pk=withdrawal_id)
        withdrawal.provider_batch_id = batch_id or withdrawal.provider_batch_id
        withdrawal.provider_payout_id = payout_id or withdrawal.provider_payout_id
        withdrawal.provider_data = {**(withdrawal.provider_data or {}), **data}
        withdrawal.updated_at = timezone.now()
        _write(withdrawal, [*_PROVIDER_FIELDS, "updated_at"])


# In ``provider_data`` from the claim until the payout call is about to go out: while it is
# there, NowPayments cannot have this withdrawal's payout.
UNSENT = "unsent"


def _claimed(data: dict[str, Any] | None, claim: str) -> dict[str, Any]:
    return {
        **(data or {}),
        "claim": claim,
        "claimed_at": timezone.now().isoformat(),
        UNSENT: True,
    }


def is_unsent(withdrawal: WithdrawalRequest) -> bool:
    """Claimed for its payout, which was never sent (no call to NowPayments went out)."""
    return bool((withdrawal.provider_data or {}).get(UNSENT)) and not (
        withdrawal.provider_batch_id or withdrawal.provider_payout_id
    )


def withdrawal_reclaim_unsent(
    *, withdrawal_id: uuid.UUID, claim: str, claimed_before: datetime
) -> WithdrawalRequest | None:
    """Take over a processing withdrawal whose claim is older than ``claimed_before`` and whose
    payout was never sent: its token becomes ``claim``. None if it is not such a one (any
    more). The earlier claimer, if it still runs, then fails ``withdrawal_mark_sending``."""
    with transaction.atomic():
        withdrawal = WithdrawalRequest.objects.select_for_update().get(pk=withdrawal_id)
        data = withdrawal.provider_data or {}
        claimed_at = data.get("claimed_at")
        if withdrawal.status != WithdrawalStatus.PROCESSING or not is_unsent(withdrawal):
            return None
        if claimed_at and datetime.fromisoformat(claimed_at) > claimed_before:
            return None
        withdrawal.provider_data = _claimed(data, claim)
        withdrawal.updated_at = timezone.now()
        _write(withdrawal, ["provider_data", "updated_at"])
    logger.warning("withdrawal %s: its claim was never sent; claimed again", withdrawal_id)
    return withdrawal


def withdrawal_mark_sending(*, withdrawal_id: uuid.UUID, claim: str) -> WithdrawalRequest | None:
    """The holder of ``claim`` is about to call NowPayments: from now on the payout may exist,
    so it is never sent again, only looked up. None if the claim is not (or no longer) the
    caller's: someone else sends it."""
    with transaction.atomic():
        withdrawal = WithdrawalRequest.objects.select_for_update().get(pk=withdrawal_id)
        data = dict(withdrawal.provider_data or {})
        mine = data.get("claim") == claim and withdrawal.status == WithdrawalStatus.PROCESSING
        if not mine or not is_unsent(withdrawal):
            return None
        data.pop(UNSENT)
        data["sending_at"] = timezone.now().isoformat()
        withdrawal.provider_data = data
        withdrawal.updated_at = timezone.now()
        _write(withdrawal, ["provider_data", "updated_at"])
    return withdrawal


def withdrawal_unmark_sending(*, withdrawal_id: uuid.UUID, claim: str) -> bool:
    """NowPayments provably did nothing for the payout call the holder of ``claim`` made (the
    login it needed failed, or it refused ours): the payout is unsent again, so the sweep sends
    it (``payouts.unsent_withdrawal_ids``). False if the claim is not (or no longer) the
    caller's, or the payout has provider ids: then it stays as it is."""
    with transaction.atomic():
        withdrawal = WithdrawalRequest.objects.select_for_update().get(pk=withdrawal_id)
        data = dict(withdrawal.provider_data or {})
        mine = data.get("claim") == claim and withdrawal.status == WithdrawalStatus.PROCESSING
        if (
            not mine
            or UNSENT in data
            or withdrawal.provider_batch_id
            or withdrawal.provider_payout_id
        ):
            return False
        data.pop("sending_at", None)
        data[UNSENT] = True
        withdrawal.provider_data = data
        withdrawal.updated_at = timezone.now()
        _write(withdrawal, ["provider_data", "updated_at"])
    logger.warning(
        "withdrawal %s: NowPayments did nothing for its payout call; unsent", withdrawal_id
    )
    return True


def withdrawal_note_payout_failure(
    *, withdrawal_id: uuid.UUID, status: str, error: str
) -> tuple[datetime, bool] | None:
    """Record when the payout was first seen failed; (that moment, whether it is now).

    None if the withdrawal is no longer processing. The first sighting refunds nothing: the
    payout poller fails the withdrawal only on a later look, after the settling time.
    """
    with transaction.atomic():
        withdrawal = WithdrawalRequest.objects.select_for_update().get(pk=withdrawal_id)
        if withdrawal.status != WithdrawalStatus.PROCESSING:
            return None
        data = dict(withdrawal.provider_data or {})
        seen = data.get("failed_seen_at")
        if seen:
            return datetime.fromisoformat(seen), False
        now = timezone.now()
        data.update(failed_seen_at=now.isoformat(), failed_status=status, failed_error=error)
        withdrawal.provider_data = data
        withdrawal.updated_at = now
        _write(withdrawal, ["provider_data", "updated_at"])
    logger.info("payout of withdrawal %s first seen %s", withdrawal_id, status)
    return now, True


def withdrawal_forget_payout_failure(*, withdrawal_id: uuid.UUID) -> None:
    """The payout is no longer reported failed: a later failure starts a new settling time."""
    with transaction.atomic():
        withdrawal = WithdrawalRequest.objects.select_for_update().get(pk=withdrawal_id)
        data = dict(withdrawal.provider_data or {})
        if "failed_seen_at" not in data:
            return
        for key in ("failed_seen_at", "failed_status", "failed_error"):
            data.pop(key, None)
        withdrawal.provider_data = data
        withdrawal.updated_at = timezone.now()
        _write(withdrawal, ["provider_data", "updated_at"])


def withdrawal_note_payout_problem(*, withdrawal_id: uuid.UUID, message: str) -> None:
    """Record the latest payout problem on the request (it changes no status)."""
    WithdrawalRequest._base_manager.filter(pk=withdrawal_id).update(
        failure_reason=message[:500], updated_at=timezone.now()
    )


def withdrawal_note_payout_attempt(*, withdrawal_id: uuid.UUID, error: str) -> int:
    """Count one more failed call to NowPayments for this payout and back it off on its own
    row (``payments.services.backoff``): the sweeps skip it until ``payout_retry_at`` and go on
    with the others. Returns the consecutive failures so far."""
    now = timezone.now()
    with transaction.atomic():
        withdrawal = WithdrawalRequest.objects.select_for_update().get(pk=withdrawal_id)
        withdrawal.payout_attempts += 1
        withdrawal.payout_retry_at = backoff.retry_at(withdrawal.payout_attempts, now=now)
        withdrawal.payout_last_error = error[: backoff.ERROR_MAX_LENGTH]
        withdrawal.updated_at = now
        _write(withdrawal, [*_ATTEMPT_FIELDS, "updated_at"])
    logger.warning(
        "payout of withdrawal %s failed %s time(s) in a row; next try after %s: %s",
        withdrawal_id,
        withdrawal.payout_attempts,
        withdrawal.payout_retry_at,
        error,
    )
    return withdrawal.payout_attempts


def withdrawal_clear_payout_attempts(*, withdrawal_id: uuid.UUID) -> None:
    """A call for this payout worked: forget its failures (no write when there were none)."""
    cleared = WithdrawalRequest._base_manager.filter(pk=withdrawal_id, payout_attempts__gt=0)
    if cleared.update(payout_attempts=0, payout_retry_at=None, payout_last_error=""):
        logger.info("payout of withdrawal %s answered again", withdrawal_id)


_ATTEMPT_FIELDS = ["payout_attempts", "payout_retry_at", "payout_last_error"]
