"""Deposits: create them at NowPayments, apply the provider's reports, settle them exactly once."""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import asdict, dataclass
from datetime import timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from payments import ledger
from payments.bulk import update_rows
from payments.config import get_public_base_url
from payments.errors import (
    AmountBelowMinimum,
    CurrencyUnavailable,
    InvalidAmount,
    ProviderRejected,
)
from payments.models import Currency, LedgerDrift, Payment, Transaction
from payments.models.common import generate_public_id
from payments.models.event import EventOutcome
from payments.models.ops import DriftKind
from payments.models.payment import PaymentStatus, can_move
from payments.models.transaction import TransactionType
from payments.money import CENT, is_cents
from payments.services.gateway import get_provider, refuse_inside_transaction
from payments.services.providers.nowpayments.types import ProviderPayment

logger = logging.getLogger(__name__)

# A registration that started this long ago without an answer may be tried again.
REGISTER_RETRY_AFTER = timedelta(minutes=5)
_MIN_AMOUNT_CODES = {"AMOUNT_MINIMAL_ERROR"}


@dataclass(frozen=True)
class ApplyResult:
    outcome: str
    payment_id: uuid.UUID | None = None
    status: str | None = None
    deposit: Transaction | None = None


def payment_create(
    *,
    user_id: int,
    amount_usd: Decimal,
    currency_code: str,
    description: str = "",
    case: str | None = None,
) -> Payment:
    """Create a deposit at NowPayments, then store it; a refusal or outage stores nothing.

    The provider is called outside any database transaction, so no lock is held while waiting
    on the network.
    """
    refuse_inside_transaction()
    currency = _available_currency(currency_code)
    _check_amount(amount_usd, currency)
    internal_id = generate_public_id("PAY")
    report = _create_at_provider(
        internal_id=internal_id,
        amount_usd=amount_usd,
        currency=currency,
        description=description,
        case=case,
    )
    now = timezone.now()
    payment = Payment(
        user_id=user_id,
        internal_payment_id=internal_id,
        amount_usd=amount_usd,
        currency=currency,
        description=description,
        provider_requested_at=now,
    )
    _copy_creation(payment, report, now)
    payment.save(force_insert=True)
    logger.info(
        "payment created id=%s provider_id=%s user=%s",
        payment.pk,
        payment.provider_payment_id,
        user_id,
    )
    return payment


def payment_register(*, payment_id: uuid.UUID) -> Payment:
    """Create at NowPayments a payment that exists only locally (made through the ORM).

    A claim on ``provider_requested_at`` keeps two workers from creating it twice.
    """
    refuse_inside_transaction()
    now = timezone.now()
    claimed = (
        Payment.objects.filter(
            pk=payment_id, provider_payment_id__isnull=True, status=PaymentStatus.PENDING
        )
        .filter(
            Q(provider_requested_at__isnull=True)
            | Q(provider_requested_at__lt=now - REGISTER_RETRY_AFTER)
        )
        .update(provider_requested_at=now)
    )
    payment = Payment.objects.select_related("currency").get(pk=payment_id)
    if not claimed:
        return payment
    try:
        _check_amount(payment.amount_usd, payment.currency)
        report = _create_at_provider(
            internal_id=payment.internal_payment_id,
            amount_usd=payment.amount_usd,
            currency=payment.currency,
            description=payment.description,
        )
    except (AmountBelowMinimum, CurrencyUnavailable, ProviderRejected) as exc:
        # NowPayments will never accept it as it stands: fail it visibly.
        with transaction.atomic():
            payment = Payment.objects.select_for_update().get(pk=payment_id)
            if payment.status == PaymentStatus.PENDING and not payment.provider_payment_id:
                payment.status = PaymentStatus.FAILED
                payment.provider_error = f"{exc.code}: {exc.message}"[:500]
                payment.save()
        logger.warning("payment id=%s could not be registered: %s", payment_id, exc.code)
        return payment
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=payment_id)
        if payment.provider_payment_id is None:
            _copy_creation(payment, report, timezone.now())
            payment.save()
    logger.info("payment registered id=%s provider_id=%s", payment.pk, payment.provider_payment_id)
    return payment


def payments_awaiting_registration(*, limit: int = 500) -> list[uuid.UUID]:
    """Pending payments with no provider id whose registration is not under way."""
    cutoff = timezone.now() - REGISTER_RETRY_AFTER
    return list(
        Payment.objects.filter(status=PaymentStatus.PENDING, provider_payment_id__isnull=True)
        .filter(Q(provider_requested_at__isnull=True) | Q(provider_requested_at__lt=cutoff))
        .order_by("created_at")
        .values_list("pk", flat=True)[:limit]
    )


def payment_apply_report(*, report: ProviderPayment, source: str) -> ApplyResult:
    """Apply what NowPayments says of a payment (from a poll or an IPN).

    The status only moves forward; a stale or repeated report changes nothing. Reaching
    completed posts the deposit in the same database transaction, exactly once.
    """
    new_status = report.our_status
    with transaction.atomic():
        try:
            payment = Payment.objects.select_for_update().get(provider_payment_id=report.payment_id)
        except Payment.DoesNotExist:
            return _unknown_payment(report)
        old_status = payment.status
        outcome = _merge_report(payment, report, new_status, timezone.now())
        payment.save(update_fields=_PROGRESS_FIELDS)
        deposit = _settle_locked(payment) if payment.status == PaymentStatus.COMPLETED else None
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
            counts[_merge_report(payment, report, report.our_status, now)] += 1
        _write_progress(payments)
        completed = [p for p in payments if p.status == PaymentStatus.COMPLETED]
        credited = set(
            Transaction.objects.filter(
                payment_id__in=[p.pk for p in completed], transaction_type=TransactionType.DEPOSIT
            ).values_list("payment_id", flat=True)
        )
        fresh = [deposit_posting(p) for p in completed if p.pk not in credited]
        ledger.post_many(fresh)
        counts["credited"] = len(fresh)
    if counts["applied"]:
        logger.info("%s: applied %s report(s) in one batch", source, counts["applied"])
    return counts


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
            payment.save(update_fields=_PROGRESS_FIELDS)
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
    subject = f"redeposit:{report.payment_id}"
    drift = LedgerDrift.objects.filter(subject=subject, resolved_at__isnull=True)
    if not drift.update(actual=paid[:100], last_seen_at=timezone.now()):
        LedgerDrift.objects.create(
            kind=DriftKind.REDEPOSIT,
            subject=subject,
            user_id=parent.user_id,
            payment=parent,
            expected="no further deposit",
            actual=paid[:100],
            detail=f"NowPayments payment {report.payment_id} ({report.payment_status}) "
            f"re-deposited to the address of {parent.internal_payment_id}.",
        )
    logger.warning("re-deposit %s to payment %s needs review", report.payment_id, parent.pk)
    return ApplyResult(outcome=EventOutcome.IGNORED, payment_id=parent.pk, status=parent.status)


def payment_refresh(*, payment_id: uuid.UUID) -> ApplyResult:
    """Ask NowPayments for one payment's status and apply it."""
    refuse_inside_transaction()
    provider_id = (
        Payment.objects.filter(pk=payment_id).values_list("provider_payment_id", flat=True).first()
    )
    if not provider_id:
        return ApplyResult(outcome=EventOutcome.IGNORED, payment_id=payment_id)
    report = get_provider().get_payment_status(provider_id)
    return payment_apply_report(report=report, source="status")


@transaction.atomic
def payment_settle(*, payment_id: uuid.UUID) -> Transaction | None:
    """Credit a completed payment exactly once; any other status credits nothing."""
    payment = Payment.objects.select_for_update().get(pk=payment_id)
    if payment.status != PaymentStatus.COMPLETED:
        return None
    return _settle_locked(payment)


def deposit_posting(payment: Payment) -> ledger.Posting:
    """The one DEPOSIT posting a completed payment gets."""
    return ledger.Posting(
        user_id=payment.user_id,
        kind=TransactionType.DEPOSIT,
        amount_usd=payment.credited_amount_usd,
        idempotency_key=f"payment:{payment.pk}:deposit",
        description=f"Payment completed - {payment.internal_payment_id}",
        metadata={"provider_payment_id": payment.provider_payment_id or ""},
        payment_id=payment.pk,
    )


def _settle_locked(payment: Payment) -> Transaction:
    return ledger.post(**asdict(deposit_posting(payment)))


# --- helpers --------------------------------------------------------------------------------


def _available_currency(code: str) -> Currency:
    currency = Currency.objects.available().filter(code=(code or "").strip().upper()).first()
    if currency is None:
        raise CurrencyUnavailable(f"{code!r} is not a currency you can pay with here.")
    return currency


def _check_amount(amount_usd: Decimal, currency: Currency) -> None:
    if not isinstance(amount_usd, Decimal) or not is_cents(amount_usd) or amount_usd <= 0:
        raise InvalidAmount("amount_usd must be a positive Decimal amount in whole cents.")
    if amount_usd < currency.min_amount_usd:
        raise AmountBelowMinimum(
            f"The minimum deposit in {currency.display_name} is {currency.min_amount_usd} USD."
        )
    minimum = get_provider().get_min_amount(
        currency_from=currency.provider_code, fiat_equivalent="usd"
    )
    if minimum.fiat_equivalent is not None and amount_usd < minimum.fiat_equivalent:
        floor = minimum.fiat_equivalent.quantize(CENT)
        raise AmountBelowMinimum(
            f"NowPayments accepts {currency.display_name} deposits from about {floor} USD."
        )


def _create_at_provider(
    *,
    internal_id: str,
    amount_usd: Decimal,
    currency: Currency,
    description: str,
    case: str | None = None,
) -> ProviderPayment:
    try:
        return get_provider().create_payment(
            price_amount=amount_usd,
            price_currency="usd",
            pay_currency=currency.provider_code,
            order_id=internal_id,
            order_description=description[:200] or None,
            ipn_callback_url=_ipn_callback_url(),
            case=case,
        )
    except ProviderRejected as exc:
        if exc.provider_code in _MIN_AMOUNT_CODES:
            raise AmountBelowMinimum(
                f"NowPayments refused the amount as below its minimum: {exc.message}"
            ) from exc
        raise


def _ipn_callback_url() -> str | None:
    base = get_public_base_url()
    if base is None:
        return None
    return base + reverse("payments:nowpayments-ipn")


def _copy_creation(payment: Payment, report: ProviderPayment, now: object) -> None:
    payment.provider_payment_id = report.payment_id
    payment.pay_address = report.pay_address or ""
    payment.pay_extra_id = report.payin_extra_id or ""
    payment.pay_amount = report.pay_amount
    payment.expires_at = report.valid_until or report.expiration_estimate_date
    payment.provider_data = dict(report.raw)
    payment.provider_checked_at = now  # type: ignore[assignment]
    payment.provider_error = ""


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
