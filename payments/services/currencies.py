"""Currency rows (their one writer): NowPayments' coins and terms, and the operator's edits."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from payments.errors import (
    ConfigurationError,
    CurrencyTermsFromProvider,
    InvalidAmount,
)
from payments.models import Currency
from payments.money import is_cents
from payments.services import backoff
from payments.services.providers.nowpayments.gateway import get_provider
from payments.services.providers.nowpayments.terms import CoinTerms, coin_terms
from payments.services.providers.nowpayments.types import FullCurrency

logger = logging.getLogger(__name__)

# How NowPayments' network ids read for a token on that chain: USDT (TRC20), USDC (ERC20)...
_TOKEN_NETWORK_LABELS = {
    "trx": "TRC20",
    "eth": "ERC20",
    "bsc": "BEP20",
    "matic": "Polygon",
    "sol": "Solana",
    "algo": "Algorand",
    "ton": "TON",
    "arbitrum": "Arbitrum",
    "op": "Optimism",
    "avaxc": "AVAX C-Chain",
}


# What a network calls the memo a payout to a shared address needs (full-currencies says only
# *that* a coin has one: ``extra_id_exists``); any other such network says "Memo".
_EXTRA_ID_NAMES = {
    "xrp": "Destination tag",
    "xem": "Message",
    "xmr": "Payment ID",
}
_DEFAULT_EXTRA_ID_NAME = "Memo"

# Deposit minimums carry a margin: rates move between this estimate and a payment's creation.
_DEFAULT_MIN_AMOUNT_MARGIN = "1.05"


@dataclass
class SyncResult:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    withdrawn: list[str] = field(default_factory=list)
    kept_off: list[str] = field(default_factory=list)
    # Coins whose minimums or payout fee NowPayments did not give this time (their stored
    # values are kept): code -> what failed, e.g. "payout terms: provider_unavailable".
    failed: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        text = (
            f"{len(self.created)} created, {len(self.updated)} updated, "
            f"{len(self.withdrawn)} no longer offered, "
            f"{len(self.kept_off)} kept off by an operator"
        )
        if self.failed:
            text += f", {len(self.failed)} with terms not refreshed"
        return text


def currencies_sync() -> SyncResult:
    """Upsert every enabled currency the merchant accepts; never switch on one an operator
    switched off, and mark the ones NowPayments stopped offering as not provider-enabled.

    Each coin's deposit minimum (``GET /min-amount``, with PAYMENTS_MIN_AMOUNT_MARGIN) and,
    where ``withdrawal_fee_from_provider`` is on, its payout fee and minimum are read too. A coin
    NowPayments does not answer for keeps its stored values and is listed in ``failed``; it
    never stops the others, and it is backed off on its own row (``terms_failures``,
    ``terms_retry_at``, ``terms_last_error``): later syncs keep its stored terms without asking
    until then. Every call to NowPayments is made before the transaction.
    """
    margin = _min_amount_margin()
    provider = get_provider()
    catalogue = provider.get_full_currencies()
    merchant = {code.lower() for code in provider.get_merchant_coins()}
    offered = {
        entry.code.upper(): entry
        for entry in catalogue
        if entry.enable and (not merchant or entry.code.lower() in merchant)
    }
    now = timezone.now()
    follows_provider: dict[str, bool] = {}
    backed_off: set[str] = set()
    for code, follows, retry_at in Currency.objects.values_list(
        "code", "withdrawal_fee_from_provider", "terms_retry_at"
    ):
        follows_provider[code] = follows
        if retry_at is not None and retry_at > now:
            backed_off.add(code)
    terms = {
        # A coin first seen here starts with NowPayments' payout terms; a coin backed off
        # after failed syncs keeps its stored terms without a call.
        code: coin_terms(provider, code, margin=margin, payouts=follows_provider.get(code, True))
        for code in sorted(offered)
        if code not in backed_off
    }
    result = SyncResult()
    with transaction.atomic():
        existing = {c.code: c for c in Currency.objects.select_for_update()}
        for code, entry in sorted(offered.items()):
            values = _fields(entry)
            currency = existing.get(code)
            if currency is None:
                currency = Currency(
                    code=code,
                    is_active=True,
                    provider_enabled=True,
                    sort_order=_sort_order(entry),
                    withdrawal_fee_from_provider=True,
                )
                result.created.append(code)
            elif currency.is_active:
                result.updated.append(code)
            else:
                result.kept_off.append(code)
            for name, value in values.items():
                setattr(currency, name, value)
            if code in terms:
                _apply_terms(currency, terms[code], now=now)
                _count_terms_failures(currency, terms[code], now=now)
            currency.provider_enabled = True
            currency.synced_at = now
            currency.save()
        for code, currency in existing.items():
            if code not in offered and currency.provider_enabled:
                currency.provider_enabled = False
                currency.synced_at = now
                currency.save(update_fields=["provider_enabled", "synced_at", "updated_at"])
                result.withdrawn.append(code)
    for code, coin in terms.items():
        if coin.failures:
            result.failed[code] = "; ".join(coin.failures)
            logger.warning("currency sync %s: kept the stored %s", code, result.failed[code])
    logger.info("currency sync: %s", result.summary())
    return result


def _count_terms_failures(currency: Currency, terms: CoinTerms, *, now: datetime) -> None:
    """One more consecutive failure backs the coin off (payments.services.backoff); an answer
    forgets the failures."""
    if terms.failures:
        currency.terms_failures += 1
        currency.terms_retry_at = backoff.retry_at(currency.terms_failures, now=now)
        currency.terms_last_error = "; ".join(terms.failures)[: backoff.ERROR_MAX_LENGTH]
    else:
        currency.terms_failures = 0
        currency.terms_retry_at = None
        currency.terms_last_error = ""


def _apply_terms(currency: Currency, terms: CoinTerms, *, now: datetime) -> None:
    """What NowPayments said of the coin; what it did not say keeps the stored value. Payout
    terms are written only while the currency follows NowPayments (checked under the lock)."""
    if terms.min_amount_usd is not None:
        currency.min_amount_usd = terms.min_amount_usd
    if not currency.withdrawal_fee_from_provider:
        return
    if terms.withdrawal_fee_usd is not None and terms.withdrawal_min_usd is not None:
        currency.withdrawal_fee_usd = terms.withdrawal_fee_usd
        currency.withdrawal_min_usd = terms.withdrawal_min_usd
        currency.withdrawal_synced_at = now


def _min_amount_margin() -> Decimal:
    raw = str(getattr(settings, "PAYMENTS_MIN_AMOUNT_MARGIN", _DEFAULT_MIN_AMOUNT_MARGIN))
    try:
        margin = Decimal(raw)
    except InvalidOperation:
        margin = Decimal("NaN")
    if not margin.is_finite() or not Decimal(1) <= margin <= Decimal(2):
        raise ConfigurationError(
            f"PAYMENTS_MIN_AMOUNT_MARGIN must be a factor from 1 to 2 such as 1.05, not {raw!r}."
        )
    return margin


# --- the operator's edits (the admin) ---------------------------------------------------------

# What an operator may change on a currency; everything else comes from NowPayments at a sync.
OPERATOR_FIELDS = (
    "is_active",
    "sort_order",
    "withdrawal_fee_from_provider",
    "withdrawal_fee_usd",
    "withdrawal_min_usd",
)
# Set by the sync, not by hand, while ``withdrawal_fee_from_provider`` is on.
PROVIDER_TERMS = ("withdrawal_fee_usd", "withdrawal_min_usd")
_MAX_USD = Decimal("10000000000")  # the columns hold 12 digits, 2 of them cents


def currency_update_check(*, currency: Currency, changes: Mapping[str, object]) -> None:
    """Raise a PaymentsError if an operator may not make ``changes`` (field -> new value)."""
    unknown = sorted(set(changes) - set(OPERATOR_FIELDS))
    if unknown:
        raise ValueError(f"{', '.join(unknown)} of a currency come from NowPayments")
    follows = changes.get("withdrawal_fee_from_provider", currency.withdrawal_fee_from_provider)
    if follows and set(changes) & set(PROVIDER_TERMS):
        raise CurrencyTermsFromProvider(
            f"The withdrawal fee and minimum of {currency.code} come from NowPayments at each "
            "sync while \u201cwithdrawal fee from provider\u201d is on: switch that off to set "
            "them by hand, or leave them as they are."
        )
    for name, label, nullable in (
        ("withdrawal_fee_usd", "The withdrawal network fee", True),
        ("withdrawal_min_usd", "The withdrawal minimum", False),
    ):
        if name not in changes or (nullable and changes[name] is None):
            continue
        value = changes[name]
        if not isinstance(value, Decimal) or not is_cents(value) or value < 0:
            raise InvalidAmount(f"{label} must be an amount in USD cents of 0.00 or more.")
        if value >= _MAX_USD:
            raise InvalidAmount(f"{label} must be less than {_MAX_USD} USD.")


@transaction.atomic
def currency_update(*, currency_id: int, changes: Mapping[str, object]) -> Currency:
    """An operator's edit of a currency (``OPERATOR_FIELDS`` only), checked under its lock."""
    currency = Currency.objects.select_for_update().get(pk=currency_id)
    currency_update_check(currency=currency, changes=changes)
    for name, value in changes.items():
        setattr(currency, name, value)
    currency.save(update_fields=[*changes, "updated_at"])
    logger.info("currency %s changed by an operator: %s", currency.code, ", ".join(changes))
    return currency


def currencies_follow_provider_terms() -> list[str]:
    """Let NowPayments set the withdrawal fee and minimum (at the next sync) of every currency
    whose terms nobody has set: no fee, no minimum, never synced. For a demo or a first run;
    the codes switched over are returned."""
    with transaction.atomic():
        untouched = list(
            Currency.objects.select_for_update().filter(
                withdrawal_fee_from_provider=False,
                withdrawal_fee_usd__isnull=True,
                withdrawal_min_usd=0,
                withdrawal_synced_at__isnull=True,
            )
        )
        for currency in untouched:
            currency.withdrawal_fee_from_provider = True
            currency.save(update_fields=["withdrawal_fee_from_provider", "updated_at"])
    return [currency.code for currency in untouched]


# --- what full-currencies says of a coin -------------------------------------------------------


def _fields(entry: FullCurrency) -> dict[str, object]:
    code = entry.code.upper()
    token = (entry.ticker or code).upper()
    network_id = (entry.network or "").lower()
    if token == code or not network_id:
        network = code if token == code else network_id.upper()
    else:
        network = _TOKEN_NETWORK_LABELS.get(network_id, network_id.upper())
    regex = entry.wallet_regex or ""
    try:
        re.compile(regex)
    except re.error:
        logger.warning("currency %s: wallet_regex does not compile; not used", code)
        regex = ""
    return {
        "name": (entry.name or code)[:100],
        "token": token[:32],
        "network": network[:32],
        "decimal_places": _decimals(entry),
        "address_regex": regex[:500],
        "extra_id_required": bool(entry.extra_id_exists),
        "extra_id_name": _extra_id_name(entry, network_id) if entry.extra_id_exists else "",
        "explorer_tx_url": (entry.explorer_link_hash or "")[:500],
    }


def _extra_id_name(entry: FullCurrency, network_id: str) -> str:
    for key in (network_id, entry.code.lower()):
        if key in _EXTRA_ID_NAMES:
            return _EXTRA_ID_NAMES[key]
    return _DEFAULT_EXTRA_ID_NAME


def _decimals(entry: FullCurrency) -> int:
    for value in (entry.precision, entry.network_precision):
        if value is not None and 0 <= value <= 18:
            return value
    return 8


def _sort_order(entry: FullCurrency) -> int:
    return entry.priority if entry.priority is not None else 1000
