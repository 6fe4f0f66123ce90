"""Payment.qr_data (payments/models/uris.py): the network's payment URI, or the bare address."""

from __future__ import annotations

from decimal import Decimal

import pytest

from payments.models import Currency, Payment
from payments.models.uris import BIP21_COINS, EVM_ASSETS
from sandbox import catalogue

EVM = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
TRON = "TJRabPrwbZy45sbavfcjinPJC18kjpRTv8"
DOGE = "DH5yaieqoZN36fDVciNyRueRGvGLR3mr7L"
CASH = "qpm2qsznhks23z7629mms6s4cwef74vcwvy22gdx6a"


def qr(code: str, address: str, amount: str | None, network: str = "", extra: str = "") -> str:
    currency = Currency(code=code, token=code, network=network or code)
    payment = Payment(
        currency=currency,
        pay_address=address,
        pay_extra_id=extra,
        pay_amount=None if amount is None else Decimal(amount),
    )
    return payment.qr_data


@pytest.mark.parametrize(
    ("code", "address", "amount", "expected"),
    [
        # BIP-21: the amount in whole coins, no trailing zeros, never an exponent.
        ("BTC", "bc1qxyz", "0.000416670000000000", "bitcoin:bc1qxyz?amount=0.00041667"),
        ("BTC", "bc1qxyz", "1.000000000000000000", "bitcoin:bc1qxyz?amount=1"),
        ("BTC", "bc1qxyz", "10", "bitcoin:bc1qxyz?amount=10"),
        ("BTC", "bc1qxyz", "0.000000001", "bitcoin:bc1qxyz?amount=0.00000001"),  # up to a sat
        ("BTC", "bc1qxyz", None, "bitcoin:bc1qxyz"),
        ("LTC", "ltc1qabc", "0.3125", "litecoin:ltc1qabc?amount=0.3125"),
        ("DOGE", DOGE, "150", f"dogecoin:{DOGE}?amount=150"),
        # CashAddr may carry its scheme already: written once.
        ("BCH", f"bitcoincash:{CASH}", "0.05", f"bitcoincash:{CASH}?amount=0.05"),
        ("BCH", CASH, None, f"bitcoincash:{CASH}"),
    ],
)  # fmt: skip
def test_bip21_coins(code, address, amount, expected):
    assert qr(code, address, amount) == expected


@pytest.mark.parametrize(
    ("code", "amount", "expected"),
    [
        # EIP-681 native: value in wei, a plain integer; the chain id always written.
        ("ETH", "0.0123", f"ethereum:{EVM}@1?value=12300000000000000"),
        ("ETH", "2.014", f"ethereum:{EVM}@1?value=2014000000000000000"),
        ("ETH", None, f"ethereum:{EVM}@1"),
        ("BNBBSC", "0.5", f"ethereum:{EVM}@56?value=500000000000000000"),
        # EIP-681 ERC-20 transfer: the token contract, then the recipient and base units.
        ("USDTERC20", "25.5", "ethereum:0xdAC17F958D2ee523a2206206994597C13D831ec7@1/transfer"
         f"?address={EVM}&uint256=25500000"),
        ("USDC", "10", "ethereum:0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48@1/transfer"
         f"?address={EVM}&uint256=10000000"),
        ("USDTBSC", "1.25", "ethereum:0x55d398326f99059fF775485246999027B3197955@56/transfer"
         f"?address={EVM}&uint256=1250000000000000000"),
        ("USDTMATIC", "3", "ethereum:0xc2132D05D31c914a87C6611C10748AEb04B58e8F@137/transfer"
         f"?address={EVM}&uint256=3000000"),
        ("USDTERC20", "0.0000001", "ethereum:0xdAC17F958D2ee523a2206206994597C13D831ec7@1"
         f"/transfer?address={EVM}&uint256=1"),  # rounded up to one base unit
        ("USDTERC20", None, "ethereum:0xdAC17F958D2ee523a2206206994597C13D831ec7@1/transfer"
         f"?address={EVM}"),
    ],
)  # fmt: skip
def test_eip681_native_coins_and_tokens(code, amount, expected):
    assert qr(code, EVM, amount) == expected


@pytest.mark.parametrize(
    ("code", "network", "address"),
    [
        ("USDTTRC20", "TRC20", TRON),
        ("TRX", "TRX", TRON),
        ("SOL", "SOL", "7EcDhSYGxXyscszYEp35KHN8vvw3svAuLKTzXwCFLtV"),
        ("USDTSOL", "Solana", "7EcDhSYGxXyscszYEp35KHN8vvw3svAuLKTzXwCFLtV"),
        ("TON", "TON", "EQCD39VS5jcptHL8vMjEXrzGaRcCVYto7HUn4bpAOg8xqB2N"),
        ("XLM", "XLM", "GAHK7EEG2WWHVKDNT4CEQFZGKF2LGDSW2IVM4S5DP42RBW3K6BTODB4A"),
        # An ERC-20 token whose contract we do not hold: the bare address, not a guess.
        ("SHIBERC20", "ERC20", EVM),
        # Polygon's native coin: its NowPayments ticker is not certain enough to write a URI.
        ("MATICMAINNET", "MATICMAINNET", EVM),
    ],
)
def test_other_networks_get_the_bare_address(code, network, address):
    assert qr(code, address, "12.5", network=network) == address


def test_a_memo_coin_gets_the_bare_address_and_the_memo_stays_apart():
    address = "rEb8TK3gBgk5auZkwc6sHnwrGVJH8DuaLh"
    assert qr("XRP", address, "20", extra="104857") == address
    assert qr("XLM", "GAHK7EEG2W", "20", network="XLM", extra="memo-1") == "GAHK7EEG2W"


def test_no_address_no_data():
    assert qr("BTC", "", "0.1") is None
    assert qr("USDTTRC20", "", None, network="TRC20") is None


def test_the_token_table_agrees_with_what_nowpayments_lists():
    # The sandbox mirrors NowPayments' full-currencies (smart_contract, network_precision).
    checked = 0
    for code, asset in EVM_ASSETS.items():
        listed = catalogue.crypto(code)
        if listed is None:
            continue
        checked += 1
        assert listed.network in {"eth", "bsc", "matic"}, code
        assert asset.decimals == listed.network_precision, code
        if asset.contract is None:
            assert listed.smart_contract is None, code
        else:
            assert asset.contract.lower() == (listed.smart_contract or "").lower(), code
    assert checked == len(EVM_ASSETS)
    for code in BIP21_COINS:
        listed = catalogue.crypto(code)
        assert listed is None or listed.smart_contract is None, code
