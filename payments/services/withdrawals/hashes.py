"""Transaction hash formats by network: what an operator may type for a manual payout."""

from __future__ import annotations

import re

_EVM = ("0x followed by 64 hex digits", re.compile(r"0x[0-9a-fA-F]{64}"))
_HEX64 = ("64 hex digits", re.compile(r"[0-9a-fA-F]{64}"))
_BASE58_SIG = (
    "a base58 signature of 86 to 88 characters",
    re.compile(r"[1-9A-HJ-NP-Za-km-z]{86,88}"),
)
_TON = (
    "64 hex digits or 44 base64url characters",
    re.compile(r"[0-9a-fA-F]{64}|[A-Za-z0-9_-]{43}[A-Za-z0-9_=-]"),
)
_UNKNOWN = (
    "at least 16 characters of 0-9, A-Z, a-z, _ and -",
    re.compile(r"[0-9A-Za-z_-]{16,255}"),
)

# By network (Currency.network, lower case; the currency's token or code if it has none).
HASH_FORMATS: dict[str, tuple[str, re.Pattern[str]]] = {
    **dict.fromkeys(
        (
            "erc20",
            "eth",
            "ethereum",
            "bep20",
            "bsc",
            "polygon",
            "matic",
            "arbitrum",
            "arb",
            "optimism",
            "op",
            "base",
            "avaxc",
        ),
        _EVM,
    ),
    **dict.fromkeys(
        ("btc", "bitcoin", "ltc", "litecoin", "doge", "dogecoin", "bch", "trc20", "trx", "tron"),
        _HEX64,
    ),
    "xrp": _HEX64,
    **dict.fromkeys(("sol", "solana", "spl"), _BASE58_SIG),
    "ton": _TON,
}


def hash_format(network: str) -> tuple[str, re.Pattern[str]]:
    """The description and pattern of a transaction hash on ``network``."""
    return HASH_FORMATS.get(network.strip().lower(), _UNKNOWN)


def hash_format_problem(*, network: str, transaction_hash: str) -> str | None:
    """Why ``transaction_hash`` cannot be a transaction on ``network``, or None if it can."""
    description, pattern = hash_format(network)
    if pattern.fullmatch(transaction_hash.strip()):
        return None
    shown = transaction_hash.strip()[:20] or "an empty hash"
    return f"{shown!r} is not a {network or 'blockchain'} transaction hash ({description})."
