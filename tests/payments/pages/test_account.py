"""The account page: the balance, the ledger history newest first and 20 a page, the recent
deposits and withdrawals with their links; and the shared layout (navigation, phone width)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from payments.models import Transaction
from tests.factories import PaymentFactory
from tests.payments.pages.conftest import client_for, fund, make_withdrawal
from tests.payments.pages.html import Page

pytestmark = pytest.mark.django_db

STATIC = Path(__file__).resolve().parents[3] / "payments" / "static" / "payments" / "pages"


def history_sequences(page: Page) -> list[int]:
    return [
        int(e.attrs["data-sequence"])
        for e in page.elements
        if e.tag == "tr" and "history-row" in e.attrs.get("class", "")
    ]


def test_a_new_user_sees_a_zero_balance_and_an_empty_history(owner_client: Client) -> None:
    page = Page(owner_client.get("/"))
    assert page.text("balance") == "$0.00"
    assert history_sequences(page) == []
    assert "history" in page
    assert "page-next" not in page
    assert "page-prev" not in page


def test_the_history_is_newest_first_20_a_page(owner: Any, owner_client: Client) -> None:
    for n in range(1, 46):
        fund(owner, "1.00", key=f"line-{n}")
    first = Page(owner_client.get("/"))
    assert first.text("balance") == "$45.00"
    assert history_sequences(first) == list(range(45, 25, -1))
    assert "page-prev" not in first
    assert first["page-next"].attrs["href"] == "?page=2"

    second = Page(owner_client.get("/?page=2"))
    assert history_sequences(second) == list(range(25, 5, -1))
    assert second["page-prev"].attrs["href"] == "?page=1"
    last = Page(owner_client.get("/" + second["page-next"].attrs["href"]))
    assert history_sequences(last) == [5, 4, 3, 2, 1]
    assert "page-next" not in last

    # A page number that is no page is no error.
    assert history_sequences(Page(owner_client.get("/?page=abc"))) == list(range(45, 25, -1))
    assert history_sequences(Page(owner_client.get("/?page=999"))) == [5, 4, 3, 2, 1]
    assert owner_client.get("/?page=-1").status_code == 200
    assert owner_client.get("/?page=%00").status_code == 200


def test_recent_deposits_and_withdrawals_link_to_their_pages(
    owner: Any, owner_client: Client, other: Any, trx: Any
) -> None:
    fund(owner, "50.00")
    payment = PaymentFactory(user=owner, currency=trx, amount_usd=Decimal("12.34"))
    withdrawal = make_withdrawal(owner, trx)
    PaymentFactory(user=other, currency=trx, amount_usd=Decimal("99.00"))
    page = Page(owner_client.get("/"))
    links = {e.attrs.get("href") for e in page.elements if e.tag == "a"}
    assert reverse("payment_detail", kwargs={"payment_id": payment.pk}) in links
    assert reverse("withdrawal_detail", kwargs={"withdrawal_id": withdrawal.pk}) in links
    assert "$12.34" in page.text("recent-deposits")
    assert "$99.00" not in page.html  # another user's deposit
    assert "$20.00" in page.text("recent-withdrawals")
    assert page.text("balance") == "$30.00"
    # The hold is in the history, newest first, with its link.
    hold = Transaction.objects.get(withdrawal_request=withdrawal)
    assert history_sequences(page)[0] == hold.sequence


def test_another_users_history_is_not_shown(owner: Any, other: Any) -> None:
    fund(owner, "10.00")
    page = Page(client_for(other).get("/"))
    assert page.text("balance") == "$0.00"
    assert history_sequences(page) == []


def test_every_page_has_the_navigation_and_phone_width_layout(
    owner_client: Client, trx: Any
) -> None:
    for url in ("/", "/deposit/", "/withdraw/"):
        page = Page(owner_client.get(url))
        assert page["nav-account"].attrs["href"] == "/"
        assert page["nav-deposit"].attrs["href"] == "/deposit/"
        assert page["nav-withdraw"].attrs["href"] == "/withdraw/"
        assert page["nav-api-keys"].attrs["href"] == "/api-keys/"
        assert "logout" in page
        assert 'name="viewport" content="width=device-width, initial-scale=1"' in page.html
        assert "/static/payments/pages/pages.css" in page.html
        assert page.controls_without_label() == []
        assert "<script>" not in page.html  # no inline script
        assert "http" not in "".join(  # no CDN: every asset is ours
            e.attrs.get("src", "") + e.attrs.get("href", "")
            for e in page.elements
            if e.tag in ("script", "link", "img")
        )


def test_the_stylesheet_keeps_phones_free_of_horizontal_scrolling() -> None:
    css = (STATIC / "pages.css").read_text()
    assert ":focus-visible" in css
    assert "overflow-wrap: anywhere" in css  # long addresses wrap
    assert ".table-scroll { overflow-x: auto" in css  # wide tables scroll inside themselves
    assert "max-width: 100%" in css
    script = (STATIC / "payment.js").read_text()
    assert "navigator.clipboard" in script
    assert 'execCommand("copy")' in script
    assert "POLL_MS = 2000" in script
