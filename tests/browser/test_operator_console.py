"""The operator console in headless Chromium against the real web process (issue 9).

Each test signs people in through the admin's login page, clicks what an operator clicks and
checks what the page says and what the database holds. Screenshots of each step are saved
under ``var/artifacts/browser/<test name>/``.
"""

from __future__ import annotations

import csv
import functools
import itertools
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.request import urlopen

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Group

from payments import ledger
from payments.models import ManualAdjustment, Transaction, UserBalance, WithdrawalRequest
from payments.models.transaction import TransactionType
from payments.models.withdrawal import WithdrawalStatus
from payments.services import withdrawals
from tests.factories import CurrencyFactory

if TYPE_CHECKING:
    from tests.browser.console import Console

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

User = get_user_model()
PASSWORD = "pw-for-browser-tests-only"
WITHDRAWALS = "/admin/payments/withdrawalrequest/"
MANUAL = "/admin/payments/manualadjustment/"
TRANSACTIONS = "/admin/payments/transaction/"
TRON = "TQn9Y2khEsLJW1ChVWFMSMeRDow5KcbLSE"
SERIAL = itertools.count(1)
SECTIONS = (
    "review-amounts",
    "review-balance",
    "review-history",
    "review-address",
    "review-payout",
    "review-timeline",
)


@functools.cache
def password_hash() -> str:
    """PASSWORD hashed once for every staff member (hashing takes about a second)."""
    return make_password(PASSWORD)


def unique(name: str) -> str:
    """A username no other test of the session has (the database is shared by the module)."""
    return f"{name}-{next(SERIAL)}"


def staff(name: str, *groups: str) -> Any:
    """A staff member in the given roles (payments/roles.py), who signs in with PASSWORD."""
    user = User.objects.create(username=unique(name), is_staff=True, password=password_hash())
    user.groups.add(*(Group.objects.get(name=name) for name in groups))
    return user


def customer(name: str, deposit: str = "100.00") -> Any:
    """A user (who never signs in here) with ``deposit`` USD on their balance."""
    user = User.objects.create_user(username=unique(name))
    credit(user, deposit)
    return user


def credit(user: Any, amount: str, kind: str = TransactionType.DEPOSIT) -> Transaction:
    return ledger.post(
        user_id=user.pk,
        kind=kind,
        amount_usd=Decimal(amount),
        idempotency_key=f"browser:{user.username}:{kind}",
    )


def withdrawal(user: Any, amount: str = "21.50") -> WithdrawalRequest:
    """A pending withdrawal of ``user`` in USDT (TRC20), its amount held."""
    currency = CurrencyFactory(code="USDTTRC20")
    return withdrawals.withdrawal_create(
        user_id=user.pk,
        amount_usd=Decimal(amount),
        currency_id=currency.pk,
        wallet_address=TRON,
        network_fee_usd=Decimal("1.00"),
        service_fee_usd=Decimal("0.50"),
    )


def balance(user: Any) -> Decimal:
    return UserBalance.objects.get(user=user).balance_usd


def review_url(request: WithdrawalRequest) -> str:
    return f"{WITHDRAWALS}{request.pk}/change/"


def test_smoke_login_index_and_withdrawals(console: Console) -> None:
    vera = staff("vera", "viewer")

    console.open("/admin/login/")
    console.shot("login")
    console.fill({"username": vera.username, "password": "wrong-password"})
    console.click("input[type=submit]")
    assert console.path.startswith("/admin/login/")
    assert console.errors(), "a wrong password says so"

    console.login(vera.username, PASSWORD)
    assert console.path == "/admin/"
    assert "Withdrawal requests" in console.text("#content")
    # The admin's CSS comes from the web process itself (whitenoise, collected static files).
    sheets = [e.get_attribute("href") for e in console.find_all("link[rel=stylesheet]")]
    assert sheets
    for href in sheets:
        with urlopen(href, timeout=5) as answer:  # noqa: S310 - our own http://127.0.0.1 URL
            assert answer.status == 200
            assert answer.headers["Content-Type"].startswith("text/css")
    console.shot("admin-index")

    console.open(WITHDRAWALS)
    assert console.has("#changelist")
    console.shot("withdrawals")


def test_approver_approves_a_withdrawal_from_the_review_queue(console: Console) -> None:
    alice = staff("alice", "approver")
    older = withdrawal(customer("carl"))
    newer = withdrawal(customer("dana"), amount="30.00")
    decided = withdrawal(customer("erin"))
    reviewer = staff("rita", "approver")
    withdrawals.withdrawal_reject(withdrawal_id=decided.pk, admin_user=reviewer, notes="dup")

    console.login(alice.username, PASSWORD)
    console.click(f"a[href$='{WITHDRAWALS}']")
    # The default view is the review queue: pending requests only, the oldest first.
    assert console.path in (WITHDRAWALS, f"{WITHDRAWALS}?review=needs")
    assert "Needs review" in console.text("#changelist-filter li.selected")
    listed = [e.text for e in console.find_all("#result_list tbody th a")]
    queue = WithdrawalRequest.objects.filter(status=WithdrawalStatus.PENDING)
    assert listed == list(
        queue.order_by("created_at").values_list("internal_withdrawal_id", flat=True)
    )
    mine = [
        w
        for w in listed
        if w
        in {
            older.internal_withdrawal_id,
            newer.internal_withdrawal_id,
            decided.internal_withdrawal_id,
        }
    ]
    assert mine == [older.internal_withdrawal_id, newer.internal_withdrawal_id]
    console.shot("review-queue")

    console.click(f"#result_list a[href*='/{older.pk}/change/']")
    for section in SECTIONS:
        assert console.has(f"#{section}"), f"the review page has #{section}"
    assert "21.50 USD" in console.text("#review-amounts")
    assert "20.00 USD" in console.text("#review-amounts .final-amount")  # 21.50 - 1.50 fees
    assert console.text("#review-balance .balance") == "78.50 USD"
    assert TRON in console.text("#review-address")
    console.shot("review-page")

    console.click("#approve-button")
    assert console.path == f"{WITHDRAWALS}{older.pk}/approve/"
    assert older.internal_withdrawal_id in console.text("#content")
    console.shot("confirm-approval")
    console.click("button[name=confirm]")

    assert console.path == review_url(older)
    [done] = console.messages("success")
    assert older.internal_withdrawal_id in done
    assert "approved" in done
    assert "Approved" in console.text("#review-amounts")
    assert not console.has("#approve-button")
    console.shot("approved")

    older.refresh_from_db()
    assert older.status == WithdrawalStatus.APPROVED
    assert older.admin_user_id == alice.pk
    assert balance(older.user) == Decimal("78.50")  # still held, nothing refunded
    assert WithdrawalRequest.objects.get(pk=newer.pk).status == WithdrawalStatus.PENDING


def test_approver_rejects_a_withdrawal_only_with_a_reason(console: Console) -> None:
    amy = staff("amy", "approver")
    request = withdrawal(customer("carl"))
    assert balance(request.user) == Decimal("78.50")

    console.login(amy.username, PASSWORD)
    console.open(review_url(request))
    console.click("#reject-button")
    assert console.path == f"{WITHDRAWALS}{request.pk}/reject/"
    console.shot("confirm-rejection")

    # Empty: the browser itself refuses to send the form.
    console.press("button[name=confirm]")
    assert console.validation_message("textarea[name=reason]")
    assert console.path == f"{WITHDRAWALS}{request.pk}/reject/"
    # Only blanks: the server refuses it with a message, and nothing changes.
    console.fill({"reason": "   "})
    console.click("button[name=confirm]")
    assert console.path == f"{WITHDRAWALS}{request.pk}/reject/"
    [error] = console.messages("error")
    assert "Say why" in error
    console.shot("reason-missing")
    request.refresh_from_db()
    assert request.status == WithdrawalStatus.PENDING
    assert request.rejection_reason == ""
    assert balance(request.user) == Decimal("78.50")

    reason = "The address belongs to a sanctioned exchange."
    console.fill({"reason": reason})
    console.click("button[name=confirm]")
    assert console.path == review_url(request)
    [done] = console.messages("success")
    assert request.internal_withdrawal_id in done
    assert "rejected" in done
    assert "Rejected" in console.text("#review-amounts")
    assert reason in console.text("#review-timeline")
    assert console.text("#review-balance .balance") == "100.00 USD"
    assert not console.has("#reject-button")
    console.shot("rejected")

    request.refresh_from_db()
    assert request.status == WithdrawalStatus.REJECTED
    assert request.rejection_reason == reason
    refunds = Transaction.objects.filter(
        withdrawal_request=request, transaction_type=TransactionType.REFUND
    )
    assert [r.amount_usd for r in refunds] == [Decimal("21.50")]
    assert balance(request.user) == Decimal("100.00")


def test_approver_cannot_approve_their_own_withdrawal(console: Console) -> None:
    alice = staff("alice", "approver")
    credit(alice, "50.00")
    own = withdrawal(alice)

    console.login(alice.username, PASSWORD)
    console.open(review_url(own))
    console.click("#approve-button")
    console.click("button[name=confirm]")
    [error] = console.messages("error")
    assert "their own withdrawal" in error
    assert not console.messages("success")
    console.shot("own-request-refused")

    own.refresh_from_db()
    assert own.status == WithdrawalStatus.PENDING
    assert own.admin_user is None
    assert balance(alice) == Decimal("28.50")


def test_manual_credit_needs_a_supervisor_and_posts_once(console: Console) -> None:
    olga = staff("olga", "operator")
    sam = staff("sam", "supervisor")
    user = customer("carl", deposit="10.00")

    console.login(olga.username, PASSWORD)
    console.open(f"{MANUAL}add/")
    console.fill(
        {"user": str(user.pk), "kind": "bonus", "amount_usd": "12.34", "reason": "Goodwill"}
    )
    console.shot("request-credit")
    console.click("input[name=_save], button[name=_save]")
    assert console.messages("success"), console.errors()
    console.shot("requested")
    manual = ManualAdjustment.objects.get(user=user)
    assert manual.outcome == ManualAdjustment.Outcome.PENDING
    assert manual.amount_usd == Decimal("12.34")
    assert manual.requested_by_id == olga.pk
    assert balance(user) == Decimal("10.00")  # nothing posted before the second operator
    console.logout()

    console.login(sam.username, PASSWORD)
    console.open(MANUAL)
    console.click(f"#result_list a[href*='{MANUAL}{manual.pk}/change/']")
    console.click("#approve-button")
    confirm = f"{MANUAL}{manual.pk}/approve/"
    assert console.path == confirm
    assert "12.34 USD" in console.text("#manual-summary")
    console.shot("confirm-credit")
    # The same confirmation open in a second tab: its form is sent again after the first.
    first = console.driver.current_window_handle
    second = console.new_tab(confirm)
    console.switch(first)
    console.click("button[name=confirm]")
    assert console.path == f"{MANUAL}{manual.pk}/change/"
    assert len(console.messages("success")) == 1, console.errors()
    console.shot("credited")

    def postings() -> list[Transaction]:
        return list(
            Transaction.objects.filter(
                user=user,
                transaction_type__in=(TransactionType.BONUS, TransactionType.ADJUSTMENT),
            )
        )

    assert [(t.transaction_type, t.amount_usd) for t in postings()] == [
        (TransactionType.BONUS, Decimal("12.34"))
    ]
    assert balance(user) == Decimal("22.34")
    manual.refresh_from_db()
    assert manual.outcome == ManualAdjustment.Outcome.APPLIED
    assert manual.decided_by_id == sam.pk
    assert manual.transaction_id == postings()[0].pk

    console.switch(second)
    console.click("button[name=confirm]")  # the stale form, sent a second time
    assert console.messages("error"), "a decided request says so"
    assert not console.messages("success")
    console.shot("resubmitted")
    console.close_tab(first)
    console.open(confirm)  # and the confirmation reloaded: it is decided, nothing to confirm
    assert not console.has("button[name=confirm]")
    assert console.messages("error")
    assert len(postings()) == 1
    assert balance(user) == Decimal("22.34")


def test_transactions_csv_export_matches_the_ledger(console: Console) -> None:
    vera = staff("vera", "viewer")
    carl, dana = customer("carl", deposit="100.00"), customer("dana", deposit="0.07")
    withdrawal(carl, amount="33.33")
    credit(dana, "1234.56", kind=TransactionType.BONUS)

    console.login(vera.username, PASSWORD)
    console.open(TRANSACTIONS)
    console.shot("transactions")
    console.find("a.export-csv").click()
    path = console.downloaded(".csv")

    with path.open(newline="", encoding="utf-8") as handle:
        header, *rows = list(csv.reader(handle))
    assert header == [
        "id",
        "created_at",
        "user",
        "user_id",
        "transaction_type",
        "amount_usd",
        "balance_after",
        "sequence",
        "payment",
        "withdrawal_request",
        "idempotency_key",
        "description",
    ]
    exported = {int(row[0]): dict(zip(header, row, strict=True)) for row in rows}
    stored = Transaction.objects.select_related("user", "withdrawal_request")
    assert len(rows) == len(exported) == stored.count()  # every posting, once
    for txn in stored:
        row = exported[txn.pk]
        assert row["user"] == txn.user.username
        assert row["user_id"] == str(txn.user_id)
        assert row["transaction_type"] == txn.transaction_type
        assert row["amount_usd"] == str(txn.amount_usd)  # exact, to the cent: "-33.33"
        assert Decimal(row["amount_usd"]) == txn.amount_usd
        assert row["balance_after"] == str(txn.balance_after)
        assert row["sequence"] == str(txn.sequence)
        assert row["idempotency_key"] == txn.idempotency_key
        assert row["withdrawal_request"] == (
            txn.withdrawal_request.internal_withdrawal_id if txn.withdrawal_request else ""
        )
    ours = {carl.username, dana.username}
    amounts = sorted(row["amount_usd"] for row in exported.values() if row["user"] in ours)
    assert amounts == sorted(["100.00", "-33.33", "0.07", "1234.56"])
