"""Currency: a NowPayments pay currency with its token, network and explorer link."""

from __future__ import annotations

from decimal import Decimal
from urllib.parse import quote

from django.db import models
from django.db.models.functions import Upper

from payments.models.common import Provider


class CurrencyQuerySet(models.QuerySet["Currency"]):
    def available(self) -> CurrencyQuerySet:
        """Currencies a user may pay with: switched on here and offered by the provider."""
        return self.filter(is_active=True, provider_enabled=True)


class Currency(models.Model):
    code = models.CharField(
        max_length=32, unique=True, help_text="NowPayments code in upper case, e.g. USDTTRC20."
    )
    name = models.CharField(max_length=100)
    token = models.CharField(max_length=32, help_text="Token symbol, e.g. USDT.")
    network = models.CharField(max_length=32, blank=True, help_text="Network, e.g. TRC20.")
    decimal_places = models.PositiveSmallIntegerField(default=8)
    is_active = models.BooleanField(
        default=True, help_text="Operator's switch: off means users cannot pay with it."
    )
    provider_enabled = models.BooleanField(
        default=True, help_text="Whether NowPayments offered it at the last sync."
    )
    provider = models.CharField(
        max_length=32, choices=Provider.choices, default=Provider.NOWPAYMENTS
    )
    min_amount_usd = models.DecimalField(max_digits=12, decimal_places=2, default=Decimal("1.00"))
    sort_order = models.IntegerField(default=0)
    address_regex = models.CharField(max_length=500, blank=True)
    extra_id_required = models.BooleanField(default=False, help_text="Needs a memo / tag.")
    extra_id_name = models.CharField(
        max_length=40, blank=True, help_text="What the network calls it, e.g. Destination tag."
    )
    withdrawal_fee_usd = models.DecimalField(
        max_digits=12,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="Network fee of a payout in USD; empty means the default setting.",
    )
    withdrawal_min_usd = models.DecimalField(
        max_digits=12,
        decimal_places=2,
        default=Decimal("0"),
        help_text="Smallest payout NowPayments sends, in USD (before fees).",
    )
    withdrawal_fee_from_provider = models.BooleanField(
        default=False,
        help_text="On: the fee and minimum come from NowPayments at each sync (edits are "
        "overwritten). Off: the values here are the operator's.",
    )
    withdrawal_synced_at = models.DateTimeField(null=True, blank=True)
    explorer_tx_url = models.CharField(
        max_length=500,
        blank=True,
        help_text="Transaction URL template with {hash} (or NowPayments' :hash) placeholder.",
    )
    synced_at = models.DateTimeField(null=True, blank=True)
    # A coin whose terms NowPayments keeps failing to give is backed off on its own row (the
    # sync goes on with the others and keeps its stored terms): consecutive failures, when it
    # is asked next, and what failed last.
    terms_failures = models.PositiveIntegerField(
        default=0, help_text="Consecutive syncs NowPayments did not give this coin's terms."
    )
    terms_retry_at = models.DateTimeField(
        null=True, blank=True, help_text="The sync keeps the stored terms until then."
    )
    terms_last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = CurrencyQuerySet.as_manager()

    class Meta:
        ordering = ["sort_order", "code"]
        verbose_name_plural = "currencies"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(min_amount_usd__gte=0), name="currency_min_amount_nonneg"
            ),
            models.CheckConstraint(
                condition=models.Q(withdrawal_min_usd__gte=0)
                & (models.Q(withdrawal_fee_usd__isnull=True) | models.Q(withdrawal_fee_usd__gte=0)),
                name="currency_withdrawal_terms_nonneg",
            ),
            models.CheckConstraint(
                condition=models.Q(code=Upper("code")),
                name="currency_code_upper",
            ),
        ]

    def __str__(self) -> str:
        return self.code

    @property
    def display_name(self) -> str:
        """'USDT (TRC20)'; just the token when the network adds nothing."""
        if self.network and self.network.upper() != self.token.upper():
            return f"{self.token} ({self.network})"
        return self.token

    @property
    def provider_code(self) -> str:
        """The ticker NowPayments expects in requests (lower case)."""
        return self.code.lower()

    def explorer_url(self, tx_hash: str) -> str | None:
        """The block explorer URL of a transaction on this currency's network: NowPayments'
        template (``explorer_link_hash``, synced into ``explorer_tx_url``) where it gives an
        http(s) one, the built-in table by network and ticker otherwise."""
        tx_hash = (tx_hash or "").strip()
        if not tx_hash:
            return None
        template = self.explorer_tx_url.strip()
        if not template.lower().startswith(("https://", "http://")):
            template = _fallback_explorer(self) or ""
        if not template:
            return None
        value = quote(tx_hash, safe="")
        return template.replace(":hash", value).replace("{hash}", value)

    def explorer_address_url(self, address: str) -> str | None:
        """The block explorer URL of an address on this currency's network (a built-in table:
        NowPayments gives no address link)."""
        address = (address or "").strip()
        template = _address_explorer(self) if address else None
        if not template:
            return None
        return template.replace("{address}", quote(address, safe=""))


# Public explorers by network (our Currency.network, lower case: NowPayments' network id, its
# token-standard label such as TRC20, or the coin's own code) and by ticker, used when
# NowPayments gives no explorer_link_hash.
_ETHERSCAN = "https://etherscan.io/tx/{hash}"
_TRONSCAN = "https://tronscan.org/#/transaction/{hash}"
_BSCSCAN = "https://bscscan.com/tx/{hash}"
_POLYGONSCAN = "https://polygonscan.com/tx/{hash}"
_SOLSCAN = "https://solscan.io/tx/{hash}"
_TONVIEWER = "https://tonviewer.com/transaction/{hash}"
_XRPSCAN = "https://xrpscan.com/tx/{hash}"
_ARBISCAN = "https://arbiscan.io/tx/{hash}"
_EXPLORERS = {
    "btc": "https://mempool.space/tx/{hash}",
    "bitcoin": "https://mempool.space/tx/{hash}",
    "ltc": "https://blockchair.com/litecoin/transaction/{hash}",
    "litecoin": "https://blockchair.com/litecoin/transaction/{hash}",
    "doge": "https://blockchair.com/dogecoin/transaction/{hash}",
    "dogecoin": "https://blockchair.com/dogecoin/transaction/{hash}",
    "bch": "https://blockchair.com/bitcoin-cash/transaction/{hash}",
    "eth": _ETHERSCAN,
    "erc20": _ETHERSCAN,
    "ethereum": _ETHERSCAN,
    "usdc": _ETHERSCAN,  # NowPayments' USDC is the ERC20 token
    "trx": _TRONSCAN,
    "trc20": _TRONSCAN,
    "tron": _TRONSCAN,
    "bsc": _BSCSCAN,
    "bep20": _BSCSCAN,
    "bnbbsc": _BSCSCAN,
    "matic": _POLYGONSCAN,
    "polygon": _POLYGONSCAN,
    "maticmainnet": _POLYGONSCAN,
    "sol": _SOLSCAN,
    "solana": _SOLSCAN,
    "ton": _TONVIEWER,
    "xrp": _XRPSCAN,
    "ripple": _XRPSCAN,
    "xlm": "https://stellar.expert/explorer/public/tx/{hash}",
    "stellar": "https://stellar.expert/explorer/public/tx/{hash}",
    "arbitrum": _ARBISCAN,
    "arb": _ARBISCAN,
    "optimism": "https://optimistic.etherscan.io/tx/{hash}",
    "avaxc": "https://snowtrace.io/tx/{hash}",
    "avax c-chain": "https://snowtrace.io/tx/{hash}",
}

# Token tickers end with their network (usdttrc20, usdtbsc, usdtmatic, usdtsol, usdtton ...).
_TICKER_SUFFIXES = ("trc20", "erc20", "bep20", "bsc", "matic", "sol", "ton", "arb")


# Public explorers of an address by network (and ticker suffix), for the withdrawal review.
_ADDRESS_EXPLORERS = {
    "btc": "https://mempool.space/address/{address}",
    "bitcoin": "https://mempool.space/address/{address}",
    "ltc": "https://blockchair.com/litecoin/address/{address}",
    "litecoin": "https://blockchair.com/litecoin/address/{address}",
    "eth": "https://etherscan.io/address/{address}",
    "erc20": "https://etherscan.io/address/{address}",
    "ethereum": "https://etherscan.io/address/{address}",
    "trx": "https://tronscan.org/#/address/{address}",
    "trc20": "https://tronscan.org/#/address/{address}",
    "tron": "https://tronscan.org/#/address/{address}",
    "bsc": "https://bscscan.com/address/{address}",
    "bep20": "https://bscscan.com/address/{address}",
    "bnb": "https://bscscan.com/address/{address}",
    "matic": "https://polygonscan.com/address/{address}",
    "polygon": "https://polygonscan.com/address/{address}",
    "pol": "https://polygonscan.com/address/{address}",
    "sol": "https://solscan.io/account/{address}",
    "solana": "https://solscan.io/account/{address}",
    "ton": "https://tonviewer.com/{address}",
    "xrp": "https://xrpscan.com/account/{address}",
    "ripple": "https://xrpscan.com/account/{address}",
}
_ADDRESS_SUFFIXES = ("trc20", "erc20", "bep20", "bsc", "matic", "polygon", "sol", "ton")


def _address_explorer(currency: Currency) -> str | None:
    return _explorer_for(currency, _ADDRESS_EXPLORERS, _ADDRESS_SUFFIXES)


def _fallback_explorer(currency: Currency) -> str | None:
    return _explorer_for(currency, _EXPLORERS, _TICKER_SUFFIXES)


def _explorer_for(
    currency: Currency, table: dict[str, str], suffixes: tuple[str, ...]
) -> str | None:
    """The table's template for the currency: by network, then by code, then by code suffix."""
    network = (currency.network or "").lower()
    if network in table:
        return table[network]
    code = currency.code.lower()
    if code in table:
        return table[code]
    for suffix in suffixes:
        if code.endswith(suffix):
            return table[suffix]
    return None
