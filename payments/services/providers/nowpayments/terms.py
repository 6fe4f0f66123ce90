"""What NowPayments asks of one coin, read in USD: its deposit minimum, payout fee and minimum."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_UP, Decimal

from payments.errors import ProviderError
from payments.money import CENT
from payments.services.providers.nowpayments.parsing import MalformedResponse
from payments.services.providers.nowpayments.provider import NowPaymentsProvider

USD = "usd"
RATE_PROBE_USD = Decimal(1000)
_CONVERSION_QUANTUM = Decimal("0.0001")


@dataclass(frozen=True)
class CoinTerms:
    """One coin's terms in USD cents (None: not asked, or NowPayments did not answer).

    ``failures`` names what could not be read, with the error code, e.g.
    ``("payout terms: provider_unavailable",)``.
    """

    code: str
    min_amount_usd: Decimal | None = None
    withdrawal_fee_usd: Decimal | None = None
    withdrawal_min_usd: Decimal | None = None
    failures: tuple[str, ...] = ()


def coin_terms(
    provider: NowPaymentsProvider, code: str, *, margin: Decimal, payouts: bool
) -> CoinTerms:
    """Ask NowPayments for ``code``'s deposit minimum (times ``margin``, since rates move
    between this estimate and a payment's creation) and, with ``payouts``, its payout fee and
    minimum. Each part that fails is left None and named in ``failures``; nothing raises."""
    ticker = code.strip().lower()
    failures: list[str] = []
    min_amount_usd = withdrawal_fee_usd = withdrawal_min_usd = None
    try:
        min_amount_usd = _usd_up(_deposit_minimum_usd(provider, ticker) * margin)
    except ProviderError as exc:
        failures.append(f"deposit minimum: {exc.code}")
    if payouts:
        try:
            withdrawal_fee_usd, withdrawal_min_usd = _payout_terms_usd(provider, ticker)
        except ProviderError as exc:
            failures.append(f"payout terms: {exc.code}")
    return CoinTerms(
        code=code,
        min_amount_usd=min_amount_usd,
        withdrawal_fee_usd=withdrawal_fee_usd,
        withdrawal_min_usd=withdrawal_min_usd,
        failures=tuple(failures),
    )


def _deposit_minimum_usd(provider: NowPaymentsProvider, ticker: str) -> Decimal:
    # Our payments name no payout currency, so their outcome is the coin itself (custody).
    minimum = provider.get_min_amount(currency_from=ticker, currency_to=ticker, fiat_equivalent=USD)
    if minimum.fiat_equivalent is not None:
        return minimum.fiat_equivalent
    return minimum.min_amount * _usd_per_coin(provider, ticker)


def _payout_terms_usd(provider: NowPaymentsProvider, ticker: str) -> tuple[Decimal, Decimal]:
    """(network fee, smallest payout) in USD, both rounded up to the cent; the fee is the one
    quoted for a payout of the minimum (or of one coin when there is no minimum)."""
    minimum = provider.get_payout_min_amount(ticker).min_amount
    fee = provider.get_payout_fee(ticker, minimum if minimum > 0 else Decimal(1)).fee
    rate = _usd_per_coin(provider, ticker)
    return _usd_up(fee * rate), _usd_up(minimum * rate)


def _usd_per_coin(provider: NowPaymentsProvider, ticker: str) -> Decimal:
    """The coin's USD rate from ``GET /estimate`` of a round USD amount into the coin: fees are
    often a fraction of a cent's worth of coin, which an estimate *to* USD (in cents) loses."""
    coins = provider.get_estimate(RATE_PROBE_USD, USD, ticker).estimated_amount
    if coins <= 0:
        raise MalformedResponse(f"NowPayments estimated no {ticker} for {RATE_PROBE_USD} USD.")
    return RATE_PROBE_USD / coins


def _usd_up(value: Decimal) -> Decimal:
    """Fees and minimums round up to the cent (never below zero), after the conversion's own
    noise is dropped at a hundredth of a cent (1.2000000012 is 1.20, not 1.21)."""
    value = max(value, Decimal(0)).quantize(_CONVERSION_QUANTUM)
    return value.quantize(CENT, rounding=ROUND_UP)
