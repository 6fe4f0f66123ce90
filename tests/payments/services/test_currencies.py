"""Currency sync from the sandbox's full-currencies and merchant coins."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from payments.models import Currency
from payments.services.currencies import currencies_sync

pytestmark = pytest.mark.django_db(transaction=True)


def merchant_coins(sandbox) -> set[str]:
    import requests

    response = requests.get(
        sandbox.api_url + "/merchant/coins",
        headers={"x-api-key": "payments-test-key"},
        timeout=5,
    )
    return {code.upper() for code in response.json()["selectedCurrencies"]}


def test_sync_loads_the_merchants_enabled_coins(sandbox):
    result = currencies_sync()
    codes = set(Currency.objects.values_list("code", flat=True))
    assert codes == merchant_coins(sandbox)
    assert set(result.created) == codes
    usdt = Currency.objects.get(code="USDTTRC20")
    assert (usdt.token, usdt.network, usdt.display_name) == ("USDT", "TRC20", "USDT (TRC20)")
    assert usdt.decimal_places == 6
    assert usdt.address_regex
    assert usdt.is_active
    assert usdt.provider_enabled
    btc = Currency.objects.get(code="BTC")
    assert btc.display_name == "BTC"
    assert btc.explorer_url("abc") == "https://blockchair.com/bitcoin/transaction/abc"
    assert Currency.objects.get(code="XRP").extra_id_required


def test_sync_never_switches_on_a_currency_an_operator_switched_off(sandbox):
    currencies_sync()
    Currency.objects.filter(code="BTC").update(is_active=False)
    result = currencies_sync()
    btc = Currency.objects.get(code="BTC")
    assert not btc.is_active
    assert "BTC" in result.kept_off
    assert not Currency.objects.available().filter(code="BTC").exists()


def test_a_currency_no_longer_offered_is_marked_but_kept(sandbox):
    Currency.objects.create(code="OLDCOIN", name="Old", token="OLD", network="OLD")
    result = currencies_sync()
    old = Currency.objects.get(code="OLDCOIN")
    assert not old.provider_enabled
    assert old.is_active, "the operator's switch is theirs"
    assert result.withdrawn == ["OLDCOIN"]
    assert not Currency.objects.available().filter(code="OLDCOIN").exists()


def test_sync_is_idempotent(sandbox):
    currencies_sync()
    before = list(Currency.objects.order_by("code").values_list("code", "name", "network"))
    result = currencies_sync()
    assert result.created == []
    assert list(Currency.objects.order_by("code").values_list("code", "name", "network")) == before


def test_the_command_prints_a_summary(sandbox):
    out = StringIO()
    call_command("sync_currencies", stdout=out)
    assert "Currencies synced:" in out.getvalue()
    assert "created" in out.getvalue()


def test_the_command_fails_with_a_sentence_when_nowpayments_is_down(sandbox):
    sandbox.control.set_fault("http_500", count=10, path="/v1/full-currencies")
    with pytest.raises(CommandError, match="Currencies were not synced"):
        call_command("sync_currencies", stdout=StringIO())
    assert not Currency.objects.exists()


def test_the_command_fails_with_a_sentence_without_an_api_key(sandbox, settings):
    settings.NOWPAYMENTS_API_KEY = ""
    with pytest.raises(CommandError, match="NOWPAYMENTS_API_KEY"):
        call_command("sync_currencies", stdout=StringIO())
