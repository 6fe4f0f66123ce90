"""The sandbox's currencies: fixed USD rates, precisions, minimums, fees and address formats."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_UP, Decimal
from typing import Any

BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
HEX = "0123456789abcdef"
BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"

EVM_REGEX = "^(0x)[0-9A-Fa-f]{40}$"

# USD value of one unit of each fiat accepted as price_currency / estimate currency (spec 2.6).
FIAT_USD = {
    "usd": Decimal("1"),
    "eur": Decimal("1.08"),
    "cad": Decimal("0.73"),
    "gbp": Decimal("1.27"),
    "aud": Decimal("0.66"),
    "ils": Decimal("0.27"),
    "ron": Decimal("0.22"),
}
FIAT_PRECISION = 2

SERVICE_FEE_RATE = Decimal("0.005")
FIXED_RATE_MIN_FACTOR = Decimal("1.2")
FEE_PAID_BY_USER_MIN_FACTOR = Decimal("1.3")


@dataclass(frozen=True)
class Currency:
    id: int
    code: str  # lower-case ticker as used by the API (``usdttrc20``)
    name: str
    usd_rate: Decimal
    precision: int
    network: str
    network_precision: int | None
    wallet_regex: str
    address_prefix: str
    address_alphabet: str
    address_length: int  # characters after the prefix
    min_usd: Decimal
    deposit_fee: Decimal
    withdrawal_fee: Decimal
    ticker: str
    cg_id: str
    smart_contract: str | None = None
    explorer_link_hash: str | None = None
    extra_id_regex: str | None = None
    is_stable: bool = False
    is_popular: bool = False
    enable: bool = True
    merchant: bool = True  # listed by /v1/merchant/coins
    fixed_rate: bool = True  # listed by /v1/currencies?fixed_rate=true
    priority: int = 100
    # Mass payouts (spec 2.16), in coin units: the network fee ``/v1/payout/fee`` quotes and
    # the smallest payout ``/v1/payout-withdrawal/min-amount/{coin}`` reports.
    payout_fee: Decimal = Decimal(0)
    payout_min: Decimal = Decimal(0)

    @property
    def extra_id_exists(self) -> bool:
        return self.extra_id_regex is not None

    def quantum(self) -> Decimal:
        return Decimal(1).scaleb(-self.precision)

    def round_up(self, amount: Decimal) -> Decimal:
        return amount.quantize(self.quantum(), rounding=ROUND_UP)

    def round_down(self, amount: Decimal) -> Decimal:
        return amount.quantize(self.quantum(), rounding=ROUND_DOWN)

    def address_for(self, seed: str) -> str:
        """A deterministic address that matches ``wallet_regex``."""
        return self.address_prefix + _encode(seed, self.address_alphabet, self.address_length)

    def is_valid_address(self, address: str) -> bool:
        return re.fullmatch(self.wallet_regex.strip("^$"), address) is not None

    def is_valid_extra_id(self, extra_id: str | None) -> bool:
        if extra_id in (None, ""):
            return True
        if self.extra_id_regex is None:
            return False
        return re.fullmatch(self.extra_id_regex.strip("^$"), str(extra_id)) is not None

    def full_entry(self) -> dict[str, Any]:
        """The /v1/full-currencies entry (spec 2.3)."""
        return {
            "id": self.id,
            "code": self.code.upper(),
            "name": self.name,
            "enable": self.enable,
            "wallet_regex": self.wallet_regex,
            "priority": self.priority,
            "extra_id_exists": self.extra_id_exists,
            "extra_id_regex": self.extra_id_regex,
            "logo_url": f"/images/coins/{self.code}.svg",
            "track": True,
            "cg_id": self.cg_id,
            "is_maxlimit": False,
            "network": self.network,
            "smart_contract": self.smart_contract,
            # CAP shows network_precision as a string in full-currencies.
            "network_precision": (
                None if self.network_precision is None else str(self.network_precision)
            ),
            "explorer_link_hash": self.explorer_link_hash,
            "precision": self.precision,
            "ticker": self.ticker,
            "is_defi": False,
            "is_popular": self.is_popular,
            "is_stable": self.is_stable,
            "available_for_to_conversion": self.enable,
        }


def _encode(seed: str, alphabet: str, length: int) -> str:
    out: list[str] = []
    counter = 0
    while len(out) < length:
        digest = hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        out.extend(alphabet[byte % len(alphabet)] for byte in digest)
        counter += 1
    return "".join(out[:length])


def random_hash(seed: str, network: str) -> str:
    """A deterministic transaction hash in the network's usual shape."""
    if network in ("eth", "bsc", "matic"):
        return "0x" + _encode(seed, HEX, 64)
    if network == "sol":
        return _encode(seed, BASE58, 88)
    if network == "xrp":
        return _encode(seed, HEX, 64).upper()
    return _encode(seed, HEX, 64)


def _usdt(cid: int, code: str, network: str, precision: int | None, **kw: Any) -> Currency:
    return Currency(
        id=cid,
        code=code,
        name=f"Tether USD ({network.upper()})",
        usd_rate=Decimal("1"),
        precision=6,
        network=network,
        network_precision=precision,
        ticker="usdt",
        cg_id="tether",
        is_stable=True,
        is_popular=True,
        **kw,
    )


_EVM = {"wallet_regex": EVM_REGEX, "address_prefix": "0x", "address_alphabet": HEX}
_TRON = {
    "wallet_regex": "^T[1-9A-HJ-NP-Za-km-z]{33}$",
    "address_prefix": "T",
    "address_alphabet": BASE58,
    "address_length": 33,
}

# fmt: off
CURRENCIES: tuple[Currency, ...] = (
    Currency(
        id=1, code="btc", name="Bitcoin", usd_rate=Decimal("60000"), precision=8,
        network="btc", network_precision=8,
        wallet_regex="^([13][a-km-zA-HJ-NP-Z1-9]{25,34}|bc1[a-z0-9]{39,59})$",
        address_prefix="bc1q", address_alphabet=BECH32, address_length=38,
        min_usd=Decimal("10"), deposit_fee=Decimal("0.00001"), withdrawal_fee=Decimal("0.00002"),
        ticker="btc", cg_id="bitcoin", is_popular=True, priority=1,
        payout_fee=Decimal("0.000025"), payout_min=Decimal("0.00017"),
        explorer_link_hash="https://blockchair.com/bitcoin/transaction/:hash",
    ),
    Currency(
        id=2, code="eth", name="Ethereum", usd_rate=Decimal("3000"), precision=8,
        network="eth", network_precision=18, address_length=40, min_usd=Decimal("5"),
        deposit_fee=Decimal("0.0001"), withdrawal_fee=Decimal("0.0002"), ticker="eth",
        cg_id="ethereum", is_popular=True, priority=2,
        payout_fee=Decimal("0.0004"), payout_min=Decimal("0.002"),
        explorer_link_hash="https://etherscan.io/tx/:hash", **_EVM,
    ),
    Currency(
        id=3, code="ltc", name="Litecoin", usd_rate=Decimal("80"), precision=8,
        network="ltc", network_precision=8,
        wallet_regex="^([LM3][a-km-zA-HJ-NP-Z1-9]{26,33}|ltc1[a-z0-9]{39,59})$",
        address_prefix="M", address_alphabet=BASE58, address_length=33,
        min_usd=Decimal("1"), deposit_fee=Decimal("0.0001"), withdrawal_fee=Decimal("0.0001"),
        ticker="ltc", cg_id="litecoin", priority=5,
        payout_fee=Decimal("0.001"), payout_min=Decimal("0.02"),
    ),
    Currency(
        id=4, code="trx", name="Tron", usd_rate=Decimal("0.12"), precision=6,
        network="trx", network_precision=6, min_usd=Decimal("1"), deposit_fee=Decimal("0.1"),
        withdrawal_fee=Decimal("1"), ticker="trx", cg_id="tron", priority=6,
        payout_fee=Decimal("1.1"), payout_min=Decimal("10"),
        explorer_link_hash="https://tronscan.org/#/transaction/:hash", **_TRON,
    ),
    _usdt(
        5, "usdttrc20", "trx", 6, min_usd=Decimal("2"), deposit_fee=Decimal("0.1"),
        withdrawal_fee=Decimal("1"), smart_contract="TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t",
        explorer_link_hash="https://tronscan.org/#/transaction/:hash", priority=3,
        payout_fee=Decimal("1.32766"), payout_min=Decimal("3"), **_TRON,
    ),
    _usdt(
        6, "usdterc20", "eth", 6, min_usd=Decimal("10"), deposit_fee=Decimal("1"),
        withdrawal_fee=Decimal("2"), smart_contract="0xdAC17F958D2ee523a2206206994597C13D831ec7",
        explorer_link_hash="https://etherscan.io/tx/:hash", address_length=40, priority=4,
        payout_fee=Decimal("3.5"), payout_min=Decimal("10"), **_EVM,
    ),
    _usdt(
        7, "usdtbsc", "bsc", 18, min_usd=Decimal("1"), deposit_fee=Decimal("0.05"),
        withdrawal_fee=Decimal("0.1"), smart_contract="0x55d398326f99059fF775485246999027B3197955",
        address_length=40, priority=7, payout_fee=Decimal("0.3"), payout_min=Decimal("2"), **_EVM,
    ),
    Currency(
        id=8, code="bnbbsc", name="BNB (BSC)", usd_rate=Decimal("600"), precision=8,
        network="bsc", network_precision=18, address_length=40, min_usd=Decimal("1"),
        deposit_fee=Decimal("0.0001"), withdrawal_fee=Decimal("0.0002"), ticker="bnb",
        cg_id="binancecoin", priority=8, payout_fee=Decimal("0.0005"),
        payout_min=Decimal("0.005"), **_EVM,
    ),
    Currency(
        id=9, code="usdc", name="USD Coin (ERC20)", usd_rate=Decimal("1"), precision=6,
        network="eth", network_precision=6, address_length=40, min_usd=Decimal("10"),
        deposit_fee=Decimal("1"), withdrawal_fee=Decimal("2"), ticker="usdc", cg_id="usd-coin",
        smart_contract="0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48", is_stable=True,
        explorer_link_hash="https://etherscan.io/tx/:hash", priority=9, merchant=False,
        payout_fee=Decimal("3.5"), payout_min=Decimal("10"), **_EVM,
    ),
    Currency(
        id=10, code="sol", name="Solana", usd_rate=Decimal("150"), precision=8,
        network="sol", network_precision=9, wallet_regex="^[1-9A-HJ-NP-Za-km-z]{32,44}$",
        address_prefix="", address_alphabet=BASE58, address_length=44, min_usd=Decimal("1"),
        deposit_fee=Decimal("0.0001"), withdrawal_fee=Decimal("0.001"), ticker="sol",
        cg_id="solana", priority=10, payout_fee=Decimal("0.005"), payout_min=Decimal("0.02"),
    ),
    _usdt(
        11, "usdtmatic", "matic", 6, min_usd=Decimal("1"), deposit_fee=Decimal("0.05"),
        withdrawal_fee=Decimal("0.1"), smart_contract="0xc2132D05D31c914a87C6611C10748AEb04B58e8F",
        address_length=40, priority=11, merchant=False, fixed_rate=False,
        payout_fee=Decimal("0.3"), payout_min=Decimal("2"), **_EVM,
    ),
    Currency(
        id=12, code="xrp", name="Ripple", usd_rate=Decimal("0.5"), precision=6,
        network="xrp", network_precision=6, wallet_regex="^r[1-9A-HJ-NP-Za-km-z]{24,34}$",
        address_prefix="r", address_alphabet=BASE58, address_length=33, min_usd=Decimal("1"),
        deposit_fee=Decimal("0.01"), withdrawal_fee=Decimal("0.1"), ticker="xrp", cg_id="ripple",
        extra_id_regex="^[0-9]{1,10}$", priority=12, payout_fee=Decimal("0.3"),
        payout_min=Decimal("5"),
    ),
    Currency(
        id=13, code="doge", name="Dogecoin", usd_rate=Decimal("0.15"), precision=8,
        network="doge", network_precision=None, wallet_regex="^D[a-km-zA-HJ-NP-Z1-9]{33}$",
        address_prefix="D", address_alphabet=BASE58, address_length=33, min_usd=Decimal("1"),
        deposit_fee=Decimal("1"), withdrawal_fee=Decimal("2"), ticker="doge", cg_id="dogecoin",
        enable=False, merchant=False, fixed_rate=False, priority=13,
        payout_fee=Decimal("5"), payout_min=Decimal("30"),
    ),
    Currency(
        id=14, code="xlm", name="Stellar", usd_rate=Decimal("0.1"), precision=7,
        network="xlm", network_precision=7, wallet_regex="^G[A-Z2-7]{55}$",
        address_prefix="G", address_alphabet=BASE32, address_length=55, min_usd=Decimal("1"),
        deposit_fee=Decimal("0.01"), withdrawal_fee=Decimal("0.01"), ticker="xlm",
        cg_id="stellar", extra_id_regex="^[0-9A-Za-z]{1,28}$", priority=14,
        payout_fee=Decimal("0.05"), payout_min=Decimal("20"),
    ),
)
# fmt: on

BY_CODE: dict[str, Currency] = {c.code: c for c in CURRENCIES}

# A generous starting balance so that payouts work before any payment finished (spec 2.11).
INITIAL_BALANCE_USD = Decimal("1000000")


def crypto(code: Any) -> Currency | None:
    """The currency for a ticker, case-insensitively, or None."""
    if not isinstance(code, str):
        return None
    return BY_CODE.get(code.strip().lower())


def usd_rate(code: str) -> Decimal | None:
    """USD value of one unit of a fiat or crypto ticker, or None if unknown."""
    key = code.strip().lower()
    if key in FIAT_USD:
        return FIAT_USD[key]
    currency = BY_CODE.get(key)
    return currency.usd_rate if currency and currency.enable else None


def precision_of(code: str) -> int:
    currency = BY_CODE.get(code.lower())
    return currency.precision if currency else FIAT_PRECISION


def convert(amount: Decimal, source: str, target: str) -> Decimal:
    """Convert at the fixed rates; unrounded. Both codes must be known."""
    source_rate, target_rate = usd_rate(source), usd_rate(target)
    if source_rate is None or target_rate is None:
        raise KeyError(source if source_rate is None else target)
    return amount * source_rate / target_rate


def min_amount(
    source: str, target: str, *, fixed_rate: bool = False, fee_paid_by_user: bool = False
) -> Decimal:
    """Minimum payable amount in ``source`` for the pair and flow (spec 2.5), rounded up."""
    floor_usd = Decimal(0)
    for code in (source, target):
        currency = BY_CODE.get(code.lower())
        if currency is not None:
            floor_usd = max(floor_usd, currency.min_usd)
    if fee_paid_by_user:
        floor_usd *= FEE_PAID_BY_USER_MIN_FACTOR
    elif fixed_rate:
        floor_usd *= FIXED_RATE_MIN_FACTOR
    amount = convert(floor_usd, "usd", source)
    quantum = Decimal(1).scaleb(-precision_of(source))
    return amount.quantize(quantum, rounding=ROUND_UP)
