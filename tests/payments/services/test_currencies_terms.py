"""Each coin's terms from the sandbox over HTTP: deposit minimums, payout fees and minimums,
memo names; one coin failing never blocks the others; the operator's edits."""

from __future__ import annotations

from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command

from payments.errors import CurrencyTermsFromProvider, InvalidAmount, ProviderRejected
from payments.models import Currency
from payments.services import currencies
from payments.services.currencies import currencies_sync
from payments.services.providers.nowpayments.gateway import get_provider
from payments.services.providers.nowpayments.terms import coin_terms
from payments.services.withdrawals import withdrawal_quote

pytestmark = pytest.mark.django_db(transaction=True)


def coin(code: str) -> Currency:
    return Currency.objects.get(code=code)


# --- the provider client's new endpoints ------------------------------------------------------


def test_the_client_reads_the_payout_fee_and_minimum(sandbox):
    provider = get_provider()
    fee = provider.get_payout_fee("USDTTRC20", Decimal("500"))
    assert (fee.currency, fee.fee) == ("usdttrc20", Decimal("1.32766"))
    minimum = provider.get_payout_min_amount("BTC")
    assert (minimum.currency, minimum.min_amount) == ("btc", Decimal("0.00017"))
    counts = sandbox.control.requests()
    assert counts["GET /v1/payout/fee"] == 1
    assert counts["GET /v1/payout-withdrawal/min-amount/{coin}"] == 1
    assert "POST /v1/auth" not in counts, "API key only: no JWT for these"


def test_the_client_turns_an_unknown_coin_into_a_rejection(sandbox):
    with pytest.raises(ProviderRejected) as refused:
        get_provider().get_payout_min_amount("nope")
    assert (refused.value.http_status, refused.value.provider_code) == (
        400,
        "INVALID_REQUEST_PARAMS",
    )


def test_coin_terms_in_usd_rounded_up_to_the_cent(sandbox):
    terms = coin_terms(get_provider(), "BTC", margin=Decimal("1.05"), payouts=True)
    # Deposit: 0.00016667 BTC is 10.0002 USD; with the 5 % margin 10.50021, up to 10.51.
    assert terms.min_amount_usd == Decimal("10.51")
    assert (terms.withdrawal_fee_usd, terms.withdrawal_min_usd) == (
        Decimal("1.50"),
        Decimal("10.20"),
    )
    assert terms.failures == ()
    # A fee worth half a cent is a cent (fees round up), not nothing.
    xlm = coin_terms(get_provider(), "XLM", margin=Decimal("1"), payouts=True)
    assert (xlm.withdrawal_fee_usd, xlm.withdrawal_min_usd) == (Decimal("0.01"), Decimal("2.00"))


# --- the sync ---------------------------------------------------------------------------------


def test_sync_sets_deposit_minimums_with_the_margin(sandbox, settings):
    currencies_sync()
    assert coin("BTC").min_amount_usd == Decimal("10.51")
    assert coin("USDTTRC20").min_amount_usd == Decimal("2.10")
    assert coin("XRP").min_amount_usd == Decimal("1.05")
    settings.PAYMENTS_MIN_AMOUNT_MARGIN = "1"
    currencies_sync()
    assert coin("BTC").min_amount_usd == Decimal("10.01")
    assert coin("USDTTRC20").min_amount_usd == Decimal("2.00")


def test_sync_asks_once_per_coin_and_endpoint_with_the_api_key_alone(sandbox):
    sandbox.control.reset_requests()
    result = currencies_sync()
    counts = sandbox.control.requests()
    coins = len(result.created)
    assert coins >= 10
    for pattern in (
        "GET /v1/min-amount",
        "GET /v1/payout-withdrawal/min-amount/{coin}",
        "GET /v1/payout/fee",
        "GET /v1/estimate",
    ):
        assert counts[pattern] == coins, pattern
    assert "POST /v1/auth" not in counts


def test_new_currencies_take_nowpayments_payout_terms(sandbox):
    result = currencies_sync()
    assert result.failed == {}
    expected = {
        "BTC": (Decimal("1.50"), Decimal("10.20")),
        "ETH": (Decimal("1.20"), Decimal("6.00")),
        "USDTTRC20": (Decimal("1.33"), Decimal("3.00")),
        "TRX": (Decimal("0.14"), Decimal("1.20")),
        "XRP": (Decimal("0.15"), Decimal("2.50")),
        "XLM": (Decimal("0.01"), Decimal("2.00")),
    }
    for code, terms in expected.items():
        currency = coin(code)
        assert currency.withdrawal_fee_from_provider, code
        assert (currency.withdrawal_fee_usd, currency.withdrawal_min_usd) == terms, code
        assert currency.withdrawal_synced_at == currency.synced_at
    # The quote then prices a BTC withdrawal as NowPayments does: nothing under 12.20 USD.
    quote = withdrawal_quote(currency_code="BTC", amount_usd=Decimal("20.00"))
    assert (quote.network_fee_usd, quote.minimum_usd) == (Decimal("1.50"), Decimal("12.20"))


def test_sync_names_the_memo_of_memo_coins(sandbox):
    currencies_sync()
    assert (coin("XRP").extra_id_required, coin("XRP").extra_id_name) == (True, "Destination tag")
    assert (coin("XLM").extra_id_required, coin("XLM").extra_id_name) == (True, "Memo")
    assert (coin("BTC").extra_id_required, coin("BTC").extra_id_name) == (False, "")


def test_an_operators_terms_are_kept_and_not_even_asked_for(sandbox):
    currencies_sync()
    btc = coin("BTC")
    currencies.currency_update(currency_id=btc.pk, changes={"withdrawal_fee_from_provider": False})
    currencies.currency_update(
        currency_id=btc.pk,
        changes={"withdrawal_fee_usd": Decimal("4.00"), "withdrawal_min_usd": Decimal("25.00")},
    )
    synced_before = coin("BTC").withdrawal_synced_at
    sandbox.control.reset_requests()
    result = currencies_sync()
    btc = coin("BTC")
    assert (btc.withdrawal_fee_usd, btc.withdrawal_min_usd) == (Decimal("4.00"), Decimal("25.00"))
    assert btc.withdrawal_synced_at == synced_before
    assert btc.min_amount_usd == Decimal("10.51"), "the deposit minimum is NowPayments' still"
    counts = sandbox.control.requests()
    assert counts["GET /v1/payout/fee"] == len(result.updated) - 1


def test_one_coin_failing_its_payout_terms_does_not_stop_the_others(sandbox, caplog):
    currencies_sync()
    Currency.objects.filter(code="BTC").update(withdrawal_fee_usd=Decimal("9.99"))
    Currency.objects.exclude(code="BTC").update(withdrawal_min_usd=Decimal("77.00"))
    btc_synced = coin("BTC").withdrawal_synced_at
    sandbox.control.set_fault(
        "malformed_json", count=1, path="/v1/payout-withdrawal/min-amount/btc"
    )
    result = currencies_sync()
    assert result.failed == {"BTC": "payout terms: provider_unavailable"}
    assert "BTC" in result.updated
    btc = coin("BTC")
    assert (btc.withdrawal_fee_usd, btc.withdrawal_synced_at) == (Decimal("9.99"), btc_synced)
    assert btc.min_amount_usd == Decimal("10.51"), "its deposit minimum was still read"
    assert not Currency.objects.exclude(code="BTC").filter(withdrawal_min_usd=Decimal("77.00"))
    assert coin("ETH").withdrawal_synced_at > btc_synced
    warnings = [r for r in caplog.records if r.levelname == "WARNING" and "BTC" in r.message]
    assert len(warnings) == 1


def test_one_coin_failing_its_deposit_minimum_keeps_its_old_one(sandbox):
    currencies_sync()
    Currency.objects.update(min_amount_usd=Decimal("77.00"))
    sandbox.control.set_fault("malformed_json", count=1, path="/v1/min-amount")
    result = currencies_sync()
    assert list(result.failed.values()) == ["deposit minimum: provider_unavailable"]
    [failed] = result.failed
    assert coin(failed).min_amount_usd == Decimal("77.00")
    others = Currency.objects.exclude(code=failed).filter(provider_enabled=True)
    assert others.count() == len(result.updated) - 1
    assert not others.filter(min_amount_usd=Decimal("77.00")).exists()


def test_a_new_coin_whose_terms_fail_is_still_created(sandbox):
    sandbox.control.set_fault("malformed_json", count=1, path="/v1/payout/fee")
    result = currencies_sync()
    [failed] = result.failed
    assert failed in result.created
    currency = coin(failed)
    assert currency.withdrawal_fee_from_provider
    assert (currency.withdrawal_fee_usd, currency.withdrawal_synced_at) == (None, None)


def test_the_command_reports_the_coins_not_refreshed(sandbox):
    sandbox.control.set_fault(
        "malformed_json", count=1, path="/v1/payout-withdrawal/min-amount/xrp"
    )
    out = StringIO()
    call_command("sync_currencies", stdout=out)
    text = out.getvalue()
    assert "1 with terms not refreshed" in text
    assert "XRP: not refreshed, stored values kept (payout terms: provider_unavailable)" in text


def test_a_bad_margin_setting_stops_the_sync_before_any_call(sandbox, settings):
    from payments.errors import ConfigurationError

    settings.PAYMENTS_MIN_AMOUNT_MARGIN = "0.9"
    sandbox.control.reset_requests()
    with pytest.raises(ConfigurationError, match="PAYMENTS_MIN_AMOUNT_MARGIN"):
        currencies_sync()
    assert sandbox.control.requests() == {}
    assert not Currency.objects.exists()


# --- the operator's edits ---------------------------------------------------------------------


def test_terms_from_nowpayments_cannot_be_edited_until_switched_off(sandbox):
    currencies_sync()
    btc = coin("BTC")
    with pytest.raises(CurrencyTermsFromProvider) as refused:
        currencies.currency_update(
            currency_id=btc.pk, changes={"withdrawal_fee_usd": Decimal("3.00")}
        )
    assert refused.value.code == "currency_terms_from_provider"
    with pytest.raises(CurrencyTermsFromProvider):  # nor switched on and edited at once
        currencies.currency_update(
            currency_id=coin("ETH").pk,
            changes={"withdrawal_fee_usd": Decimal("3.00"), "is_active": False},
        )
    assert coin("BTC").withdrawal_fee_usd == Decimal("1.50")
    currencies.currency_update(
        currency_id=btc.pk,
        changes={"withdrawal_fee_from_provider": False, "withdrawal_fee_usd": Decimal("3.00")},
    )
    assert coin("BTC").withdrawal_fee_usd == Decimal("3.00")


@pytest.mark.parametrize(
    "changes",
    [
        {"withdrawal_fee_usd": Decimal("-1.00")},
        {"withdrawal_fee_usd": Decimal("1.234")},
        {"withdrawal_min_usd": None},
        {"withdrawal_min_usd": "5"},
        {"withdrawal_min_usd": Decimal("1E+12")},
    ],
)
def test_bad_terms_are_refused(changes):
    currency = Currency.objects.create(code="LTC", name="Litecoin", token="LTC", network="LTC")
    with pytest.raises(InvalidAmount):
        currencies.currency_update(currency_id=currency.pk, changes=changes)
    currency.refresh_from_db()
    assert (currency.withdrawal_fee_usd, currency.withdrawal_min_usd) == (None, Decimal("0"))


def test_catalogue_fields_are_not_an_operators_to_edit():
    currency = Currency.objects.create(code="LTC", name="Litecoin", token="LTC", network="LTC")
    with pytest.raises(ValueError, match="code"):
        currencies.currency_update(currency_id=currency.pk, changes={"code": "BTC"})


def test_an_empty_fee_falls_back_to_the_setting():
    currency = Currency.objects.create(
        code="LTC", name="Litecoin", token="LTC", network="LTC", withdrawal_fee_usd=Decimal("2")
    )
    currencies.currency_update(currency_id=currency.pk, changes={"withdrawal_fee_usd": None})
    assert coin("LTC").withdrawal_fee_usd is None


def test_follow_provider_terms_switches_only_untouched_currencies():
    Currency.objects.create(code="AAA", name="A", token="A", network="A")
    Currency.objects.create(
        code="BBB", name="B", token="B", network="B", withdrawal_fee_usd=Decimal("1.00")
    )
    Currency.objects.create(
        code="CCC", name="C", token="C", network="C", withdrawal_min_usd=Decimal("5.00")
    )
    assert currencies.currencies_follow_provider_terms() == ["AAA"]
    assert list(
        Currency.objects.filter(withdrawal_fee_from_provider=True).values_list("code", flat=True)
    ) == ["AAA"]


def test_demo_setup_gives_demo_currencies_nowpayments_terms(sandbox, settings, tmp_path):
    settings.DEBUG = True
    # A demo database from before per-currency terms: rows nobody set terms on.
    Currency.objects.create(code="BTC", name="Bitcoin", token="BTC", network="BTC")
    call_command("demo_setup", credentials=tmp_path / "c.json", wait=5, stdout=StringIO())
    btc = coin("BTC")
    assert (btc.withdrawal_fee_usd, btc.withdrawal_min_usd) == (Decimal("1.50"), Decimal("10.20"))
    assert btc.min_amount_usd == Decimal("10.51")
    assert coin("USDTTRC20").withdrawal_fee_usd == Decimal("1.33")
