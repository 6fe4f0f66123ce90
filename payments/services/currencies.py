"""Currencies: load NowPayments' catalogue and the merchant's coins into Currency rows."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from payments.models import Currency
from payments.services.providers.nowpayments.gateway import get_provider
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


@dataclass
class SyncResult:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    withdrawn: list[str] = field(default_factory=list)
    kept_off: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{len(self.created)} created, {len(self.updated)} updated, "
            f"{len(self.withdrawn)} no longer offered, "
            f"{len(self.kept_off)} kept off by an operator"
        )


def currencies_sync() -> SyncResult:
    """Upsert every enabled currency the merchant accepts; never switch on one an operator
    switched off, and mark the ones NowPayments stopped offering as not provider-enabled."""
    provider = get_provider()
    catalogue = provider.get_full_currencies()
    merchant = {code.lower() for code in provider.get_merchant_coins()}
    offered = {
        entry.code.upper(): entry
        for entry in catalogue
        if entry.enable and (not merchant or entry.code.lower() in merchant)
    }
    result = SyncResult()
    now = timezone.now()
    with transaction.atomic():
        existing = {c.code: c for c in Currency.objects.select_for_update()}
        for code, entry in sorted(offered.items()):
            values = _fields(entry)
            currency = existing.get(code)
            if currency is None:
                Currency.objects.create(
                    code=code,
                    is_active=True,
                    provider_enabled=True,
                    synced_at=now,
                    sort_order=_sort_order(entry),
                    **values,
                )
                result.created.append(code)
                continue
            for name, value in values.items():
                setattr(currency, name, value)
            currency.provider_enabled = True
            currency.synced_at = now
            currency.save()
            (result.updated if currency.is_active else result.kept_off).append(code)
        for code, currency in existing.items():
            if code not in offered and currency.provider_enabled:
                currency.provider_enabled = False
                currency.synced_at = now
                currency.save(update_fields=["provider_enabled", "synced_at", "updated_at"])
                result.withdrawn.append(code)
    logger.info("currency sync: %s", result.summary())
    return result


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
        "explorer_tx_url": (entry.explorer_link_hash or "")[:500],
    }


def _decimals(entry: FullCurrency) -> int:
    for value in (entry.precision, entry.network_precision):
        if value is not None and 0 <= value <= 18:
            return value
    return 8


def _sort_order(entry: FullCurrency) -> int:
    return entry.priority if entry.priority is not None else 1000
