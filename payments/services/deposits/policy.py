"""The deposit policy: what a provider report is worth, decided in one place.

A report is accepted only if it matches what we created (order id, price and its currency,
pay currency); a mismatch or a wrong asset goes to review and credits nothing. A full payment
credits the price; an underpayment credits the received share of the price (rounded down to
the cent) or goes to review, by PAYMENTS_UNDERPAYMENT_POLICY; an overpayment credits the price
and records the excess, or credits the received value, by PAYMENTS_OVERPAYMENT_POLICY.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

from django.conf import settings

from payments.errors import ConfigurationError
from payments.models import Payment
from payments.models.payment import PaymentStatus
from payments.money import CENT
from payments.services.providers.nowpayments.types import ProviderPayment

UNDERPAYMENT_POLICIES = ("credit_received", "review")
OVERPAYMENT_POLICIES = ("record", "credit")
# NowPayments' statuses that say money of another asset arrived (spec: wrong-asset deposits).
WRONG_ASSET_STATUSES = frozenset({"wrong_asset_confirmed"})


@dataclass(frozen=True)
class Verdict:
    """What a report makes of a payment: its status, what it credits, and what to record."""

    status: str
    credit_usd: Decimal | None = None
    review_reason: str = ""
    excess_usd: Decimal | None = None


def mismatch(payment: Payment, report: ProviderPayment) -> str:
    """Why ``report`` does not describe the payment we created ("" when it does)."""
    expected_asset = payment.currency.provider_code.lower()
    checks = [
        ("order_id", report.order_id, payment.internal_payment_id),
        ("price_currency", (report.price_currency or "").lower() or None, "usd"),
        ("price_amount", report.price_amount, payment.amount_usd),
        ("pay_currency", (report.pay_currency or "").lower() or None, expected_asset),
    ]
    for name, reported, ours in checks:
        if reported is not None and reported != ours:
            return f"{name} reported {reported}, created {ours}"
    if report.payment_status in WRONG_ASSET_STATUSES:
        return f"NowPayments reports {report.payment_status}: another asset arrived"
    return ""


def judge_completion(payment: Payment, report: ProviderPayment) -> Verdict:
    """The verdict on a ``finished`` report that matches what we created."""
    return judge_received(
        payment, paid=report.actually_paid, asked=payment.pay_amount or report.pay_amount
    )


def judge_received(payment: Payment, *, paid: Decimal | None, asked: Decimal | None) -> Verdict:
    """What a completed payment credits for ``paid`` of ``asked`` (crypto) received."""
    if paid is None or not asked:
        return Verdict(PaymentStatus.REVIEW, review_reason="finished without an amount received")
    unit = Decimal(1).scaleb(-max(0, min(payment.currency.decimal_places, 18)))
    if paid + unit < asked:
        return judge_underpayment(payment, paid=paid, asked=asked)
    if paid > asked + unit:
        value = _share(payment.amount_usd, paid, asked)
        if _overpayment_policy() == "credit":
            return Verdict(PaymentStatus.COMPLETED, credit_usd=value)
        return Verdict(
            PaymentStatus.COMPLETED,
            credit_usd=payment.amount_usd,
            excess_usd=value - payment.amount_usd,
        )
    return Verdict(PaymentStatus.COMPLETED, credit_usd=payment.amount_usd)


def judge_underpayment(payment: Payment, *, paid: Decimal, asked: Decimal) -> Verdict:
    """An underpayment that is final (a ``finished`` with less, or partially_paid for long)."""
    share = _share(payment.amount_usd, paid, asked)
    reason = f"underpaid: {paid} of {asked} {payment.currency.provider_code.upper()}"
    if _underpayment_policy() == "review":
        return Verdict(PaymentStatus.REVIEW, review_reason=reason)
    if share <= 0:
        return Verdict(PaymentStatus.REVIEW, review_reason=f"{reason}, worth less than a cent")
    return Verdict(PaymentStatus.COMPLETED, credit_usd=min(share, payment.amount_usd))


def _share(price: Decimal, paid: Decimal, asked: Decimal) -> Decimal:
    """The received share of the price, rounded down to the cent (credits always round down)."""
    return (price * paid / asked).quantize(CENT, rounding=ROUND_DOWN)


def _underpayment_policy() -> str:
    return _policy("PAYMENTS_UNDERPAYMENT_POLICY", UNDERPAYMENT_POLICIES)


def _overpayment_policy() -> str:
    return _policy("PAYMENTS_OVERPAYMENT_POLICY", OVERPAYMENT_POLICIES)


def _policy(name: str, allowed: tuple[str, ...]) -> str:
    value = str(getattr(settings, name, allowed[0]))
    if value not in allowed:
        raise ConfigurationError(f"{name} must be one of {', '.join(allowed)}, not {value!r}.")
    return value


def judge_report(payment: Payment, report: ProviderPayment, ours: str) -> Verdict:
    """Where a report takes the payment (``ours``: the provider status mapped onto ours).

    The status machine then decides whether the payment may go there (forward only).
    """
    old = payment.status
    if old == PaymentStatus.REVIEW and ours != PaymentStatus.REFUNDED:
        return Verdict(PaymentStatus.REVIEW)  # an operator decides; reports are recorded only
    reason = mismatch(payment, report)
    if reason:
        return Verdict(PaymentStatus.REVIEW, review_reason=reason)
    if old in _CLOSED and ours in _MONEY:
        return Verdict(
            PaymentStatus.REVIEW,
            review_reason=f"NowPayments reports {report.payment_status} after it was {old}",
        )
    if ours == PaymentStatus.COMPLETED:
        return judge_completion(payment, report)
    return Verdict(ours)


_CLOSED = frozenset({PaymentStatus.EXPIRED, PaymentStatus.FAILED, PaymentStatus.CANCELLED})
_MONEY = frozenset(
    {
        PaymentStatus.CONFIRMING,
        PaymentStatus.CONFIRMED,
        PaymentStatus.PARTIALLY_PAID,
        PaymentStatus.COMPLETED,
        PaymentStatus.REVIEW,
    }
)
