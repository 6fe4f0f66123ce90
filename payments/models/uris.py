"""Payment URIs: what a wallet scans to pay an address, per NowPayments currency, as data.

Only established schemes are written: BIP-21 and the coins that follow it (``bitcoin:``,
``litecoin:``, ``dogecoin:``, ``bitcoincash:``), and EIP-681 for Ether, BNB on BNB Smart Chain
and a few well-known tokens whose contract and decimals are fixed below. Every other currency
(Tron and its tokens, Solana, TON, memo coins such as XRP, tokens not in the table) gets the
bare address; a memo or destination tag is shown beside the code, never folded into it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_UP, Decimal
from urllib.parse import quote


@dataclass(frozen=True)
class Bip21Coin:
    scheme: str
    decimals: int  # the amount parameter is in whole coins, to this many places


@dataclass(frozen=True)
class EvmAsset:
    chain_id: int
    decimals: int
    contract: str | None = None  # None: the chain's native coin


# Keyed by our Currency.code (NowPayments' ticker in upper case).
BIP21_COINS: dict[str, Bip21Coin] = {
    "BTC": Bip21Coin("bitcoin", 8),
    "LTC": Bip21Coin("litecoin", 8),
    "DOGE": Bip21Coin("dogecoin", 8),
    "BCH": Bip21Coin("bitcoincash", 8),
}

ETHEREUM, BNB_SMART_CHAIN, POLYGON = 1, 56, 137
EVM_ASSETS: dict[str, EvmAsset] = {
    "ETH": EvmAsset(ETHEREUM, 18),
    "BNBBSC": EvmAsset(BNB_SMART_CHAIN, 18),
    "USDTERC20": EvmAsset(ETHEREUM, 6, "0xdAC17F958D2ee523a2206206994597C13D831ec7"),
    "USDC": EvmAsset(ETHEREUM, 6, "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"),
    "USDTBSC": EvmAsset(BNB_SMART_CHAIN, 18, "0x55d398326f99059fF775485246999027B3197955"),
    "USDTMATIC": EvmAsset(POLYGON, 6, "0xc2132D05D31c914a87C6611C10748AEb04B58e8F"),
}


def payment_uri(*, code: str, address: str, amount: Decimal | None) -> str:
    """The URI a wallet scans to pay ``amount`` (in coin units, None: unknown) to ``address``."""
    code = code.upper()
    if code in BIP21_COINS:
        return _bip21(BIP21_COINS[code], address, amount)
    if code in EVM_ASSETS:
        return _eip681(EVM_ASSETS[code], address, amount)
    return address


def _bip21(coin: Bip21Coin, address: str, amount: Decimal | None) -> str:
    prefix = f"{coin.scheme}:"
    if address.lower().startswith(prefix):  # CashAddr addresses may carry the scheme already
        address = address[len(prefix) :]
    uri = prefix + quote(address, safe="")
    if amount is not None and amount > 0:
        uri += f"?amount={_plain(_round_up(amount, coin.decimals))}"
    return uri


def _eip681(asset: EvmAsset, address: str, amount: Decimal | None) -> str:
    # ethereum:<target>@<chain_id>[/transfer]?<params>; the chain id is always written so that
    # a wallet on another EVM chain does not send there. Amounts are integers in base units.
    address = quote(address, safe="")
    units = None if amount is None or amount <= 0 else _base_units(amount, asset.decimals)
    if asset.contract is None:
        uri = f"ethereum:{address}@{asset.chain_id}"
        return uri if units is None else f"{uri}?value={units}"
    uri = f"ethereum:{asset.contract}@{asset.chain_id}/transfer?address={address}"
    return uri if units is None else f"{uri}&uint256={units}"


def _round_up(amount: Decimal, places: int) -> Decimal:
    # Paying a fraction of the smallest unit more never makes an underpayment.
    return amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_UP)


def _base_units(amount: Decimal, decimals: int) -> int:
    return int(amount.scaleb(decimals).to_integral_value(rounding=ROUND_UP))


def _plain(amount: Decimal) -> str:
    """1.50000000 -> '1.5', 10.00 -> '10': no trailing zeros, never an exponent."""
    return format(amount.normalize(), "f")
