"""The currencies admin (payments/admin/currencies.py): withdrawal terms are the operator's to
edit unless they follow NowPayments, bad input changes nothing, edits go through the service."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission

from payments.models import Currency
from tests.factories import CurrencyFactory, UserFactory

pytestmark = pytest.mark.django_db

URL = "/admin/payments/currency/"


@pytest.fixture
def operator(client):
    user = UserFactory(username="olga", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_currency", "change_currency"])
    )
    client.force_login(user)
    return client


@pytest.fixture
def by_hand():
    return CurrencyFactory(
        code="USDTTRC20", withdrawal_fee_usd=Decimal("1.00"), withdrawal_min_usd=Decimal("2.00")
    )


@pytest.fixture
def from_provider():
    return CurrencyFactory(
        code="BTC",
        token="BTC",
        network="BTC",
        withdrawal_fee_from_provider=True,
        withdrawal_fee_usd=Decimal("1.50"),
        withdrawal_min_usd=Decimal("10.20"),
    )


def form_data(currency: Currency, **changes: str) -> dict[str, str]:
    data = {
        "is_active": "on" if currency.is_active else "",
        "sort_order": str(currency.sort_order),
        "withdrawal_fee_from_provider": "on" if currency.withdrawal_fee_from_provider else "",
        "withdrawal_fee_usd": ""
        if currency.withdrawal_fee_usd is None
        else str(currency.withdrawal_fee_usd),
        "withdrawal_min_usd": str(currency.withdrawal_min_usd),
        "_save": "Save",
    }
    data.update(changes)
    return {key: value for key, value in data.items() if value != ""}


def terms(currency: Currency) -> tuple[object, ...]:
    currency.refresh_from_db()
    return (
        currency.withdrawal_fee_from_provider,
        currency.withdrawal_fee_usd,
        currency.withdrawal_min_usd,
    )


def test_terms_set_by_hand_are_edited_in_the_change_form(operator, by_hand):
    page = operator.get(f"{URL}{by_hand.pk}/change/").content.decode()
    assert 'name="withdrawal_fee_usd"' in page
    assert 'name="withdrawal_min_usd"' in page
    assert "PAYMENTS_WITHDRAWAL_NETWORK_FEE_USD" in page
    assert 'name="code"' not in page, "catalogue fields come from NowPayments"
    response = operator.post(
        f"{URL}{by_hand.pk}/change/",
        form_data(by_hand, withdrawal_fee_usd="1.75", withdrawal_min_usd="5.00"),
    )
    assert response.status_code == 302
    assert terms(by_hand) == (False, Decimal("1.75"), Decimal("5.00"))
    [entry] = LogEntry.objects.filter(object_id=str(by_hand.pk))
    assert "Withdrawal fee usd" in entry.get_change_message()


def test_an_empty_fee_means_the_setting(operator, by_hand):
    data = form_data(by_hand)
    data.pop("withdrawal_fee_usd")
    assert operator.post(f"{URL}{by_hand.pk}/change/", data).status_code == 302
    assert terms(by_hand) == (False, None, Decimal("2.00"))


def test_terms_from_nowpayments_are_read_only_with_a_note(operator, from_provider):
    page = operator.get(f"{URL}{from_provider.pk}/change/").content.decode()
    assert 'name="withdrawal_fee_usd"' not in page
    assert 'name="withdrawal_min_usd"' not in page
    assert "come from NowPayments" in page
    assert "1.50" in page
    assert "10.20" in page
    response = operator.post(
        f"{URL}{from_provider.pk}/change/",
        form_data(from_provider, withdrawal_fee_usd="0.01", withdrawal_min_usd="0.00"),
    )
    assert response.status_code == 302, "the read-only values in the post are ignored"
    assert terms(from_provider) == (True, Decimal("1.50"), Decimal("10.20"))


def test_switching_to_nowpayments_and_editing_at_once_is_refused(operator, by_hand):
    response = operator.post(
        f"{URL}{by_hand.pk}/change/",
        form_data(by_hand, withdrawal_fee_from_provider="on", withdrawal_fee_usd="9.00"),
    )
    assert response.status_code == 200
    assert "come from NowPayments at each sync" in response.content.decode()
    assert terms(by_hand) == (False, Decimal("1.00"), Decimal("2.00"))
    response = operator.post(
        f"{URL}{by_hand.pk}/change/", form_data(by_hand, withdrawal_fee_from_provider="on")
    )
    assert response.status_code == 302
    assert terms(by_hand) == (True, Decimal("1.00"), Decimal("2.00"))


@pytest.mark.parametrize(
    "bad",
    [
        {"withdrawal_fee_usd": "-1.00"},
        {"withdrawal_fee_usd": "abc"},
        {"withdrawal_fee_usd": "1.234"},
        {"withdrawal_min_usd": "-0.01"},
        {"withdrawal_min_usd": "99999999999999"},
        {"sort_order": "x"},
    ],
)
def test_bad_input_gets_a_message_and_changes_nothing(operator, by_hand, bad):
    response = operator.post(f"{URL}{by_hand.pk}/change/", form_data(by_hand, **bad))
    assert response.status_code == 200
    assert "errornote" in response.content.decode()
    assert terms(by_hand) == (False, Decimal("1.00"), Decimal("2.00"))
    assert not LogEntry.objects.exists()


def test_currencies_are_neither_added_nor_deleted_here(operator, by_hand):
    assert operator.get(f"{URL}add/").status_code == 403
    assert operator.post(f"{URL}{by_hand.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Currency.objects.filter(pk=by_hand.pk).exists()


def test_the_list_shows_the_terms(operator, by_hand, from_provider):
    page = operator.get(URL).content.decode()
    assert "10.20" in page
    assert "2.00" in page
