"""Creating deposits: at NowPayments first, then stored; and registering ORM-made ones."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from decimal import Decimal

from django.db import transaction
from django.db.models import Q
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
from payments.models.payment import PaymentStatus
from payments.money import CENT, is_cents
from payments.services.deposits.moves import payment_move
from payments.services.providers.nowpayments.gateway import get_provider, refuse_inside_transaction
from payments.services.providers.nowpayments.types import ProviderPayment

logger = logging.getLogger(__name__)

# A registration that started this long ago without an answer may be tried again.
REGISTER_RETRY_AFTER = timedelta(minutes=5)


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
        Payment._base_manager.filter(
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
            payment = Payment._base_manager.select_for_update().get(pk=payment_id)
            if payment.status == PaymentStatus.PENDING and not payment.provider_payment_id:
                payment = payment_move(
                    payment_id=payment_id,
                    status=PaymentStatus.FAILED,
                    reason=f"{exc.code}: {exc.message}",
                )
        logger.warning("payment id=%s could not be registered: %s", payment_id, exc.code)
        return payment
    with transaction.atomic():
        payment = Payment._base_manager.select_for_update().get(pk=payment_id)
        if payment.provider_payment_id is None:
            _copy_creation(payment, report, timezone.now())
            Payment._base_manager.filter(pk=payment_id).update(
                **{name: getattr(payment, name) for name in _CREATION_FIELDS}
            )
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


_CREATION_FIELDS = (
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


def _copy_creation(payment: Payment, report: ProviderPayment, now: object) -> None:
    payment.provider_payment_id = report.payment_id
    payment.pay_address = report.pay_address or ""
    payment.pay_extra_id = report.payin_extra_id or ""
    payment.pay_amount = report.pay_amount
    payment.expires_at = report.valid_until or report.expiration_estimate_date
    payment.provider_data = dict(report.raw)
    payment.provider_checked_at = now  # type: ignore[assignment]
    payment.updated_at = now  # type: ignore[assignment]
    payment.provider_error = ""
