"""Withdrawal fees, minimums and the memo rule: the quote, and withdrawal_create / the ORM."""

from __future__ import annotations

from decimal import Decimal

import pytest

from payments import ledger
from payments.errors import (
    AmountBelowMinimum,
    ConfigurationError,
    CurrencyUnavailable,
    InvalidAddress,
    InvalidAmount,
)
from payments.models import Transaction, UserBalance, WithdrawalRequest
from payments.services import withdrawals
from payments.services.withdrawals import (
    ExtraIdRequired,
    FeesExceedAmount,
    WithdrawalQuote,
    withdrawal_fees,
    withdrawal_quote,
)
from tests.factories import CurrencyFactory, UserFactory

pytestmark = pytest.mark.django_db

TRON = "TQn9Y2khEsLJW1ChVWFMSMeRDow5KcbLSE"
BTC_ADDRESS = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"
XRP_ADDRESS = "rPEPPER7kfTD9w2To4CQk6UCfuHM9c6GDY"


@pytest.fixture(autouse=True)
def _fee_settings(settings):
    settings.PAYMENTS_WITHDRAWAL_NETWORK_FEE_USD = "1.00"
    settings.PAYMENTS_WITHDRAWAL_SERVICE_FEE_USD = "0.50"
    settings.PAYMENTS_WITHDRAWAL_SERVICE_FEE_PERCENT = "0"


@pytest.fixture
def btc():
    """As the currency sync leaves BTC: NowPayments pays it out from about $10."""
    return CurrencyFactory(
        code="BTC",
        name="Bitcoin",
        token="BTC",
        network="BTC",
        decimal_places=8,
        withdrawal_fee_usd=Decimal("1.50"),
        withdrawal_min_usd=Decimal("10.20"),
        withdrawal_fee_from_provider=True,
    )


@pytest.fixture
def usdt():
    return CurrencyFactory(
        code="USDTTRC20",
        withdrawal_fee_usd=Decimal("1.33"),
        withdrawal_min_usd=Decimal("3.00"),
    )


@pytest.fixture
def xrp():
    return CurrencyFactory(
        code="XRP",
        name="Ripple",
        token="XRP",
        network="XRP",
        extra_id_required=True,
        extra_id_name="Destination tag",
        withdrawal_fee_usd=Decimal("0.15"),
        withdrawal_min_usd=Decimal("2.50"),
    )


@pytest.fixture
def funded_user():
    user = UserFactory()
    ledger.post(user_id=user.pk, kind="deposit", amount_usd=Decimal("100.00"), idempotency_key="f")
    return user


def balance(user) -> Decimal:
    return UserBalance.objects.get(user=user).balance_usd


# --- the quote --------------------------------------------------------------------------------


def test_a_btc_quote_uses_its_own_network_fee_and_minimum(btc):
    quote = withdrawal_quote(currency_code="btc", amount_usd=Decimal("50.00"))
    assert quote == WithdrawalQuote(
        currency_code="BTC",
        amount_usd=Decimal("50.00"),
        network_fee_usd=Decimal("1.50"),
        service_fee_usd=Decimal("0.50"),
        total_fee_usd=Decimal("2.00"),
        final_amount_usd=Decimal("48.00"),
        minimum_usd=Decimal("12.20"),
        payout_minimum_usd=Decimal("10.20"),
        extra_id_required=False,
        extra_id_name="",
    )


def test_quotes_differ_per_currency(btc, usdt, xrp):
    figures = {
        code: withdrawal_quote(currency_code=code, amount_usd=Decimal("20.00"))
        for code in ("BTC", "USDTTRC20", "XRP")
    }
    assert {code: q.network_fee_usd for code, q in figures.items()} == {
        "BTC": Decimal("1.50"),
        "USDTTRC20": Decimal("1.33"),
        "XRP": Decimal("0.15"),
    }
    assert figures["USDTTRC20"].final_amount_usd == Decimal("18.17")
    assert figures["USDTTRC20"].minimum_usd == Decimal("4.83")
    assert figures["XRP"].final_amount_usd == Decimal("19.35")
    assert (figures["XRP"].extra_id_required, figures["XRP"].extra_id_name) == (
        True,
        "Destination tag",
    )


def test_a_currency_without_its_own_fee_pays_the_setting(settings):
    CurrencyFactory(code="LTC", token="LTC", network="LTC", withdrawal_fee_usd=None)
    settings.PAYMENTS_WITHDRAWAL_NETWORK_FEE_USD = "0.75"
    quote = withdrawal_quote(currency_code="LTC", amount_usd=Decimal("2.00"))
    assert (quote.network_fee_usd, quote.service_fee_usd) == (Decimal("0.75"), Decimal("0.50"))
    assert quote.final_amount_usd == Decimal("0.75")
    assert quote.minimum_usd == Decimal("1.26")  # a cent of payout at least
    assert withdrawal_fees() == withdrawals.WithdrawalFees(Decimal("0.75"), Decimal("0.50"))


def test_a_zero_fee_of_its_own_is_not_the_fallback():
    CurrencyFactory(code="TRX", token="TRX", network="TRX", withdrawal_fee_usd=Decimal("0.00"))
    quote = withdrawal_quote(currency_code="TRX", amount_usd=Decimal("2.00"))
    assert quote.network_fee_usd == Decimal("0.00")


def test_the_service_fee_percentage_rounds_up_and_the_minimum_accounts_for_it(settings, btc):
    settings.PAYMENTS_WITHDRAWAL_SERVICE_FEE_PERCENT = "1.5"
    quote = withdrawal_quote(currency_code="BTC", amount_usd=Decimal("33.33"))
    # 1.5 % of 33.33 is 0.49995: 0.50 rounded up, plus the fixed 0.50.
    assert quote.service_fee_usd == Decimal("1.00")
    assert quote.final_amount_usd == Decimal("30.83")
    minimum = quote.minimum_usd
    smallest = withdrawal_quote(currency_code="BTC", amount_usd=minimum)
    assert smallest.final_amount_usd >= Decimal("10.20")
    with pytest.raises(AmountBelowMinimum):
        withdrawal_quote(currency_code="BTC", amount_usd=minimum - Decimal("0.01"))


def test_below_the_minimum_is_refused_with_the_minimum_named(btc):
    with pytest.raises(AmountBelowMinimum) as refused:
        withdrawal_quote(currency_code="BTC", amount_usd=Decimal("12.19"))
    assert refused.value.code == "amount_below_minimum"
    assert "12.20 USD" in refused.value.message
    assert "10.20 USD" in refused.value.message
    assert withdrawal_quote(currency_code="BTC", amount_usd=Decimal("12.20")).final_amount_usd == (
        Decimal("10.20")
    )


def test_fees_that_take_the_whole_amount_are_refused(btc):
    with pytest.raises(FeesExceedAmount) as refused:
        withdrawal_quote(currency_code="BTC", amount_usd=Decimal("2.00"))
    assert refused.value.code == "fees_exceed_amount"
    assert isinstance(refused.value, InvalidAmount)
    assert "12.20 USD" in refused.value.message


@pytest.mark.parametrize("amount", [Decimal("0"), Decimal("-5.00"), Decimal("10.001"), "20"])
def test_a_bad_amount_is_refused(btc, amount):
    with pytest.raises(InvalidAmount) as refused:
        withdrawal_quote(currency_code="BTC", amount_usd=amount)
    assert refused.value.code == "invalid_amount"


def test_an_unknown_or_switched_off_currency_is_unavailable():
    CurrencyFactory(code="ETH", token="ETH", network="ETH", is_active=False)
    for code in ("ETH", "NOPE", ""):
        with pytest.raises(CurrencyUnavailable) as refused:
            withdrawal_quote(currency_code=code, amount_usd=Decimal("20.00"))
        assert refused.value.code == "currency_unavailable"


@pytest.mark.parametrize("value", ["abc", "-1", "50", "100"])
def test_a_bad_percentage_setting_is_a_configuration_error(settings, btc, value):
    settings.PAYMENTS_WITHDRAWAL_SERVICE_FEE_PERCENT = value
    with pytest.raises(ConfigurationError, match="PAYMENTS_WITHDRAWAL_SERVICE_FEE_PERCENT"):
        withdrawal_quote(currency_code="BTC", amount_usd=Decimal("20.00"))


# --- withdrawal_create -----------------------------------------------------------------------


def test_create_without_fees_pays_the_quote(funded_user, btc):
    withdrawal = withdrawals.withdrawal_create(
        user_id=funded_user.pk,
        amount_usd=Decimal("50.00"),
        currency_id=btc.pk,
        wallet_address=BTC_ADDRESS,
    )
    withdrawal.refresh_from_db()
    quote = withdrawal_quote(currency_code="BTC", amount_usd=Decimal("50.00"))
    assert (withdrawal.network_fee_usd, withdrawal.service_fee_usd) == (
        quote.network_fee_usd,
        quote.service_fee_usd,
    )
    assert withdrawal.final_amount_usd == quote.final_amount_usd == Decimal("48.00")
    assert balance(funded_user) == Decimal("50.00")


def test_create_with_the_percentage_pays_it(settings, funded_user, btc):
    settings.PAYMENTS_WITHDRAWAL_SERVICE_FEE_PERCENT = "2"
    withdrawal = withdrawals.withdrawal_create(
        user_id=funded_user.pk,
        amount_usd=Decimal("40.00"),
        currency_id=btc.pk,
        wallet_address=BTC_ADDRESS,
    )
    assert withdrawal.service_fee_usd == Decimal("1.30")
    assert withdrawal.final_amount_usd == Decimal("37.20")


def test_create_keeps_fees_the_caller_gives(funded_user, btc):
    given = withdrawals.withdrawal_create(
        user_id=funded_user.pk,
        amount_usd=Decimal("20.00"),
        currency_id=btc.pk,
        wallet_address=BTC_ADDRESS,
        network_fee_usd=Decimal("3.00"),
        service_fee_usd=Decimal("0.00"),
    )
    assert (given.network_fee_usd, given.service_fee_usd) == (Decimal("3.00"), Decimal("0.00"))
    one = withdrawals.withdrawal_create(
        user_id=funded_user.pk,
        amount_usd=Decimal("20.00"),
        currency_id=btc.pk,
        wallet_address=BTC_ADDRESS,
        network_fee_usd=Decimal("2.00"),
    )
    assert (one.network_fee_usd, one.service_fee_usd) == (Decimal("2.00"), Decimal("0.00"))


@pytest.mark.parametrize(
    ("amount", "fees", "error"),
    [
        ("12.19", {}, AmountBelowMinimum),  # quoted fees 2.00: 10.19 would be paid out
        ("11.00", {"network_fee_usd": Decimal("0.81")}, AmountBelowMinimum),  # 10.19 paid
        ("2.00", {}, FeesExceedAmount),
    ],
)
def test_create_below_the_minimum_is_refused_and_writes_nothing(
    funded_user, btc, amount, fees, error
):
    with pytest.raises(error):
        withdrawals.withdrawal_create(
            user_id=funded_user.pk,
            amount_usd=Decimal(amount),
            currency_id=btc.pk,
            wallet_address=BTC_ADDRESS,
            **fees,
        )
    assert not WithdrawalRequest.objects.exists()
    assert balance(funded_user) == Decimal("100.00")
    assert Transaction.objects.filter(user=funded_user).count() == 1


def test_create_at_the_minimum_is_accepted(funded_user, btc):
    withdrawal = withdrawals.withdrawal_create(
        user_id=funded_user.pk,
        amount_usd=Decimal("12.20"),
        currency_id=btc.pk,
        wallet_address=BTC_ADDRESS,
    )
    assert withdrawal.final_amount_usd == Decimal("10.20")


def test_a_memo_coin_without_its_tag_is_refused(funded_user, xrp):
    for extra_id in ("", "   "):
        with pytest.raises(ExtraIdRequired) as refused:
            withdrawals.withdrawal_create(
                user_id=funded_user.pk,
                amount_usd=Decimal("20.00"),
                currency_id=xrp.pk,
                wallet_address=XRP_ADDRESS,
                wallet_extra_id=extra_id,
            )
        assert refused.value.code == "extra_id_required"
        assert isinstance(refused.value, InvalidAddress)
        assert refused.value.message.startswith("XRP withdrawals need a destination tag")
    assert not WithdrawalRequest.objects.exists()
    assert balance(funded_user) == Decimal("100.00")
    withdrawal = withdrawals.withdrawal_create(
        user_id=funded_user.pk,
        amount_usd=Decimal("20.00"),
        currency_id=xrp.pk,
        wallet_address=XRP_ADDRESS,
        wallet_extra_id=" 123456 ",
    )
    withdrawal.refresh_from_db()
    assert withdrawal.wallet_extra_id == "123456"


def test_a_memo_coin_without_a_name_for_it_says_memo(funded_user):
    xlm = CurrencyFactory(code="XLM", token="XLM", network="XLM", extra_id_required=True)
    with pytest.raises(ExtraIdRequired, match="XLM withdrawals need a memo"):
        withdrawals.withdrawal_create(
            user_id=funded_user.pk,
            amount_usd=Decimal("20.00"),
            currency_id=xlm.pk,
            wallet_address="GABC",
        )


# --- the seed's ORM create --------------------------------------------------------------------


def test_the_seed_orm_create_keeps_its_explicit_fees(funded_user, usdt):
    withdrawal = WithdrawalRequest.objects.create(
        user=funded_user,
        amount_usd=Decimal("50.00"),
        currency=usdt,
        wallet_address=TRON,
        network_fee_usd=Decimal("1.00"),
        service_fee_usd=Decimal("0.50"),
    )
    assert withdrawal.final_amount_usd == Decimal("48.50")
    withdrawal.refresh_from_db()
    assert (withdrawal.network_fee_usd, withdrawal.service_fee_usd) == (
        Decimal("1.00"),
        Decimal("0.50"),
    )


def test_the_orm_create_refuses_a_memo_coin_without_its_tag(funded_user, xrp):
    with pytest.raises(ExtraIdRequired, match="XRP withdrawals need a destination tag"):
        WithdrawalRequest.objects.create(
            user=funded_user,
            amount_usd=Decimal("20.00"),
            currency=xrp,
            wallet_address=XRP_ADDRESS,
            network_fee_usd=Decimal("1.00"),
            service_fee_usd=Decimal("0.50"),
        )
    assert not WithdrawalRequest.objects.exists()
    assert balance(funded_user) == Decimal("100.00")
    tagged = WithdrawalRequest.objects.create(
        user=funded_user,
        amount_usd=Decimal("20.00"),
        currency=xrp,
        wallet_address=XRP_ADDRESS,
        wallet_extra_id="42",
        network_fee_usd=Decimal("1.00"),
        service_fee_usd=Decimal("0.50"),
    )
    assert tagged.status == "pending"


def test_the_orm_create_refuses_a_payout_under_the_minimum(funded_user, btc):
    with pytest.raises(AmountBelowMinimum, match=r"NowPayments pays out BTC from 10\.20 USD"):
        WithdrawalRequest.objects.create(
            user=funded_user,
            amount_usd=Decimal("5.00"),
            currency=btc,
            wallet_address=BTC_ADDRESS,
            network_fee_usd=Decimal("1.00"),
            service_fee_usd=Decimal("0.50"),
        )
    assert not WithdrawalRequest.objects.exists()
    assert balance(funded_user) == Decimal("100.00")
