"""The end user's pages in headless Chromium against the real processes (issue 10).

The web process (gunicorn, as the application role) runs beside a real Celery worker and beat on
Redis, and the NowPayments sandbox sends its IPNs to the web process: a deposit a user makes on
/deposit/ and the sandbox then pays is credited the way production credits it, and the payment
page, left open, shows it without a reload. Screenshots of each step are saved under
``var/artifacts/browser/<test name>/``.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from selenium.common.exceptions import TimeoutException

from payments import ledger
from payments.models import (
    Currency,
    Payment,
    ProviderEvent,
    Transaction,
    UserBalance,
    WithdrawalRequest,
)
from payments.models.transaction import TransactionType
from payments.models.withdrawal import WithdrawalStatus
from payments.services.withdrawals import withdrawal_quote
from tests.browser.pages import PHONE, UserPages, first_number, plain

if TYPE_CHECKING:
    from tests.browser.conftest import Web
    from tests.browser.console import Console

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

User = get_user_model()
PASSWORD = "pw-for-browser-tests-only"
TRON = "TQn9Y2khEsLJW1ChVWFMSMeRDow5KcbLSE"
SERIAL = itertools.count(1)
SETTLED = 40  # seconds for a paid deposit to be credited and shown (IPN or beat's poll)


@pytest.fixture(scope="module")
def web(web_and_workers: Web) -> Web:
    """This module's web process comes with a worker and beat (tests/browser/conftest.py)."""
    return web_and_workers


@pytest.fixture(scope="module")
def currencies(live_database: None) -> dict[str, Currency]:
    """Two currencies to choose from; USDT (TRC20) with a network fee of its own."""
    common = {"is_active": True, "provider_enabled": True}
    usdt, _ = Currency.objects.update_or_create(
        code="USDTTRC20",
        defaults={
            **common,
            "name": "Tether USD (TRC20)",
            "token": "USDT",
            "network": "TRC20",
            "decimal_places": 6,
            "min_amount_usd": Decimal("1.00"),
            "withdrawal_fee_usd": Decimal("1.37"),
            "withdrawal_min_usd": Decimal("3.00"),
            "sort_order": 1,
        },
    )
    btc, _ = Currency.objects.update_or_create(
        code="BTC",
        defaults={
            **common,
            "name": "Bitcoin",
            "token": "BTC",
            "network": "BTC",
            "decimal_places": 8,
            "min_amount_usd": Decimal("10.00"),
            "sort_order": 2,
        },
    )
    return {"USDTTRC20": usdt, "BTC": btc}


@pytest.fixture
def pages(browser: Console, request: pytest.FixtureRequest) -> Iterator[UserPages]:
    """The module's browser as an end user's, signed out, with this test's screenshot folder."""
    user_pages = UserPages(
        browser.driver,
        base_url=browser.base_url,
        downloads=browser.downloads,
        server_log=browser.server_log,
    )
    user_pages.start(request.node.name)
    try:
        yield user_pages
    finally:
        user_pages.desktop()


@functools.cache
def password_hash() -> str:
    """PASSWORD hashed once for every user of the module (hashing takes about a second)."""
    return make_password(PASSWORD)


def member(name: str) -> Any:
    """A user of the site (not staff) who signs in with PASSWORD."""
    return User.objects.create(username=f"{name}-{next(SERIAL)}", password=password_hash())


def fund(user: Any, *amounts: str) -> None:
    """Deposits straight into the user's ledger, one posting per amount."""
    ledger.post_many(
        [
            ledger.Posting(
                user_id=user.pk,
                kind=TransactionType.DEPOSIT,
                amount_usd=Decimal(amount),
                idempotency_key=f"browser:{user.username}:{i}",
            )
            for i, amount in enumerate(amounts)
        ]
    )


def balance(user: Any) -> Decimal:
    row = UserBalance.objects.filter(user=user).first()
    return Decimal("0.00") if row is None else row.balance_usd


def test_a_deposit_paid_in_the_sandbox_shows_completed_without_a_reload(
    pages: UserPages, sandbox_server: Any, currencies: dict[str, Currency]
) -> None:
    dora = member("dora")
    pages.sign_in(dora.username, PASSWORD)
    pages.shot("signed-in")
    pages.click("#nav-deposit")
    assert pages.path == "/deposit/"
    options = {o.get_attribute("value"): o.text for o in pages.find_all("#id_currency option")}
    assert {"USDTTRC20", "BTC"} <= set(options), options
    assert "10.00" in options["BTC"], "each currency shows its minimum"
    pages.shot("deposit-form")

    # Under the currency's minimum: the form says so, and nothing is created.
    pages.enter({"#id_currency": "BTC", "#id_amount": "5.00"})
    pages.click("#deposit-submit")
    assert pages.path == "/deposit/"
    assert pages.shown("#form-error"), "a refused amount says why"
    assert not Payment.objects.filter(user=dora).exists()
    pages.shot("below-minimum")

    pages.enter({"#id_currency": "USDTTRC20", "#id_amount": "25.00"})
    pages.click("#deposit-submit")
    payment = Payment.objects.get(pk=pages.opened("/deposits/{id}/"), user=dora)
    # Registered with NowPayments before the page answered: the address is there at once.
    assert payment.provider_payment_id, "the deposit form registers the payment at once"
    remote = sandbox_server.control.payment(payment.provider_payment_id)
    assert pages.shown("#payment-address") == payment.pay_address == remote["pay_address"]
    assert first_number(pages.shown("#payment-amount")) == plain(payment.pay_amount)
    assert pages.usd("#payment-price") == Decimal("25.00")
    assert not pages.has("#payment-memo"), "TRC20 has no memo"
    pages.qr_loaded()
    assert pages.status("#payment-status") == "pending"
    assert pages.usd("#payment-balance") == Decimal("0.00")
    left = pages.shown("#payment-countdown")
    assert re.search(r"\d", left), "a countdown to the expiry"
    pages.wait(lambda _: pages.shown("#payment-countdown") != left, "the countdown", timeout=3)
    assert pages.copied("#copy-address") == payment.pay_address
    assert pages.copied("#copy-amount") == plain(payment.pay_amount)
    notice = pages.find_all("#payment-registration-notice")
    assert not notice or not notice[0].is_displayed(), "no registration notice once registered"
    assert not any(e.is_displayed() for e in pages.find_all("#payment-explorer")), "no hash yet"
    pages.shot("payment-page")

    pages.js("window.__marker = 1")  # gone if the page reloads
    sandbox_server.control.complete(payment.provider_payment_id)
    try:
        pages.wait(
            lambda _: pages.status("#payment-status") == "completed",
            "the page to show the payment completed",
            timeout=SETTLED,
        )
    except TimeoutException:
        payment.refresh_from_db()
        shown = pages.shown("#payment-status")
        raise AssertionError(
            f"the page shows {shown!r}, the payment is {payment.status!r}, the sandbox says "
            f"{sandbox_server.control.payment(payment.provider_payment_id)['payment_status']!r}"
            f"\n{pages.server_log()}"
        ) from None
    pages.wait(
        lambda _: "$25.00" in pages.shown("#payment-balance"),
        "the page to show the balance credited",
        timeout=10,
    )
    assert pages.js("return window.__marker") == 1, "the page was reloaded"
    assert "Completed" in pages.shown("#payment-status")
    payment.refresh_from_db()
    assert payment.status == Payment.PaymentStatus.COMPLETED
    assert first_number(pages.shown("#payment-received")) == plain(payment.actual_amount)
    # NowPayments' IPN carries no transaction hash: the web process has a worker read the
    # payment's status after it, and the page (still polling) shows the explorer link live.
    pages.wait(
        lambda _: any(e.is_displayed() for e in pages.find_all("#payment-explorer")),
        "the explorer link once the transaction hash is known",
        timeout=20,
    )
    payment.refresh_from_db()
    assert payment.transaction_hash
    explorer = pages.find("#payment-explorer")
    if explorer.tag_name != "a":
        explorer = explorer.find_element("css selector", "a")
    assert payment.transaction_hash in str(explorer.get_attribute("href"))
    assert pages.js("return window.__marker") == 1, "the page was reloaded"
    pages.shot("payment-completed")

    deposits = Transaction.objects.filter(payment=payment, transaction_type=TransactionType.DEPOSIT)
    assert [t.amount_usd for t in deposits] == [Decimal("25.00")]
    assert balance(dora) == Decimal("25.00")
    # The sandbox's IPN reached the web process (beat's poll may have credited it first).
    assert ProviderEvent.objects.filter(provider_object_id=payment.provider_payment_id).exists()

    pages.click("#nav-account")
    assert pages.path == "/"
    assert pages.usd("#balance") == Decimal("25.00")
    assert len(pages.find_all("#history tr.history-row")) == 1
    pages.shot("account")


QUOTE = {
    "#quote-amount": "amount_usd",
    "#quote-network-fee": "network_fee_usd",
    "#quote-service-fee": "service_fee_usd",
    "#quote-total-fee": "total_fee_usd",
    "#quote-final": "final_amount_usd",
}


def test_a_withdrawal_is_quoted_confirmed_then_cancelled(
    pages: UserPages, currencies: dict[str, Currency]
) -> None:
    wes = member("wes")
    fund(wes, "100.00")
    quote = withdrawal_quote(currency_code="USDTTRC20", amount_usd=Decimal("40.00"))
    assert quote.network_fee_usd == Decimal("1.37")  # the currency's own, not the default

    pages.sign_in(wes.username, PASSWORD)
    pages.click("#nav-withdraw")
    assert pages.path == "/withdraw/"
    pages.shot("withdraw-form")
    pages.enter(
        {"#id_amount_usd": "40.00", "#id_currency": "USDTTRC20", "#id_wallet_address": TRON}
    )
    pages.click("#withdraw-review")
    shown = {css: pages.usd(css) for css in QUOTE}
    assert shown == {css: getattr(quote, name) for css, name in QUOTE.items()}
    assert not WithdrawalRequest.objects.filter(user=wes).exists(), "nothing before confirming"
    assert balance(wes) == Decimal("100.00")
    pages.shot("quote")

    # Back to the form: what was typed is still there.
    pages.click("#withdraw-back")
    assert pages.shown("#id_amount_usd") == "40.00"
    assert pages.shown("#id_wallet_address") == TRON
    pages.click("#withdraw-review")
    pages.click("#withdraw-confirm")
    detail = pages.path
    withdrawal = WithdrawalRequest.objects.get(pk=pages.opened("/withdrawals/{id}/"), user=wes)
    assert withdrawal.status == WithdrawalStatus.PENDING
    assert withdrawal.amount_usd == quote.amount_usd
    assert withdrawal.network_fee_usd == quote.network_fee_usd
    assert withdrawal.service_fee_usd == quote.service_fee_usd
    assert withdrawal.wallet_address == TRON
    assert pages.status("#withdrawal-status") == "pending"
    assert pages.usd("#withdrawal-amount") == quote.amount_usd
    assert pages.usd("#withdrawal-final") == quote.final_amount_usd
    assert pages.usd("#withdrawal-fee", first=True) == quote.total_fee_usd
    assert balance(wes) == Decimal("60.00")  # held while pending
    pages.shot("pending")

    pages.click("#nav-account")
    assert pages.usd("#balance") == Decimal("60.00")
    pages.shot("account-while-pending")
    pages.open(detail)
    pages.click("#withdrawal-cancel")
    assert pages.status("#withdrawal-status") == "cancelled"
    assert pages.find_all("#messages .success"), "the page says it is cancelled"
    assert not pages.has("#withdrawal-cancel")
    pages.shot("cancelled")
    withdrawal.refresh_from_db()
    assert withdrawal.status == WithdrawalStatus.CANCELLED
    refunds = Transaction.objects.filter(
        withdrawal_request=withdrawal, transaction_type=TransactionType.REFUND
    )
    assert [r.amount_usd for r in refunds] == [Decimal("40.00")]
    assert balance(wes) == Decimal("100.00")

    pages.click("#nav-account")
    assert pages.usd("#balance") == Decimal("100.00")
    assert len(pages.find_all("#history tr.history-row")) == 3  # deposit, hold, refund
    pages.shot("balance-back")


def test_the_pages_at_phone_width(pages: UserPages, currencies: dict[str, Currency]) -> None:
    pia = member("pia")
    fund(pia, *["5.00"] * 21)  # one more posting than a history page holds
    pages.phone()

    pages.open("/login/")
    pages.assert_fits_the_screen()
    pages.assert_usable("#id_username", "#id_password", "#login-submit")
    pages.shot("login")
    pages.sign_in(pia.username, PASSWORD)

    pages.open("/deposit/")
    pages.assert_fits_the_screen()
    pages.assert_usable("#id_currency", "#id_amount", "#deposit-submit")
    pages.shot("deposit-form")
    pages.enter({"#id_currency": "USDTTRC20", "#id_amount": "12.00"})
    pages.click("#deposit-submit")
    pages.opened("/deposits/{id}/")
    pages.assert_fits_the_screen()
    pages.assert_usable(
        "#payment-status", "#payment-qr", "#payment-address", "#copy-address", "#copy-amount"
    )
    assert 150 <= pages.qr_loaded() <= PHONE[0], "a QR code a camera can read"
    pages.shot("payment-page")

    pages.open("/")
    pages.assert_fits_the_screen()
    assert pages.usd("#balance") == Decimal("105.00")
    assert len(pages.find_all("#history tr.history-row")) == 20
    pages.assert_usable("#balance", "#page-next")
    pages.shot("account")
    pages.click("#page-next")
    assert len(pages.find_all("#history tr.history-row")) == 1
    pages.assert_fits_the_screen()

    pages.open("/withdraw/")
    pages.assert_fits_the_screen()
    pages.assert_usable("#id_amount_usd", "#id_currency", "#id_wallet_address", "#withdraw-review")
    pages.shot("withdraw-form")
    pages.enter(
        {"#id_amount_usd": "20.00", "#id_currency": "USDTTRC20", "#id_wallet_address": TRON}
    )
    pages.click("#withdraw-review")
    pages.assert_fits_the_screen()
    pages.assert_usable("#quote-final", "#withdraw-confirm", "#withdraw-back")
    pages.shot("quote")


def test_an_anonymous_user_is_sent_to_sign_in_first(
    pages: UserPages, currencies: dict[str, Currency]
) -> None:
    ann = member("ann")
    pages.open("/deposit/")
    assert urlsplit(pages.path).path == "/login/"
    assert parse_qs(urlsplit(pages.path).query).get("next") == ["/deposit/"]
    assert not pages.has("#logout")
    pages.shot("sent-to-login")

    pages.enter({"#id_username": ann.username, "#id_password": "not-the-password"})
    pages.click("#login-submit")
    assert urlsplit(pages.path).path == "/login/"
    assert pages.login_errors(), "a wrong password says so"
    assert not pages.has("#logout")
    pages.shot("wrong-password")

    pages.sign_in(ann.username, PASSWORD)
    assert pages.path == "/deposit/", "signed in, the user goes on where they were going"
    pages.shot("deposit-form")
