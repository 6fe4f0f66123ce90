"""What a withdrawal costs and needs: its network and service fees, its minimum, the memo rule."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_UP, Decimal, InvalidOperation

from django.conf import settings

from payments.errors import (
    AmountBelowMinimum,
    ConfigurationError,
    CurrencyUnavailable,
    ExtraIdRequired,
    FeesExceedAmount,
    InvalidAmount,
)
from payments.models import Currency
from payments.money import CENT, is_cents

_HUNDRED = Decimal(100)


@dataclass(frozen=True)
class WithdrawalFees:
    network_fee_usd: Decimal
    service_fee_usd: Decimal

    @property
    def total_usd(self) -> Decimal:
        return self.network_fee_usd + self.service_fee_usd


@dataclass(frozen=True)
class WithdrawalQuote:
    """What a withdrawal of ``amount_usd`` would cost and pay out, before it is requested.

    ``minimum_usd`` is the smallest amount whose payout (``final_amount_usd``) NowPayments
    sends: its payout minimum ``payout_minimum_usd`` plus the fees.
    """

    currency_code: str
    amount_usd: Decimal
    network_fee_usd: Decimal
    service_fee_usd: Decimal
    total_fee_usd: Decimal
    final_amount_usd: Decimal
    minimum_usd: Decimal
    payout_minimum_usd: Decimal
    extra_id_required: bool
    extra_id_name: str


def withdrawal_fees(
    *, currency: Currency | None = None, amount_usd: Decimal | None = None
) -> WithdrawalFees:
    """The fees a new withdrawal pays (USD, rounded up to the cent).

    Network: the currency's ``withdrawal_fee_usd``, or PAYMENTS_WITHDRAWAL_NETWORK_FEE_USD
    when it has none (or no currency is given). Service: PAYMENTS_WITHDRAWAL_SERVICE_FEE_USD,
    plus PAYMENTS_WITHDRAWAL_SERVICE_FEE_PERCENT of ``amount_usd`` when an amount is given.
    """
    network = None if currency is None else currency.withdrawal_fee_usd
    if network is None:
        network = _setting_usd("PAYMENTS_WITHDRAWAL_NETWORK_FEE_USD")
    service = _setting_usd("PAYMENTS_WITHDRAWAL_SERVICE_FEE_USD")
    if isinstance(amount_usd, Decimal) and amount_usd.is_finite() and amount_usd > 0:
        share = amount_usd * _service_fee_percent() / _HUNDRED
        service += share.quantize(CENT, rounding=ROUND_UP)
    return WithdrawalFees(network_fee_usd=network, service_fee_usd=service)


def withdrawal_quote(*, currency_code: str, amount_usd: Decimal) -> WithdrawalQuote:
    """The fees and payout of a withdrawal of ``amount_usd`` in a currency, or a refusal:
    ``currency_unavailable``, ``invalid_amount``, ``fees_exceed_amount`` (nothing would be paid
    out) or ``amount_below_minimum`` (the payout would be under NowPayments' minimum)."""
    code = (currency_code or "").strip().upper()
    currency = Currency.objects.filter(code=code, is_active=True).first()
    if currency is None:
        raise CurrencyUnavailable(f"{currency_code!r} is not a currency you can withdraw in.")
    if not isinstance(amount_usd, Decimal) or not is_cents(amount_usd) or amount_usd <= 0:
        raise InvalidAmount("amount_usd must be a positive Decimal amount in whole cents.")
    quote = _quote(
        currency,
        amount_usd,
        withdrawal_fees(currency=currency, amount_usd=amount_usd),
        minimum_usd=_default_minimum_usd(currency),
    )
    _refuse_short_payout(currency, quote)
    return quote


def withdrawal_minimum_check(
    *, currency: Currency, amount_usd: Decimal, network_fee_usd: Decimal, service_fee_usd: Decimal
) -> None:
    """Refuse a request whose fees take it all, or whose payout is under NowPayments' minimum."""
    fees = WithdrawalFees(network_fee_usd=network_fee_usd, service_fee_usd=service_fee_usd)
    _refuse_short_payout(currency, _quote(currency, amount_usd, fees))


def withdrawal_extra_id_check(*, currency: Currency, wallet_extra_id: str | None) -> str:
    """The memo as it will be stored; refused when the currency needs one and there is none."""
    extra_id = (wallet_extra_id or "").strip()
    if currency.extra_id_required and not extra_id:
        name = (currency.extra_id_name or "memo").strip().lower()
        raise ExtraIdRequired(
            f"{currency.display_name} withdrawals need a {name} (wallet_extra_id) beside the "
            "address: without it the payout cannot be credited to the right account."
        )
    return extra_id


def _quote(
    currency: Currency,
    amount_usd: Decimal,
    fees: WithdrawalFees,
    *,
    minimum_usd: Decimal | None = None,
) -> WithdrawalQuote:
    """The figures; ``minimum_usd`` defaults to the payout minimum plus these very fees."""
    floor = _payout_floor(currency)
    return WithdrawalQuote(
        currency_code=currency.code,
        amount_usd=amount_usd,
        network_fee_usd=fees.network_fee_usd,
        service_fee_usd=fees.service_fee_usd,
        total_fee_usd=fees.total_usd,
        final_amount_usd=amount_usd - fees.total_usd,
        minimum_usd=floor + fees.total_usd if minimum_usd is None else minimum_usd,
        payout_minimum_usd=currency.withdrawal_min_usd,
        extra_id_required=currency.extra_id_required,
        extra_id_name=currency.extra_id_name,
    )


def _refuse_short_payout(currency: Currency, quote: WithdrawalQuote) -> None:
    name = currency.display_name
    if quote.final_amount_usd <= 0:
        raise FeesExceedAmount(
            f"The amount {quote.amount_usd} USD does not cover the fees "
            f"{quote.total_fee_usd} USD; the smallest {name} withdrawal is "
            f"{quote.minimum_usd} USD."
        )
    if quote.final_amount_usd < _payout_floor(currency):
        raise AmountBelowMinimum(
            f"The smallest {name} withdrawal is {quote.minimum_usd} USD: NowPayments pays out "
            f"{name} from {quote.payout_minimum_usd} USD, and the fees are "
            f"{quote.total_fee_usd} USD."
        )


def _payout_floor(currency: Currency) -> Decimal:
    """The least a payout may send: NowPayments' minimum, and at least a cent."""
    return max(currency.withdrawal_min_usd, CENT)


def _default_minimum_usd(currency: Currency) -> Decimal:
    """The smallest amount whose payout, after the default fees, reaches the payout floor."""
    floor = _payout_floor(currency)
    fixed = withdrawal_fees(currency=currency).total_usd
    share = _service_fee_percent() / _HUNDRED
    amount = ((floor + fixed) / (1 - share)).quantize(CENT, rounding=ROUND_UP)
    # The percentage rounds up to the cent: step up until the payout reaches the floor.
    while amount - withdrawal_fees(currency=currency, amount_usd=amount).total_usd < floor:
        amount += CENT
    return amount


def _setting_usd(name: str) -> Decimal:
    raw = str(getattr(settings, name, "0"))
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ConfigurationError(
            f"{name} must be a USD amount such as 1.50, not {raw!r}."
        ) from None
    if not is_cents(value) or value < 0:
        raise ConfigurationError(f"{name} must be a non-negative amount in whole cents.")
    return value


def _service_fee_percent() -> Decimal:
    name = "PAYMENTS_WITHDRAWAL_SERVICE_FEE_PERCENT"
    raw = str(getattr(settings, name, "0"))
    try:
        value = Decimal(raw)
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite() or not 0 <= value < 50:
        raise ConfigurationError(f"{name} must be a percentage from 0 to under 50, not {raw!r}.")
    return value
