"""Moves we make ourselves, and the seed's ORM save: the same status machine as a report."""

from __future__ import annotations

import logging
import uuid
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from payments.errors import InvalidTransition
from payments.models import Payment
from payments.models.payment import FROZEN_FIELDS, PaymentStatus, can_move
from payments.services.deposits.policy import Verdict, judge_received
from payments.services.deposits.progress import consequences
from payments.services.deposits.statuses import to_our_status

logger = logging.getLogger(__name__)


def payment_move(
    *,
    payment_id: uuid.UUID,
    status: str,
    reason: str = "",
    credit_usd: Decimal | None = None,
) -> Payment:
    """Move a payment to ``status`` by our own decision (expiry, a refused registration, the
    partial-payment policy).

    The same machine as a provider report: forward only; reaching completed settles it (for
    ``credit_usd``, or the price), reaching review puts it before an operator with ``reason``.
    """
    with transaction.atomic():
        payment = Payment._base_manager.select_for_update().get(pk=payment_id)
        _move_locked(payment, status, timezone.now())
        if status == PaymentStatus.REVIEW:
            payment.review_reason = reason[:300]
        elif reason:
            payment.provider_error = reason[:500]
        if credit_usd is not None:
            payment.credited_usd = credit_usd
        _write(payment, [*_MOVE_FIELDS, "provider_error", "review_reason", "credited_usd"])
        verdict = Verdict(status, credit_usd=credit_usd, review_reason=payment.review_reason)
        consequences([(payment, verdict)])
    return payment


def payment_save_instance(payment: Payment, *, previous_status: str | None) -> Payment:
    """Save a payment changed through the ORM (the seed's status update and provider snippet).

    A NowPayments status name is mapped onto ours; the move is checked by the same machine as
    every other; what is fixed at creation stays fixed; a completion is settled at once, in the
    same database transaction.
    """
    new_status = to_our_status(payment.status)
    with transaction.atomic():
        stored = Payment._base_manager.select_for_update().get(pk=payment.pk)
        for name in FROZEN_FIELDS:
            if getattr(stored, name) != getattr(payment, name):
                raise InvalidTransition(
                    f"{name} of payment {stored.internal_payment_id} cannot change after it "
                    "is created."
                )
        if previous_status is not None and stored.status != previous_status:
            raise InvalidTransition(
                f"Payment {stored.internal_payment_id} was moved to {stored.status} by someone "
                "else; reload it and try again."
            )
        _keep_provider_facts(payment, stored)
        verdict = None
        if new_status == PaymentStatus.COMPLETED and stored.status != PaymentStatus.COMPLETED:
            verdict = _judge_orm_completion(stored, payment)
            new_status = verdict.status
        moved_at = payment.completed_at
        payment.status = stored.status
        _move_locked(payment, new_status, timezone.now())
        if verdict is not None:
            payment.credited_usd = verdict.credit_usd
            if verdict.review_reason:
                payment.review_reason = verdict.review_reason[:300]
        if moved_at is not None and new_status == PaymentStatus.COMPLETED:
            payment.completed_at = moved_at  # the seed sets completed_at itself
        _write(payment, _EDITABLE_FIELDS)
        into_review = new_status == PaymentStatus.REVIEW and stored.status != new_status
        if verdict is None and into_review:
            # Put into review through the ORM: before an operator (and the host told), as
            # every other way into review.
            verdict = Verdict(PaymentStatus.REVIEW, review_reason=payment.review_reason)
        consequences([(payment, verdict)])
    return payment


def _judge_orm_completion(stored: Payment, payment: Payment) -> Verdict:
    """What completing a payment through the ORM credits.

    With an amount received (the seed's provider snippet copies ``actually_paid``), the deposit
    policy decides, as for a report; without one (the seed's "update status manually"), the
    price is credited, as by hand. A payment in review is decided only by review decisions.
    """
    if stored.status == PaymentStatus.REVIEW:
        raise InvalidTransition(
            f"Payment {stored.internal_payment_id} is in review: it is credited only by an "
            "operator's review decision (payments.services.deposits.payment_review_request)."
        )
    if payment.actual_amount is None:
        return Verdict(PaymentStatus.COMPLETED, credit_usd=payment.amount_usd)
    return judge_received(stored, paid=payment.actual_amount, asked=stored.pay_amount)


def _move_locked(payment: Payment, new_status: str, now: Any) -> None:
    old = payment.status
    if new_status == old:
        return
    if not can_move(old, new_status):
        raise InvalidTransition(
            f"Payment {payment.internal_payment_id} cannot move from {old} to {new_status}."
        )
    payment.status = new_status
    payment.status_changed_at = now
    payment.updated_at = now
    if new_status == PaymentStatus.COMPLETED and payment.completed_at is None:
        payment.completed_at = now
    logger.info("payment id=%s %s -> %s", payment.pk, old, new_status)


_MOVE_FIELDS = ["status", "status_changed_at", "completed_at", "updated_at"]
# What an ORM save may write: everything but the key and what is fixed at creation.
_EDITABLE_FIELDS = [
    f.attname
    for f in Payment._meta.concrete_fields
    if not f.primary_key and f.attname not in FROZEN_FIELDS and f.attname != "created_at"
]


# What NowPayments told us (registration, progress): a copy of the payment loaded before it
# arrived must not blank it when it is saved; a value the caller sets is kept.
_PROVIDER_FACTS = (
    "provider_payment_id",
    "pay_address",
    "pay_extra_id",
    "pay_amount",
    "expires_at",
    "transaction_hash",
    "actual_amount",
    "actual_amount_usd",
    "provider_data",
    "provider_checked_at",
    "provider_requested_at",
)


def _keep_provider_facts(payment: Payment, stored: Payment) -> None:
    for name in _PROVIDER_FACTS:
        if getattr(payment, name) in (None, "", {}) and getattr(stored, name) not in (None, "", {}):
            setattr(payment, name, getattr(stored, name))


def _write(payment: Payment, fields: list[str]) -> None:
    Payment._base_manager.filter(pk=payment.pk).update(
        **{name: getattr(payment, name) for name in fields}
    )
