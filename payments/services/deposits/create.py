"""Creating deposits: at NowPayments first, then stored (ORM-made ones: ``register``)."""

from __future__ import annotations

import logging
from decimal import Decimal

from django.urls import reverse
from django.utils import timezone

from payments.config import get_public_base_url
from payments.errors import (
    AmountBelowMinimum,
    CurrencyUnavailable,
    InvalidAmount,
    ProviderRejected,
)
from payments.models import Currency, Payment
from payments.models.common import generate_public_id
from payments.money import CENT, is_cents
from payments.services.providers.nowpayments.gateway import get_provider, refuse_inside_transaction
from payments.services.providers.nowpayments.provider import NowPaymentsProvider
from payments.services.providers.nowpayments.types import ProviderPayment

logger = logging.getLogger(__name__)

_MIN_AMOUNT_CODES = {"AMOUNT_MINIMAL_ERROR"}


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
    check_amount(amount_usd, currency)
    internal_id = generate_public_id("PAY")
    report = create_at_provider(
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
    copy_creation(payment, report, now)
    payment.save(force_insert=True)
    logger.info(
        "payment created id=%s provider_id=%s user=%s",
        payment.pk,
        payment.provider_payment_id,
        user_id,
    )
    return payment


def _available_currency(code: str) -> Currency:
    currency = Currency.objects.available().filter(code=(code or "").strip().upper()).first()
    if currency is None:
        raise CurrencyUnavailable(f"{code!r} is not a currency you can pay with here.")
    return currency


def check_amount(
    amount_usd: Decimal, currency: Currency, *, provider: NowPaymentsProvider | None = None
) -> None:
    """Refuse an amount that is not whole cents or below our or NowPayments' minimum."""
    if not isinstance(amount_usd, Decimal) or not is_cents(amount_usd) or amount_usd <= 0:
        raise InvalidAmount("amount_usd must be a positive Decimal amount in whole cents.")
    if amount_usd < currency.min_amount_usd:
        raise AmountBelowMinimum(
            f"The minimum deposit in {currency.display_name} is {currency.min_amount_usd} USD."
        )
    minimum = (provider or get_provider()).get_min_amount(
        currency_from=currency.provider_code, fiat_equivalent="usd"
    )
    if minimum.fiat_equivalent is not None and amount_usd < minimum.fiat_equivalent:
        floor = minimum.fiat_equivalent.quantize(CENT)
        raise AmountBelowMinimum(
            f"NowPayments accepts {currency.display_name} deposits from about {floor} USD."
        )


def create_at_provider(
    *,
    internal_id: str,
    amount_usd: Decimal,
    currency: Currency,
    description: str,
    case: str | None = None,
    provider: NowPaymentsProvider | None = None,
) -> ProviderPayment:
    """``POST /payment`` for this order; NowPayments' minimum-amount refusal is ours."""
    try:
        return (provider or get_provider()).create_payment(
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


# What a creation at NowPayments sets on a payment.
CREATION_FIELDS = (
    "provider_payment_id",
    "pay_address",
    "pay_extra_id",
    "pay_amount",
    "expires_at",
    "provider_data",
    "provider_checked_at",
    "provider_error",
    "updated_at",
)


def copy_creation(payment: Payment, report: ProviderPayment, now: object) -> None:
    payment.provider_payment_id = report.payment_id
    payment.pay_address = report.pay_address or ""
    payment.pay_extra_id = report.payin_extra_id or ""
    payment.pay_amount = report.pay_amount
    payment.expires_at = report.valid_until or report.expiration_estimate_date
    payment.provider_data = dict(report.raw)
    payment.provider_checked_at = now  # type: ignore[assignment]
    payment.updated_at = now  # type: ignore[assignment]
    payment.provider_error = ""
