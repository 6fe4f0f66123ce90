"""The withdrawal pages: the form, its fee quote, the confirmation (once), the request's page
and its cancel; every refusal a form error with nothing held."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from payments.models import Transaction, UserBalance, WithdrawalRequest
from tests.factories import CurrencyFactory
from tests.payments.pages.conftest import TRON_ADDRESS, fund
from tests.payments.pages.html import Page

pytestmark = pytest.mark.django_db

FORM = {"amount_usd": "30.00", "currency": "USDTTRC20", "wallet_address": TRON_ADDRESS}


@pytest.fixture(autouse=True)
def _fees(settings: Any) -> None:
    settings.PAYMENTS_WITHDRAWAL_NETWORK_FEE_USD = "1.00"
    settings.PAYMENTS_WITHDRAWAL_SERVICE_FEE_USD = "0.50"
    settings.PAYMENTS_WITHDRAWAL_SERVICE_FEE_PERCENT = "0"


@pytest.fixture
def funded(owner: Any, trx: Any) -> Any:
    fund(owner, "50.00")
    return owner


def balance(user: Any) -> Decimal:
    return UserBalance.objects.get(user=user).balance_usd


def review(client: Client, **changes: str) -> Any:
    return client.post(reverse("create_withdrawal"), {**FORM, "action": "review", **changes})


def hidden_fields(page: Page) -> dict[str, str]:
    return {
        e.attrs["name"]: e.attrs.get("value", "")
        for e in page.elements
        if e.tag == "input" and e.attrs.get("type") == "hidden"
    }


def confirm(client: Client, quote: Page, **changes: str) -> Any:
    data = {**hidden_fields(quote), "action": "confirm", **changes}
    return client.post(reverse("create_withdrawal"), data)


def test_the_form_has_labelled_fields_and_shows_the_balance(
    funded: Any, owner_client: Client
) -> None:
    page = Page(owner_client.get(reverse("create_withdrawal")))
    for name in ("amount_usd", "currency", "wallet_address", "wallet_extra_id"):
        assert page[f"id_{name}"].attrs["name"] == name
    assert page.controls_without_label() == []
    assert page.text("withdraw-balance") == "$50.00"
    assert page["withdraw-review"].attrs["value"] == "review"


def test_quote_confirm_and_cancel(funded: Any, owner_client: Client) -> None:
    quote = Page(review(owner_client))
    assert quote.text("quote-amount") == "$30.00"
    assert quote.text("quote-network-fee") == "$1.00"
    assert quote.text("quote-service-fee") == "$0.50"
    assert quote.text("quote-total-fee") == "$1.50"
    assert quote.text("quote-final") == "$28.50"
    assert {"withdraw-confirm", "withdraw-back"} <= {e.attrs.get("id") for e in quote.elements}
    # A quote holds nothing.
    assert not WithdrawalRequest.objects.exists()
    assert balance(funded) == Decimal("50.00")

    created = confirm(owner_client, quote)
    withdrawal = WithdrawalRequest.objects.get()
    assert created.status_code == 302
    assert created["Location"] == reverse(
        "withdrawal_detail", kwargs={"withdrawal_id": withdrawal.pk}
    )
    assert (withdrawal.amount_usd, withdrawal.total_fee_usd) == (Decimal("30.00"), Decimal("1.50"))
    assert withdrawal.wallet_address == TRON_ADDRESS
    assert balance(funded) == Decimal("20.00")

    page = Page(owner_client.get(created["Location"]))
    assert "requested" in page.text("messages")
    successes = [e for e in page.elements if e.tag == "li" and e.attrs.get("class") == "success"]
    assert len(successes) == 1
    assert "requested" in successes[0].text
    assert page["withdrawal-status"].attrs["data-status"] == "pending"
    assert page.text("withdrawal-amount") == "$30.00"
    assert page.text("withdrawal-final") == "$28.50"
    assert page.text("withdrawal-fee").startswith("$1.50")
    assert "withdrawal-cancel" in page

    cancel_url = reverse("withdrawal_cancel", kwargs={"withdrawal_id": withdrawal.pk})
    cancelled = owner_client.post(cancel_url)
    assert cancelled.status_code == 302
    page = Page(owner_client.get(cancelled["Location"]))
    successes = [e for e in page.elements if e.tag == "li" and e.attrs.get("class") == "success"]
    assert len(successes) == 1
    assert "cancelled" in successes[0].text
    assert page["withdrawal-status"].attrs["data-status"] == "cancelled"
    assert "withdrawal-cancel" not in page
    assert balance(funded) == Decimal("50.00")

    # Cancelling again says why not, and refunds nothing twice.
    again = Page(owner_client.post(cancel_url, follow=True))
    errors = [e for e in again.elements if e.tag == "li" and e.attrs.get("class") == "error"]
    assert len(errors) == 1
    assert "already cancelled" in errors[0].text
    assert balance(funded) == Decimal("50.00")
    assert Transaction.objects.filter(withdrawal_request=withdrawal).count() == 2


def test_a_quote_is_confirmed_once(funded: Any, owner_client: Client) -> None:
    quote = Page(review(owner_client, amount_usd="10.00"))
    assert confirm(owner_client, quote).status_code == 302
    # A second submit of the same confirmation (a double click, the back button) holds nothing.
    replay = confirm(owner_client, quote)
    assert replay.status_code == 200
    assert "already used" in Page(replay).text("quote-notice")
    assert WithdrawalRequest.objects.count() == 1
    assert balance(funded) == Decimal("40.00")


def test_changed_fees_are_quoted_again_before_anything_is_held(
    funded: Any, owner_client: Client, settings: Any
) -> None:
    quote = Page(review(owner_client))
    settings.PAYMENTS_WITHDRAWAL_SERVICE_FEE_USD = "0.75"
    again = confirm(owner_client, quote)
    assert again.status_code == 200
    page = Page(again)
    assert "fees have changed" in page.text("quote-notice")
    assert page.text("quote-final") == "$28.25"
    assert not WithdrawalRequest.objects.exists()
    assert confirm(owner_client, page).status_code == 302
    assert WithdrawalRequest.objects.get().service_fee_usd == Decimal("0.75")


def test_forged_figures_are_not_confirmed(funded: Any, owner_client: Client) -> None:
    quote = Page(review(owner_client))
    forged = confirm(owner_client, quote, quoted_final="30.00", quoted_fee="0.00")
    assert "fees have changed" in Page(forged).text("quote-notice")
    assert not WithdrawalRequest.objects.exists()


def test_back_keeps_what_was_entered(funded: Any, owner_client: Client) -> None:
    quote = Page(review(owner_client))
    back = Page(confirm(owner_client, quote, action="back"))
    assert back["id_amount_usd"].attrs["value"] == "30.00"
    assert back["id_wallet_address"].attrs["value"] == TRON_ADDRESS
    assert "form-error" not in back
    assert not WithdrawalRequest.objects.exists()


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"amount_usd": ""}, "required"),
        ({"amount_usd": "abc"}, "Enter an amount"),
        ({"amount_usd": "0"}, "greater than zero"),
        ({"amount_usd": "-1"}, "greater than zero"),
        ({"amount_usd": "1.001"}, "2 decimal places"),
        ({"amount_usd": "NaN"}, "Enter an amount"),
        ({"amount_usd": "1e30"}, "too large"),
        ({"amount_usd": "100.00"}, "does not cover"),  # more than the balance
        ({"amount_usd": "1.00"}, "does not cover the fees"),
        ({"amount_usd": "3.00"}, "smallest"),  # the payout would be under the minimum
        ({"currency": "NOPE"}, "Choose one of the currencies"),
        ({"currency": ""}, "required"),
        ({"wallet_address": ""}, "address"),
        ({"wallet_address": "x" * 300}, "at most 255"),
    ],
)
def test_bad_input_at_review_is_a_form_error_and_holds_nothing(
    funded: Any, owner_client: Client, changes: dict[str, str], says: str
) -> None:
    response = review(owner_client, **changes)
    assert response.status_code == 200
    page = Page(response)
    assert says in page.text("form-error")
    assert "quote-final" not in page
    assert not WithdrawalRequest.objects.exists()
    assert balance(funded) == Decimal("50.00")


def test_an_address_of_another_network_is_refused_at_confirmation(
    funded: Any, owner_client: Client
) -> None:
    quote = Page(review(owner_client, wallet_address="0x" + "ab" * 20))
    refused = confirm(owner_client, quote)
    assert refused.status_code == 200
    assert "not a valid" in Page(refused).text("form-error")
    assert not WithdrawalRequest.objects.exists()
    assert balance(funded) == Decimal("50.00")


def test_a_memo_is_required_where_the_network_needs_one(funded: Any, owner_client: Client) -> None:
    CurrencyFactory(
        code="XRP",
        token="XRP",
        network="XRP",
        extra_id_required=True,
        extra_id_name="Destination tag",
        withdrawal_fee_usd=Decimal("0.30"),
    )
    address = "r" + "A" * 30
    refused = Page(review(owner_client, currency="XRP", wallet_address=address))
    assert "destination tag" in refused.text("form-error")
    quote = Page(
        review(owner_client, currency="XRP", wallet_address=address, wallet_extra_id="12345")
    )
    assert quote.text("quote-extra-id") == "12345"
    assert confirm(owner_client, quote).status_code == 302
    assert WithdrawalRequest.objects.get().wallet_extra_id == "12345"


def test_withdrawals_from_the_form_are_rate_limited(
    funded: Any, owner_client: Client, settings: Any
) -> None:
    rates = {**settings.PAYMENTS_THROTTLE_RATES, "withdrawal_create": "1/min"}
    settings.PAYMENTS_THROTTLE_RATES = rates
    assert confirm(owner_client, Page(review(owner_client, amount_usd="10.00"))).status_code == 302
    refused = confirm(owner_client, Page(review(owner_client, amount_usd="10.00")))
    assert "Too many withdrawals" in Page(refused).text("form-error")
    assert WithdrawalRequest.objects.count() == 1


def test_confirmation_checks_csrf(funded: Any) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(funded)
    response = client.post(reverse("create_withdrawal"), {**FORM, "action": "confirm"})
    assert response.status_code == 403
    assert not WithdrawalRequest.objects.exists()
