"""The deposit form and the payment page against the NowPayments sandbox: created at once with
its address, bad input refused with a form error (nothing created, nothing sent), the live
status reflecting a completed payment and the credited balance."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from payments.models import Payment, Transaction
from payments.pages.deposits import PROVIDER_DOWN
from payments.pages.formatting import crypto
from payments.services import deposits as service
from tests.factories import CurrencyFactory
from tests.payments.pages.conftest import client_for
from tests.payments.pages.html import Page

pytestmark = pytest.mark.django_db(transaction=True)

CREATE = "POST /v1/payment"
STATUS_KEYS = {
    "status",
    "status_display",
    "is_final",
    "pay_address",
    "pay_amount",
    "pay_extra_id",
    "actual_amount",
    "actual_amount_usd",
    "credited_usd",
    "transaction_hash",
    "explorer_link",
    "qr_code_url",
    "expires_at",
    "balance_usd",
    "registration_pending",
    "registration_error",
}


def creates(sandbox: Any) -> int:
    return int(sandbox.control.requests().get(CREATE, 0))


def deposit(client: Client, amount: str = "25.00", currency: str = "USDTTRC20") -> Any:
    return client.post(reverse("create_deposit"), {"amount": amount, "currency": currency})


def test_the_form_lists_the_currencies_open_for_deposits_with_their_minimums(
    sandbox: Any, owner_client: Client, usdt: Any
) -> None:
    CurrencyFactory(code="LTC", token="LTC", network="LTC", is_active=False)
    CurrencyFactory(code="XMR", token="XMR", network="XMR", provider_enabled=False)
    page = Page(owner_client.get(reverse("create_deposit")))
    options = [e for e in page.elements if e.tag == "option"]
    assert [(o.attrs["value"], o.text) for o in options] == [
        ("USDTTRC20", "USDT (TRC20) (minimum $1.00)")
    ]
    assert page["id_amount"].attrs["name"] == "amount"
    assert page["id_currency"].attrs["name"] == "currency"
    assert "deposit-submit" in page
    assert page.controls_without_label() == []
    assert 'name="csrfmiddlewaretoken"' in page.html


def test_a_deposit_opens_on_its_page_with_address_qr_and_countdown(
    sandbox: Any, owner: Any, owner_client: Client, usdt: Any
) -> None:
    response = deposit(owner_client)
    payment = Payment.objects.get(user=owner)
    assert response.status_code == 302
    assert response["Location"] == reverse("payment_detail", kwargs={"payment_id": payment.pk})
    remote = sandbox.control.payment(payment.provider_payment_id)
    assert payment.pay_address == remote["pay_address"] != ""
    assert payment.description == "Deposit by owner"

    page = Page(owner_client.get(response["Location"]))
    assert page["payment-status"].attrs["data-status"] == "pending"
    assert page.text("payment-status") == "Pending"
    assert page.text("payment-address") == payment.pay_address
    assert page.text("payment-amount") == crypto(payment.pay_amount)
    assert page.text("payment-price") == "$25.00"
    assert page["payment-qr"].attrs["src"] == payment.get_qr_code_url(size=300)
    assert page["payment-qr"].attrs["alt"]
    assert {"copy-address", "copy-amount"} <= {e.attrs.get("id") for e in page.elements}
    assert "payment-memo" not in page
    assert "copy-memo" not in page
    assert "payment-registration-notice" not in page
    assert "payment-explorer" not in page
    assert page.text("payment-countdown").endswith("left")
    assert int(page["payment-countdown"].attrs["data-seconds"]) > 0
    assert page.text("payment-received") == "—"
    assert page.text("payment-balance") == "$0.00"
    assert page["payment"].attrs["data-status-url"] == reverse(
        "payment_status", kwargs={"payment_id": payment.pk}
    )
    assert "/static/payments/pages/payment.js" in page.html
    # The QR image is our own endpoint's, and it answers the owner.
    qr = owner_client.get(page["payment-qr"].attrs["src"])
    assert qr.status_code == 200
    assert qr["Content-Type"] == "image/png"


@pytest.mark.parametrize(
    ("amount", "currency"),
    [
        ("", "USDTTRC20"),
        ("abc", "USDTTRC20"),
        ("-5", "USDTTRC20"),
        ("0", "USDTTRC20"),
        ("0.50", "USDTTRC20"),  # below the currency's minimum
        ("1.001", "USDTTRC20"),
        ("NaN", "USDTTRC20"),
        ("Infinity", "USDTTRC20"),
        ("1e100", "USDTTRC20"),
        ("99999999999999", "USDTTRC20"),
        ("25,00", "USDTTRC20"),
        ("25.00", ""),
        ("25.00", "NOPE"),
        ("25.00", "LTC"),  # switched off
        ("25.00", "usdttrc20\x00"),
        ("\x00", "USDTTRC20"),
    ],
)
def test_bad_input_is_a_form_error_and_creates_nothing(
    sandbox: Any, owner_client: Client, usdt: Any, amount: str, currency: str
) -> None:
    CurrencyFactory(code="LTC", token="LTC", network="LTC", is_active=False)
    response = deposit(owner_client, amount, currency)
    assert response.status_code == 200
    page = Page(response)
    assert page.text("form-error")
    assert not Payment.objects.exists()
    assert creates(sandbox) == 0


def test_a_post_without_fields_is_a_form_error(
    sandbox: Any, owner_client: Client, usdt: Any
) -> None:
    response = owner_client.post(reverse("create_deposit"), {})
    assert response.status_code == 200
    assert "Amount (USD): This field is required." in Page(response).text("form-error")
    assert not Payment.objects.exists()


def test_below_nowpayments_minimum_is_a_form_error(
    sandbox: Any, owner_client: Client, btc: Any
) -> None:
    response = deposit(owner_client, "2.00", "BTC")
    assert "NowPayments accepts" in Page(response).text("form-error")
    assert not Payment.objects.exists()
    assert creates(sandbox) == 0


def test_nowpayments_down_is_a_form_error_and_nothing_is_stored(
    sandbox: Any, owner_client: Client, usdt: Any
) -> None:
    sandbox.control.set_fault("http_500", count=1, path="/v1/payment")
    response = deposit(owner_client)
    assert response.status_code == 200
    assert Page(response).text("form-error") == PROVIDER_DOWN
    assert not Payment.objects.exists()
    # The amount and currency are kept for another try, which works.
    assert Page(response)["id_amount"].attrs["value"] == "25.00"
    assert deposit(owner_client).status_code == 302


def test_the_form_checks_csrf(sandbox: Any, owner: Any, usdt: Any) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    response = client.post(reverse("create_deposit"), {"amount": "25.00", "currency": "USDTTRC20"})
    assert response.status_code == 403
    assert not Payment.objects.exists()


def test_deposits_from_the_form_are_rate_limited(
    sandbox: Any, owner_client: Client, usdt: Any, settings: Any
) -> None:
    settings.PAYMENTS_THROTTLE_RATES = {
        **settings.PAYMENTS_THROTTLE_RATES,
        "deposit_create": "2/min",
    }
    assert [deposit(owner_client).status_code for _ in range(2)] == [302, 302]
    refused = deposit(owner_client)
    assert refused.status_code == 200
    assert "Too many deposits" in Page(refused).text("form-error")
    assert Payment.objects.count() == 2
    assert creates(sandbox) == 2


def test_a_memo_is_shown_with_its_copy_button_where_the_network_needs_one(
    sandbox: Any, owner: Any, owner_client: Client
) -> None:
    CurrencyFactory(
        code="XRP",
        name="Ripple",
        token="XRP",
        network="XRP",
        extra_id_required=True,
        extra_id_name="Destination tag",
    )
    response = deposit(owner_client, "25.00", "XRP")
    payment = Payment.objects.get(user=owner)
    assert payment.pay_extra_id
    page = Page(owner_client.get(response["Location"]))
    assert page.text("payment-memo") == payment.pay_extra_id
    assert page["copy-memo"].attrs["data-copy"] == "payment-memo"
    assert "Destination tag" in page.text("payment-memo-label")
    status = owner_client.get(reverse("payment_status", kwargs={"payment_id": payment.pk})).json()
    assert status["pay_extra_id"] == payment.pay_extra_id


def test_the_status_endpoint_follows_the_payment_to_completed_and_credited(
    sandbox: Any, owner: Any, owner_client: Client, usdt: Any
) -> None:
    deposit(owner_client)
    payment = Payment.objects.get(user=owner)
    url = reverse("payment_status", kwargs={"payment_id": payment.pk})
    before = owner_client.get(url)
    assert before.status_code == 200
    assert before["Cache-Control"] == "no-store"
    body = before.json()
    assert set(body) >= STATUS_KEYS
    assert body["status"] == "pending"
    assert body["is_final"] is False
    assert body["pay_address"] == payment.pay_address
    assert body["qr_code_url"] == payment.get_qr_code_url(size=300)
    assert body["credited_usd"] is None
    assert body["balance_usd"] == "0.00"
    assert body["registration_pending"] is False
    assert body["expires_in_seconds"] > 0

    tx_hash = "a" * 64
    sandbox.control.pay(payment.provider_payment_id, hash=tx_hash)
    sandbox.control.advance(payment.provider_payment_id, status="finished")
    service.payment_refresh(payment_id=payment.pk)

    body = owner_client.get(url).json()
    assert (body["status"], body["status_display"], body["is_final"]) == (
        "completed",
        "Completed",
        True,
    )
    assert body["credited_usd"] == "25.00"
    assert body["balance_usd"] == "25.00"
    assert body["balance_display"] == "$25.00"
    assert body["transaction_hash"] == tx_hash
    assert body["explorer_link"] == f"https://tronscan.org/#/transaction/{tx_hash}"
    assert body["actual_amount"] == crypto(Payment.objects.get(pk=payment.pk).actual_amount)
    assert Transaction.objects.filter(payment=payment).count() == 1

    page = Page(owner_client.get(reverse("payment_detail", kwargs={"payment_id": payment.pk})))
    assert page["payment-status"].attrs["data-status"] == "completed"
    assert page["payment"].attrs["data-final"] == "true"
    assert page["payment-explorer"].attrs["href"] == body["explorer_link"]
    assert page.text("payment-received").endswith("USDT ($25.00)")
    assert page.text("payment-credited") == "$25.00"
    assert page.text("payment-balance") == "$25.00"
    assert page.text("payment-countdown") == "—"
    account = Page(owner_client.get(reverse("account")))
    assert account.text("balance") == "$25.00"


def test_another_users_payment_status_is_not_found_even_by_polling(
    sandbox: Any, owner_client: Client, other: Any, usdt: Any
) -> None:
    deposit(owner_client)
    payment = Payment.objects.get()
    url = reverse("payment_status", kwargs={"payment_id": payment.pk})
    assert client_for(other).get(url).status_code == 404


def test_crypto_amounts_are_shown_as_stored_without_trailing_zeros() -> None:
    assert crypto(Decimal("12.500000000000000000")) == "12.5"
    assert crypto(Decimal("10.000000000000000000")) == "10"
    assert crypto(Decimal("0.000310000000000000")) == "0.00031"
    assert crypto(None) == "—"
