"""Currency.explorer_url (payments/models/currency.py): NowPayments' template, else our table."""

from __future__ import annotations

import pytest

from payments.models import Currency
from payments.services.currencies import currencies_sync
from sandbox import catalogue

HASH = "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b"


def currency(code: str, network: str, template: str = "") -> Currency:
    return Currency(code=code, token=code, network=network, explorer_tx_url=template)


# (code, network) as the currency sync stores them: a coin's own code as its network, a
# token's standard (TRC20, ERC20, BEP20, Polygon, Solana, TON ...).
@pytest.mark.parametrize(
    ("code", "network", "expected"),
    [
        ("BTC", "BTC", f"https://mempool.space/tx/{HASH}"),
        ("LTC", "LTC", f"https://blockchair.com/litecoin/transaction/{HASH}"),
        ("DOGE", "DOGE", f"https://blockchair.com/dogecoin/transaction/{HASH}"),
        ("BCH", "BCH", f"https://blockchair.com/bitcoin-cash/transaction/{HASH}"),
        ("ETH", "ETH", f"https://etherscan.io/tx/{HASH}"),
        ("USDTERC20", "ERC20", f"https://etherscan.io/tx/{HASH}"),
        ("USDC", "USDC", f"https://etherscan.io/tx/{HASH}"),
        ("TRX", "TRX", f"https://tronscan.org/#/transaction/{HASH}"),
        ("USDTTRC20", "TRC20", f"https://tronscan.org/#/transaction/{HASH}"),
        ("BNBBSC", "BEP20", f"https://bscscan.com/tx/{HASH}"),
        ("USDTBSC", "BEP20", f"https://bscscan.com/tx/{HASH}"),
        ("USDTMATIC", "Polygon", f"https://polygonscan.com/tx/{HASH}"),
        ("MATICMAINNET", "MATICMAINNET", f"https://polygonscan.com/tx/{HASH}"),
        ("SOL", "SOL", f"https://solscan.io/tx/{HASH}"),
        ("USDTSOL", "Solana", f"https://solscan.io/tx/{HASH}"),
        ("TON", "TON", f"https://tonviewer.com/transaction/{HASH}"),
        ("USDTTON", "TON", f"https://tonviewer.com/transaction/{HASH}"),
        ("XRP", "XRP", f"https://xrpscan.com/tx/{HASH}"),
        ("XLM", "XLM", f"https://stellar.expert/explorer/public/tx/{HASH}"),
        ("USDTARB", "Arbitrum", f"https://arbiscan.io/tx/{HASH}"),
        ("USDTOP", "Optimism", f"https://optimistic.etherscan.io/tx/{HASH}"),
        ("USDTAVAXC", "AVAX C-Chain", f"https://snowtrace.io/tx/{HASH}"),
    ],
)
def test_the_built_in_table_by_network(code, network, expected):
    assert currency(code, network).explorer_url(HASH) == expected


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        # A network label we do not know: the ticker's suffix names the chain.
        ("USDTTRC20", "https://tronscan.org/#/transaction/"),
        ("USDCERC20", "https://etherscan.io/tx/"),
        ("USDTBSC", "https://bscscan.com/tx/"),
        ("USDCMATIC", "https://polygonscan.com/tx/"),
        ("USDCSOL", "https://solscan.io/tx/"),
        ("USDCTON", "https://tonviewer.com/transaction/"),
        ("USDCARB", "https://arbiscan.io/tx/"),
    ],
)
def test_the_ticker_suffix_when_the_network_is_unknown(code, expected):
    assert currency(code, "SOMETHING-NEW").explorer_url("ab") == expected + "ab"


def test_nowpayments_template_comes_first_with_either_placeholder():
    assert (
        currency("BTC", "BTC", "https://blockchair.com/bitcoin/transaction/:hash").explorer_url(
            "x1"
        )
        == "https://blockchair.com/bitcoin/transaction/x1"
    )
    assert currency("SOL", "SOL", "https://e.example/{hash}/").explorer_url("x1") == (
        "https://e.example/x1/"
    )


def test_a_template_that_is_not_a_web_link_is_ignored_for_the_table():
    for template in ("javascript:alert(1)//:hash", "ftp://e.example/:hash", "  "):
        assert currency("ETH", "ETH", template).explorer_url("x") == "https://etherscan.io/tx/x"


def test_a_hash_cannot_break_out_of_the_link():
    link = currency("ETH", "ETH").explorer_url('a"b/c?d#e')
    assert link == "https://etherscan.io/tx/a%22b%2Fc%3Fd%23e"


def test_no_hash_no_link_and_an_unknown_network_no_link():
    assert currency("ETH", "ETH").explorer_url("") is None
    assert currency("ETH", "ETH").explorer_url("   ") is None
    assert currency("FOO", "FOO").explorer_url("abc") is None


def test_every_network_the_provider_lists_has_a_link_without_its_template():
    # The sandbox lists what NowPayments' full-currencies does; its explorer_link_hash is often
    # null, so the table must know every network on its own.
    networks = {c.network for c in catalogue.CURRENCIES}
    assert {"btc", "eth", "ltc", "trx", "bsc", "sol", "matic", "xrp"} <= networks
    for listed in catalogue.CURRENCIES:
        found = currency(listed.code.upper(), listed.network.upper()).explorer_url("h")
        assert found is not None, listed.code
        assert found.startswith("https://"), listed.code


@pytest.mark.django_db(transaction=True)
def test_synced_currencies_link_every_transaction(sandbox):
    currencies_sync()
    synced = list(Currency.objects.all())
    assert len(synced) >= 8
    for row in synced:
        listed = catalogue.crypto(row.code)
        link = row.explorer_url("h")
        assert link is not None, row.code
        if listed is not None and listed.explorer_link_hash:
            assert link == listed.explorer_link_hash.replace(":hash", "h"), row.code
    # Without NowPayments' template the table answers (the sandbox gives none for SOL).
    sol = Currency.objects.get(code="SOL")
    assert sol.explorer_tx_url == ""
    assert sol.explorer_url("h") == "https://solscan.io/tx/h"
