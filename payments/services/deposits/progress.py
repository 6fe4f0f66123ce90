"""The Payment status machine: apply what NowPayments reports, forward only, settling once."""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.utils import timezone

from payments.bulk import update_rows
from payments.errors import InvalidTransition
from payments.models import Payment, Transaction
from payments.models.event import EventOutcome
from payments.models.ops import DriftKind
from payments.models.payment import FROZEN_FIELDS, PaymentStatus, can_move
from payments.money import CENT
from payments.services.deposits.settle import settle_locked
from payments.services.deposits.statuses import our_status, to_our_status
from payments.services.findings import finding_record
from payments.services.providers.nowpayments.types import ProviderPayment

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ApplyResult:
    outcome: str
    payment_id: uuid.UUID | None = None
    status: str | None = None
    deposit: Transaction | None = None


def payment_apply_report(*, report: ProviderPayment, source: str) -> ApplyResult:
    """Apply what NowPayments says of a payment (from a poll or an IPN).

    The status only moves forward; a stale or repeated report changes nothing. Reaching
    completed posts the deposit in the same database transaction, exactly once.
    """
    new_status = our_status(report.payment_status)
    with transaction.atomic():
        try:
            payment = Payment.objects.select_for_update().get(provider_payment_id=report.payment_id)
        except Payment.DoesNotExist:
            return _unknown_payment(report)
        old_status = payment.status
        outcome = _merge_report(payment, report, new_status, timezone.now())
        _write_progress([payment])
        deposits = settle_locked([payment])
    deposit = deposits[0] if deposits else None
    if outcome == EventOutcome.APPLIED:
        logger.info("payment id=%s %s -> %s via %s", payment.pk, old_status, payment.status, source)
    return ApplyResult(
        outcome=outcome, payment_id=payment.pk, status=payment.status, deposit=deposit
    )


def payments_apply_reports(*, reports: list[ProviderPayment], source: str) -> dict[str, int]:
    """Apply many reports in one database transaction (the poller's path, a page at a time).

    The same rules as ``payment_apply_report``: forward only, and completed payments get their
    deposit in the same transaction, through one ``ledger.post_many``.
    """
    counts = {"applied": 0, "stale": 0, "unchanged": 0, "credited": 0}
    by_id = {report.payment_id: report for report in reports}
    if not by_id:
        return counts
    now = timezone.now()
    with transaction.atomic():
        payments = list(
            Payment.objects.select_for_update()
            .filter(provider_payment_id__in=list(by_id))
            .order_by("pk")
        )
        for payment in payments:
            report = by_id[payment.provider_payment_id or ""]
            counts[_merge_report(payment, report, our_status(report.payment_status), now)] += 1
        _write_progress(payments)
        counts["credited"] = len(settle_locked(payments, only_new=True))
    if counts["applied"]:
        logger.info("%s: applied %s report(s) in one batch", source, counts["applied"])
    return counts


def payment_move(*, payment_id: uuid.UUID, status: str, reason: str = "") -> Payment:
    """Move a payment to ``status`` by our own decision (expiry, a refused registration).

    The same machine as a provider report: forward only; reaching completed settles it.
    """
    with transaction.atomic():
        payment = Payment._base_manager.select_for_update().get(pk=payment_id)
        _move_locked(payment, status, timezone.now())
        if reason:
            payment.provider_error = reason[:500]
        _write(payment, [*_MOVE_FIELDS, "provider_error"])
        settle_locked([payment])
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
        if previous_status is not None and stored.status not in (previous_status, new_status):
            raise InvalidTransition(
                f"Payment {stored.internal_payment_id} was moved to {stored.status} by someone "
                "else; reload it and try again."
            )
        moved_at = payment.completed_at
        payment.status = stored.status
        _move_locked(payment, new_status, timezone.now())
        if moved_at is not None:
            payment.completed_at = moved_at  # the seed sets completed_at itself
        _write(payment, _EDITABLE_FIELDS)
        settle_locked([payment])
    return payment


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


def _write(payment: Payment, fields: list[str]) -> None:
    Payment._base_manager.filter(pk=payment.pk).update(
        **{name: getattr(payment, name) for name in fields}
    )


# The columns a provider report may change.
_PROGRESS_FIELDS = [
    "status",
    "status_changed_at",
    "completed_at",
    "actual_amount",
    "actual_amount_usd",
    "transaction_hash",
    "pay_address",
    "pay_amount",
    "provider_data",
    "provider_checked_at",
    "updated_at",
]


def _merge_report(payment: Payment, report: ProviderPayment, new_status: str, now: Any) -> str:
    """Merge a report into the payment in memory; return the outcome (applied/stale/unchanged)."""
    payment.provider_checked_at = now
    payment.updated_at = now
    old_status = payment.status
    if new_status == old_status:
        outcome = EventOutcome.UNCHANGED
    elif can_move(old_status, new_status):
        outcome = EventOutcome.APPLIED
        payment.status = new_status
        payment.status_changed_at = now
        if new_status == PaymentStatus.COMPLETED and payment.completed_at is None:
            payment.completed_at = now
    else:
        return EventOutcome.STALE
    _copy_progress(payment, report)
    return outcome


def _write_progress(payments: list[Payment]) -> None:
    """Write the progress columns of many payments in one statement (PostgreSQL)."""
    if not payments:
        return
    if connection.vendor != "postgresql":
        for payment in payments:
            Payment._base_manager.filter(pk=payment.pk).update(
                **{name: getattr(payment, name) for name in _PROGRESS_FIELDS}
            )
        return
    update_rows(
        table="payments_payment",
        key=("id", "uuid"),
        columns=[
            ("status", "varchar"),
            ("status_changed_at", "timestamptz"),
            ("completed_at", "timestamptz"),
            ("actual_amount", "numeric"),
            ("actual_amount_usd", "numeric"),
            ("transaction_hash", "varchar"),
            ("pay_address", "varchar"),
            ("pay_amount", "numeric"),
            ("provider_data", "jsonb"),
            ("provider_checked_at", "timestamptz"),
            ("updated_at", "timestamptz"),
        ],
        rows=[
            (
                p.pk,
                p.status,
                p.status_changed_at,
                p.completed_at,
                p.actual_amount,
                p.actual_amount_usd,
                p.transaction_hash,
                p.pay_address,
                p.pay_amount,
                json.dumps(p.provider_data, cls=DjangoJSONEncoder),
                p.provider_checked_at,
                p.updated_at,
            )
            for p in payments
        ],
    )


def _unknown_payment(report: ProviderPayment) -> ApplyResult:
    """A payment we did not create: a re-deposit to one of ours is put before an operator.

    NowPayments makes a child payment when a customer pays the same address again; it is never
    credited automatically (the amount and asset need a person's check).
    """
    parent = None
    if report.parent_payment_id:
        parent = Payment.objects.filter(provider_payment_id=report.parent_payment_id).first()
    if parent is None:
        return ApplyResult(outcome=EventOutcome.UNKNOWN_PAYMENT)
    paid = f"{report.actually_paid or 0} {report.pay_currency or ''}".strip()
    finding_record(
        kind=DriftKind.REDEPOSIT,
        subject=f"redeposit:{report.payment_id}",
        user_id=parent.user_id,
        payment_id=parent.pk,
        expected="no further deposit",
        actual=paid,
        detail=f"NowPayments payment {report.payment_id} ({report.payment_status}) "
        f"re-deposited to the address of {parent.internal_payment_id}.",
    )
    logger.warning("re-deposit %s to payment %s needs review", report.payment_id, parent.pk)
    return ApplyResult(outcome=EventOutcome.IGNORED, payment_id=parent.pk, status=parent.status)


def _copy_progress(payment: Payment, report: ProviderPayment) -> None:
    if report.actually_paid is not None:
        payment.actual_amount = report.actually_paid
        payment.actual_amount_usd = _usd_value(payment, report)
    if report.payin_hash:
        payment.transaction_hash = report.payin_hash
    if report.pay_address and not payment.pay_address:
        payment.pay_address = report.pay_address
    if report.pay_amount is not None and payment.pay_amount is None:
        payment.pay_amount = report.pay_amount
    payment.provider_data = dict(report.raw)


def _usd_value(payment: Payment, report: ProviderPayment) -> Decimal | None:
    if report.actually_paid_at_fiat is not None:
        return report.actually_paid_at_fiat.quantize(CENT, rounding=ROUND_DOWN)
    paid, asked = report.actually_paid, payment.pay_amount or report.pay_amount
    if paid is None or not asked:
        return None
    return (payment.amount_usd * paid / asked).quantize(CENT, rounding=ROUND_DOWN)
