"""The seed's ``create_deposit`` and ``payment_detail`` views, as the seed writes them
(tests/host_project/hostsite/views.py), render our templates: with the user pages mounted beside
them, and in a host project that mounts nothing but them."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from payments.models import Payment
from payments.pages.formatting import crypto
from payments.services import deposits as service
from tests.payments.pages.html import Page

pytestmark = pytest.mark.django_db(transaction=True)


def seed_deposit(client: Client, url: str = "/deposit/") -> tuple[Any, Payment]:
    created = client.post(url, {"amount": "25.00", "currency": "USDTTRC20"})
    assert created.status_code == 302
    payment = Payment.objects.get()
    return created, payment


@pytest.mark.urls("tests.payments.pages.seed_urls")
def test_the_seeds_views_create_a_deposit_and_show_it_with_its_address(
    sandbox: Any, owner: Any, owner_client: Client, usdt: Any
) -> None:
    form = Page(owner_client.get("/deposit/"))
    assert [e.attrs["value"] for e in form.elements if e.tag == "option"] == ["USDTTRC20"]
    assert "nav-account" in form

    created, payment = seed_deposit(owner_client)
    assert created["Location"] == f"/deposits/{payment.pk}/"
    # Payment.objects.create registered it with NowPayments before it returned.
    assert payment.pay_address
    page = Page(owner_client.get(created["Location"]))
    assert page.text("payment-status") == "Pending"
    assert page.text("payment-address") == payment.pay_address
    assert page.text("payment-amount") == crypto(payment.pay_amount)
    assert page["payment-qr"].attrs["src"] == payment.get_qr_code_url(size=300)
    assert "payment-registration-notice" not in page
    assert page["payment"].attrs["data-status-url"] == reverse(
        "payment_status", kwargs={"payment_id": payment.pk}
    )

    sandbox.control.complete(payment.provider_payment_id)
    service.payment_refresh(payment_id=payment.pk)
    page = Page(owner_client.get(created["Location"]))
    assert page["payment-status"].attrs["data-status"] == "completed"
    assert page["payment-status"].attrs["class"] == "status status-success"
    assert page.text("payment-balance") == "$25.00"


@pytest.mark.urls("tests.payments.pages.seed_urls")
def test_the_seeds_page_says_so_while_nowpayments_cannot_be_reached(
    sandbox: Any, owner_client: Client, usdt: Any
) -> None:
    sandbox.control.set_fault("http_500", count=1, path="/v1/payment")
    created, payment = seed_deposit(owner_client)
    assert payment.pay_address == ""
    page = Page(owner_client.get(created["Location"]))
    assert "could not be reached" in page.text("payment-registration-notice")
    assert page["payment-pay"].attrs.get("hidden") is not None
    assert "src" not in page["payment-qr"].attrs
    status_url = page["payment"].attrs["data-status-url"]
    body = owner_client.get(status_url).json()
    assert body["registration_pending"] is True
    assert body["registration_error"]
    assert body["qr_code_url"] is None

    # The worker's sweep registers it; the endpoint the page polls then gives the address.
    service.payment_register(payment_id=payment.pk)
    body = owner_client.get(status_url).json()
    payment.refresh_from_db()
    assert body["registration_pending"] is False
    assert body["pay_address"] == payment.pay_address != ""
    assert body["qr_code_url"] == payment.get_qr_code_url(size=300)
    page = Page(owner_client.get(created["Location"]))
    assert "payment-registration-notice" not in page
    assert page.text("payment-address") == payment.pay_address


@pytest.mark.urls("tests.payments.pages.bare_seed_urls")
def test_the_templates_render_in_a_host_project_that_mounts_only_the_seeds_views(
    sandbox: Any, owner_client: Client, usdt: Any
) -> None:
    form = owner_client.get("/deposit/")
    assert form.status_code == 200
    assert "nav-account" not in Page(form)
    created, payment = seed_deposit(owner_client)
    detail = owner_client.get(created["Location"])
    assert detail.status_code == 200
    page = Page(detail)
    assert page.text("payment-address") == payment.pay_address != ""
    # Nothing to poll there: the page is static, and says nothing about updating itself.
    assert page["payment"].attrs["data-status-url"] == ""
    assert "updates by itself" not in page.html
