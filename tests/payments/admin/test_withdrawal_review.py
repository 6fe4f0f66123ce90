"""The withdrawal review page (payments/admin/withdrawals.py, withdrawal_review.py): its figures,
a query count that does not grow with the history, Approve / Reject through confirmation pages,
the rejection reason, and the review queue as the list's default view."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from payments import ledger
from payments.admin.base import log_action
from payments.models import Currency, Payment, Transaction, UserBalance, WithdrawalRequest
from payments.services import withdrawals
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

LIST = "/admin/payments/withdrawalrequest/"
TRON = "TQn9Y2khEsLJW1ChVWFMSMeRDow5KcbLSE"
OTHER_TRON = "TEmGwPeRTPiLFLVfBxXkSP91yc5GMNQhfS"


# --- helpers ----------------------------------------------------------------------------------


def staff(username: str, group: str) -> Client:
    """A client logged in as a staff member of one of the installed role groups."""
    user = UserFactory(username=username, is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    client = Client()
    client.force_login(user)
    client.user = user  # type: ignore[attr-defined]
    return client


@pytest.fixture
def anna() -> Client:
    return staff("anna", "approver")


@pytest.fixture
def vera() -> Client:
    return staff("vera", "viewer")


def deposit(user: Any, currency: Currency, amount: str, **extra: Any) -> Payment:
    """A payment completed through the seed's ORM path, which settles it into the ledger."""
    payment = Payment.objects.create(
        user=user, amount_usd=Decimal(amount), currency=currency, **extra
    )
    payment.status = Payment.PaymentStatus.COMPLETED
    payment.save()
    return payment


def withdraw(user: Any, currency: Currency, amount: str, address: str = TRON, **extra: Any) -> Any:
    """A request with the fees given (none unless said), whatever the fee settings."""
    extra.setdefault("network_fee_usd", Decimal("0.00"))
    extra.setdefault("service_fee_usd", Decimal("0.00"))
    return withdrawals.withdrawal_create(
        user_id=user.pk,
        amount_usd=Decimal(amount),
        currency_id=currency.pk,
        wallet_address=address,
        **extra,
    )


def section(page: str, name: str) -> str:
    match = re.search(rf'<section id="review-{name}".*?</section>', page, re.S)
    assert match, f"no section review-{name}"
    return " ".join(match[0].split())


def shown(response: Any) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def change_page(client: Client, withdrawal: Any) -> str:
    response = client.get(f"{LIST}{withdrawal.pk}/change/")
    assert response.status_code == 200
    return response.content.decode()


def entries(withdrawal: Any) -> list[str]:
    return list(
        LogEntry.objects.filter(
            content_type=ContentType.objects.get_for_model(WithdrawalRequest),
            object_id=str(withdrawal.pk),
        )
        .order_by("pk")
        .values_list("change_message", flat=True)
    )


def reload(withdrawal: Any) -> WithdrawalRequest:
    return WithdrawalRequest.objects.get(pk=withdrawal.pk)


def refunds(withdrawal: Any) -> int:
    return Transaction.objects.filter(
        withdrawal_request_id=withdrawal.pk, transaction_type="refund"
    ).count()


# --- the review page's figures ------------------------------------------------------------------


def test_the_review_page_shows_each_section_with_its_figures(anna, usdt):
    customer = UserFactory(username="carl")
    deposit(customer, usdt, "30.00")
    deposit(customer, usdt, "20.00")
    Payment.objects.create(user=customer, amount_usd=Decimal("99.99"), currency=usdt)  # pending
    earlier = withdraw(customer, usdt, "10.00")
    withdrawals.withdrawal_reject(withdrawal_id=earlier.pk, admin_user=anna.user, notes="KYC")
    under_review = withdraw(
        customer,
        usdt,
        "21.50",
        network_fee_usd=Decimal("1.00"),
        service_fee_usd=Decimal("0.50"),
    )
    # Someone else withdrew to the same address, and a third user was given it to pay into.
    mallory = UserFactory(username="mallory")
    deposit(mallory, usdt, "40.00")
    withdraw(mallory, usdt, "15.00")
    withdraw(mallory, usdt, "5.00")
    Payment.objects.create(
        user=UserFactory(username="trent"),
        amount_usd=Decimal("12.00"),
        currency=usdt,
        pay_address=TRON,
    )

    page = change_page(anna, under_review)

    amounts = section(page, "amounts")
    assert "Amount requested (held)</th><td>21.50 USD" in amounts
    assert "Network fee</th><td>1.00 USD" in amounts
    assert "Service fee</th><td>0.50 USD" in amounts
    assert "Total fees</th><td>1.50 USD" in amounts
    assert '<strong class="final-amount">20.00 USD</strong>' in amounts

    balance = section(page, "balance")
    # 30 + 20 deposited, 10 held and refunded, 21.50 held now.
    assert UserBalance.objects.get(user=customer).balance_usd == Decimal("28.50")
    assert '<strong class="balance">28.50 USD</strong>' in balance
    assert "Deposited in total</th><td>50.00 USD" in balance
    assert "carl" in balance
    assert '<td class="account-age">0 days (joined ' in balance
    assert '<td class="open-withdrawals">0, 0.00 USD</td>' in balance

    history = section(page, "history")
    assert (
        '<p class="review-total" id="postings-total">5 postings, net 28.50 USD '
        "(credits 60.00 USD, debits -31.50 USD)</p>" in history
    )
    assert history.count('<tr class="posting">') == 5
    assert (
        '<p class="review-total" id="payments-total">3 payments, 149.99 USD ordered; '
        "2 completed, 50.00 USD credited</p>" in history
    )
    assert history.count('<tr class="payment">') == 3
    assert (
        '<p class="review-total" id="withdrawals-total">1 withdrawal, 10.00 USD; '
        "0 completed, 0.00 USD paid out</p>" in history
    )
    (listed,) = re.findall(r'<tr class="withdrawal">.*?</tr>', history)  # the others only
    assert earlier.internal_withdrawal_id in listed

    address = section(page, "address")
    assert f'<a id="address-explorer" href="https://tronscan.org/#/address/{TRON}"' in address
    warning = re.search(r'<div class="review-warning" id="address-warning">.*?</div>', address)
    assert warning
    users = re.findall(r'<li class="address-user">(.*?)</li>', warning[0])
    assert len(users) == 2
    assert users[0].startswith("mallory:")
    assert "2 withdrawals to it" in users[0]
    assert users[1].startswith("trent:")
    assert "1 deposit paid to it" in users[1]
    assert "carl" not in warning[0]

    payout = section(page, "payout")
    assert "No payout at NowPayments." in payout

    timeline = section(page, "timeline")
    assert "Requested" in timeline


def test_the_address_warning_links_to_the_other_users_withdrawals(anna, usdt):
    customer, other = UserFactory(), UserFactory(username="olga")
    for user in (customer, other):
        deposit(user, usdt, "50.00")
    theirs = withdraw(other, usdt, "10.00")
    withdraw(other, usdt, "11.00", OTHER_TRON)
    mine = withdraw(customer, usdt, "10.00")
    address = section(change_page(anna, mine), "address")
    link = re.search(r'<a href="([^"]+)">1 withdrawal to it</a>', address)
    assert link
    listed = anna.get(link[1].replace("&amp;", "&"))
    assert listed.status_code == 200
    assert [w.pk for w in listed.context["cl"].result_list] == [
        w.pk for w in WithdrawalRequest.objects.filter(user=other).order_by("-created_at")
    ]
    assert theirs.internal_withdrawal_id in listed.content.decode()


def test_an_address_nobody_else_used_gets_no_warning(anna, usdt):
    customer = UserFactory()
    deposit(customer, usdt, "50.00")
    withdrawal = withdraw(customer, usdt, "10.00", OTHER_TRON)
    withdraw(customer, usdt, "5.00", OTHER_TRON)  # the same user again is no warning
    address = section(change_page(anna, withdrawal), "address")
    assert 'id="address-warning"' not in address
    assert "No other user has withdrawn to this address" in address


@pytest.mark.parametrize(
    ("code", "network", "address", "url"),
    [
        ("BTC", "btc", "bc1qxyz", "https://mempool.space/address/bc1qxyz"),
        ("LTC", "ltc", "ltc1qabc", "https://blockchair.com/litecoin/address/ltc1qabc"),
        ("ETH", "eth", "0xAbC", "https://etherscan.io/address/0xAbC"),
        ("USDTERC20", "", "0xAbC", "https://etherscan.io/address/0xAbC"),
        ("USDTTRC20", "TRC20", TRON, f"https://tronscan.org/#/address/{TRON}"),
        ("USDTBSC", "BSC", "0x1", "https://bscscan.com/address/0x1"),
        ("USDCBEP20", "", "0x1", "https://bscscan.com/address/0x1"),
        ("USDTMATIC", "matic", "0x2", "https://polygonscan.com/address/0x2"),
        ("SOL", "sol", "So1ana", "https://solscan.io/account/So1ana"),
        ("TON", "ton", "EQAb-_c", "https://tonviewer.com/EQAb-_c"),
        ("USDTTON", "", "UQx", "https://tonviewer.com/UQx"),
        ("XRP", "xrp", "rPEPPER", "https://xrpscan.com/account/rPEPPER"),
        ("XYZ", "xyz", "anything", None),
    ],
)
def test_the_address_explorer_table(code, network, address, url):
    currency = Currency(code=code, network=network, token=code[:4])
    assert currency.explorer_address_url(address) == url
    assert currency.explorer_address_url("") is None
    # Whatever is typed stays inside the URL's path.
    if url:
        assert currency.explorer_address_url('a"b/c?d').endswith("a%22b%2Fc%3Fd")


def test_the_query_count_does_not_grow_with_the_history(anna, usdt):
    def reviewed_with_history(rows: int) -> WithdrawalRequest:
        customer, other = UserFactory(), UserFactory()
        deposit(other, usdt, "500.00")
        for n in range(rows):
            deposit(customer, usdt, "10.00")
            earlier = withdraw(customer, usdt, "2.00")
            withdraw(other, usdt, "1.00")  # another user at the same address
            Payment.objects.create(
                user=UserFactory(), amount_usd=Decimal("3.00"), currency=usdt, pay_address=TRON
            )
            withdrawals.withdrawal_add_note(
                withdrawal_id=earlier.pk, author=anna.user, text=f"note {n}"
            )
        withdrawal = withdraw(customer, usdt, "5.00")
        for n in range(rows):
            withdrawals.withdrawal_add_note(
                withdrawal_id=withdrawal.pk, author=anna.user, text=f"note {n}"
            )
            request = anna.get("/admin/").wsgi_request
            log_action(request, withdrawal, f"entry {n}")
        return withdrawal

    small, large = reviewed_with_history(5), reviewed_with_history(50)
    change_page(anna, small)  # warm the caches (content types, the session) once

    captures = []
    for withdrawal in (small, large):
        with CaptureQueriesContext(connection) as captured:
            page = change_page(anna, withdrawal)
        captures.append([q["sql"] for q in captured.captured_queries])
        assert section(page, "timeline").count('class="timeline-note"') > 4
    assert len(captures[0]) == len(captures[1]), captures
    large_page = change_page(anna, large)
    assert 'id="postings-total">101 postings' in section(large_page, "history")
    assert section(large_page, "history").count('<tr class="posting">') == 20


# --- the payout at NowPayments ------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_payout_block_shows_the_payout_and_its_hash(sandbox, usdt, settings):
    settings.PAYMENTS_PAYOUTS_ENABLED = True
    settings.PAYMENTS_PAYOUT_FAILED_SETTLE_SECONDS = 1800
    sandbox.control.set_balance("usdttrc20", "1000000")
    anna = staff("anna", "approver")
    customer = UserFactory()
    ledger.post(user_id=customer.pk, kind="deposit", amount_usd=Decimal("50"), idempotency_key="p")
    withdrawal = withdraw(customer, usdt, "20.00")
    withdrawals.withdrawal_approve(withdrawal_id=withdrawal.pk, admin_user=anna.user)
    sent = withdrawals.withdrawal_payout_send(withdrawal_id=withdrawal.pk)
    assert sent.provider_payout_id

    payout = section(change_page(anna, sent), "payout")
    assert f'<td class="payout-id">{sent.provider_payout_id}</td>' in payout
    assert f'<td class="batch-id">{sent.provider_batch_id}</td>' in payout
    recorded = sent.provider_data["withdrawal"]["status"]
    assert f'<td class="payout-status">{recorded}</td>' in payout
    assert "none yet" in payout

    (item,) = sandbox.control.advance_payout(sent.provider_payout_id, status="FINISHED")
    assert withdrawals.payouts_poll().completed == 1
    payout = section(change_page(anna, sent), "payout")
    assert f"<code>{item['hash']}</code>" in payout
    assert f'href="https://tronscan.org/#/transaction/{item["hash"]}"' in payout
    timeline = section(change_page(anna, sent), "timeline")
    assert timeline.index("Approved") < timeline.index("Processing") < timeline.index("Completed")


# --- Approve and Reject on the review page ------------------------------------------------------


@pytest.fixture
def pending(usdt) -> WithdrawalRequest:
    customer = UserFactory(username="paula")
    ledger.post(user_id=customer.pk, kind="deposit", amount_usd=Decimal("50"), idempotency_key="d")
    return withdraw(customer, usdt, "20.00")


def test_the_buttons_follow_the_status_and_the_permission(anna, vera, pending):
    page = change_page(anna, pending)
    assert f'<a id="approve-button" href="{LIST}{pending.pk}/approve/"' in page
    assert f'<a id="reject-button" href="{LIST}{pending.pk}/reject/"' in page
    viewer_page = change_page(vera, pending)
    assert "approve-button" not in viewer_page
    assert "reject-button" not in viewer_page
    assert 'id="review-amounts"' in viewer_page  # a viewer still reviews

    withdrawals.withdrawal_approve(withdrawal_id=pending.pk, admin_user=anna.user)
    page = change_page(anna, pending)
    assert "approve-button" not in page
    assert 'id="reject-button"' in page  # an approved request may still be rejected
    withdrawals.withdrawal_reject(withdrawal_id=pending.pk, admin_user=anna.user, notes="no")
    page = change_page(anna, pending)
    assert "approve-button" not in page
    assert "reject-button" not in page


@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_the_confirmation_page_changes_nothing_until_confirmed(anna, pending, decision):
    url = f"{LIST}{pending.pk}/{decision}/"
    page = anna.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert '<textarea name="reason"' in html
    assert '<button type="submit" name="confirm" value="yes"' in html
    assert pending.internal_withdrawal_id in html
    assert "20.00 USD" in html
    # A POST that does not confirm only shows the page again.
    assert anna.post(url, {"reason": "looks fine"}).status_code == 200
    after = reload(pending)
    assert (after.status, after.admin_notes, after.admin_user) == ("pending", "", None)
    assert entries(pending) == []
    assert refunds(pending) == 0


def test_approve_on_the_page_with_a_note(anna, pending):
    response = anna.post(
        f"{LIST}{pending.pk}/approve/", {"reason": "called them,\n all fine", "confirm": "yes"}
    )
    assert response.status_code == 302
    assert response["Location"] == f"{LIST}{pending.pk}/change/"
    landed = anna.get(response["Location"])
    assert shown(landed) == [f"Withdrawal {pending.internal_withdrawal_id} approved."]
    approved = reload(pending)
    assert (approved.status, approved.admin_user) == ("approved", anna.user)
    assert approved.admin_notes.endswith(" UTC anna: called them, all fine")
    assert entries(pending) == ["Approved. Note: called them, all fine"]
    assert "Approved. Note: called them, all fine" in section(landed.content.decode(), "timeline")
    history = anna.get(f"{LIST}{pending.pk}/history/").content.decode()
    assert "Approved. Note: called them, all fine" in history


def test_approve_without_a_note_adds_none(anna, pending):
    anna.post(f"{LIST}{pending.pk}/approve/", {"reason": " ", "confirm": "yes"})
    approved = reload(pending)
    assert (approved.status, approved.admin_notes) == ("approved", "")
    assert entries(pending) == ["Approved."]


def test_reject_without_a_reason_is_refused(anna, pending):
    response = anna.post(f"{LIST}{pending.pk}/reject/", {"reason": " \n ", "confirm": "yes"})
    assert response.status_code == 200
    assert shown(response) == ["Say why the withdrawal is rejected: the user is shown the reason."]
    assert '<textarea name="reason"' in response.content.decode()
    after = reload(pending)
    assert (after.status, after.rejection_reason, after.admin_notes) == ("pending", "", "")
    assert refunds(pending) == 0
    assert entries(pending) == []


def test_a_reason_too_long_for_the_user_is_refused(anna, pending):
    response = anna.post(f"{LIST}{pending.pk}/reject/", {"reason": "x" * 501, "confirm": "yes"})
    assert response.status_code == 200
    assert shown(response) == ["A rejection reason is at most 500 characters (this one has 501)."]
    assert reload(pending).status == "pending"
    assert entries(pending) == []


def test_reject_stores_the_reason_and_keeps_earlier_notes(anna, pending):
    bob = staff("bob", "approver")
    withdrawals.withdrawal_add_note(withdrawal_id=pending.pk, author=bob.user, text="first look")
    withdrawals.withdrawal_add_note(withdrawal_id=pending.pk, author=anna.user, text="asked why")
    response = anna.post(
        f"{LIST}{pending.pk}/reject/",
        {"reason": "The address is on a sanctions list.", "confirm": "yes"},
        follow=True,
    )
    assert shown(response) == [f"Withdrawal {pending.internal_withdrawal_id} rejected."]
    rejected = reload(pending)
    assert rejected.status == "rejected"
    assert rejected.rejection_reason == "The address is on a sanctions list."
    lines = rejected.admin_notes.splitlines()
    assert len(lines) == 3
    assert lines[0].endswith(" UTC bob: first look")
    assert lines[1].endswith(" UTC anna: asked why")
    assert lines[2].endswith(" UTC anna: The address is on a sanctions list.")
    assert refunds(pending) == 1
    assert UserBalance.objects.get(user=pending.user).balance_usd == Decimal("50.00")
    assert entries(pending) == [
        "Rejected (the hold is refunded): The address is on a sanctions list."
    ]
    timeline = section(response.content.decode(), "timeline")
    # Merged by time: the request, the notes, then the rejection with its note and log entry.
    assert timeline.index("Requested") < timeline.index("first look")
    assert timeline.index("first look") < timeline.index("asked why")
    assert timeline.index("asked why") < timeline.index("Rejected (the hold is refunded): The")
    assert "Rejected (hold refunded): The address is on a sanctions list." in timeline
    # Rejected now: the confirmation page sends the operator back with a message.
    again = anna.get(f"{LIST}{pending.pk}/reject/", follow=True)
    assert shown(again) == [
        f"Withdrawal {pending.internal_withdrawal_id} is rejected: it cannot be rejected."
    ]
    assert refunds(pending) == 1


def test_the_seeds_orm_rejection_stores_a_neutral_reason(anna, pending, usdt):
    pending.status = WithdrawalRequest.Status.REJECTED
    pending.admin_user = anna.user
    pending.save()
    rejected = reload(pending)
    assert rejected.rejection_reason == "Rejected by an operator."
    assert rejected.admin_notes == ""
    assert refunds(rejected) == 1
    # The service without a reason does the same; with one, the reason is the user's to read.
    customer = UserFactory()
    ledger.post(user_id=customer.pk, kind="deposit", amount_usd=Decimal("9"), idempotency_key="n")
    other = withdraw(customer, usdt, "5.00")
    withdrawals.withdrawal_reject(withdrawal_id=other.pk, admin_user=anna.user)
    assert reload(other).rejection_reason == "Rejected by an operator."
    assert reload(other).admin_notes == ""


@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_nobody_decides_their_own_request_on_the_page(anna, usdt, decision):
    ledger.post(user_id=anna.user.pk, kind="deposit", amount_usd=Decimal("50"), idempotency_key="o")
    own = withdraw(anna.user, usdt, "20.00")
    response = anna.post(f"{LIST}{own.pk}/{decision}/", {"reason": "mine", "confirm": "yes"})
    assert response.status_code == 200
    assert shown(response) == ["Nobody may approve or reject their own withdrawal request."]
    after = reload(own)
    assert (after.status, after.admin_notes, after.rejection_reason) == ("pending", "", "")
    assert refunds(own) == 0
    assert entries(own) == []


@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_a_viewer_gets_403_and_changes_nothing(vera, pending, decision):
    url = f"{LIST}{pending.pk}/{decision}/"
    assert vera.get(url).status_code == 403
    assert vera.post(url, {"reason": "x", "confirm": "yes"}).status_code == 403
    assert reload(pending).status == "pending"
    assert entries(pending) == []


def test_a_post_without_the_csrf_token_is_refused(pending):
    strict = Client(enforce_csrf_checks=True)
    user = UserFactory(username="csrf-anna", is_staff=True)
    user.groups.add(Group.objects.get(name="approver"))
    strict.force_login(user)
    response = strict.post(f"{LIST}{pending.pk}/approve/", {"confirm": "yes"})
    assert response.status_code == 403
    assert reload(pending).status == "pending"


def test_an_unknown_or_malformed_id_is_no_error(anna):
    for object_id in ("not-a-uuid", "00000000-0000-0000-0000-000000000000"):
        response = anna.get(f"{LIST}{object_id}/approve/", follow=True)
        assert response.redirect_chain[0] == (LIST, 302)
        assert shown(response) == [f"No withdrawal request has the id {object_id!r}."]
        response = anna.post(f"{LIST}{object_id}/reject/", {"confirm": "yes"}, follow=True)
        assert response.redirect_chain[0] == (LIST, 302)
        assert shown(response) == [f"No withdrawal request has the id {object_id!r}."]


# --- the list actions go through a confirmation page -------------------------------------------


def act(client: Client, action: str, objects: list, **extra: str) -> Any:
    return client.post(
        LIST, {"action": action, "_selected_action": [str(o.pk) for o in objects], **extra}
    )


def test_approve_selected_asks_for_confirmation_first(anna, usdt):
    customers = [UserFactory(username=f"c{n}") for n in range(2)]
    for n, customer in enumerate(customers):
        ledger.post(
            user_id=customer.pk, kind="deposit", amount_usd=Decimal("50"), idempotency_key=f"{n}"
        )
    selected = [withdraw(customer, usdt, "20.00") for customer in customers]
    page = act(anna, "approve_selected", selected)
    assert page.status_code == 200
    html = page.content.decode()
    for withdrawal in selected:
        assert withdrawal.internal_withdrawal_id in html
        assert TRON in html
    assert '<textarea name="reason"' in html
    assert all(reload(w).status == "pending" for w in selected)

    done = act(anna, "approve_selected", selected, apply="1", reason="batch checked")
    assert done.status_code == 302
    for withdrawal in selected:
        approved = reload(withdrawal)
        assert approved.status == "approved"
        assert approved.admin_notes.endswith(" UTC anna: batch checked")
        assert entries(withdrawal) == ["Approved. Note: batch checked"]


def test_reject_selected_stores_each_reason(anna, pending):
    page = act(anna, "reject_selected", [pending])
    assert 'name="reason"' in page.content.decode()
    assert "required" in page.content.decode()
    act(anna, "reject_selected", [pending], apply="1", reason="duplicate request")
    rejected = reload(pending)
    assert (rejected.status, rejected.rejection_reason) == ("rejected", "duplicate request")
    assert entries(pending) == ["Rejected (the hold is refunded): duplicate request"]


# --- the list: the review queue by default --------------------------------------------------------


def test_the_list_opens_on_the_review_queue_oldest_first(anna, usdt):
    customer = UserFactory()
    ledger.post(user_id=customer.pk, kind="deposit", amount_usd=Decimal("90"), idempotency_key="q")
    first, second, third = (withdraw(customer, usdt, "10.00") for _ in range(3))
    withdrawals.withdrawal_approve(withdrawal_id=second.pk, admin_user=anna.user)
    withdrawals.withdrawal_reject(withdrawal_id=third.pk, admin_user=anna.user, notes="no")
    fourth = withdraw(customer, usdt, "10.00")

    queue = anna.get(LIST)
    assert queue.status_code == 200
    assert [w.pk for w in queue.context["cl"].result_list] == [first.pk, fourth.pk]
    html = queue.content.decode()
    assert re.search(r'<li class="selected">\s*<a href="\?review=needs"', html)
    assert re.search(r'<a href="\?review=all"[^>]*>All \(newest first\)</a>', html)

    everything = anna.get(f"{LIST}?review=all")
    assert [w.pk for w in everything.context["cl"].result_list] == [
        fourth.pk,
        third.pk,
        second.pk,
        first.pk,
    ]
    assert re.search(r'<li class="selected">\s*<a href="\?review=all"', everything.content.decode())
    # Another filter on its own is not the queue: every status, newest first.
    approved = anna.get(f"{LIST}?status__exact=approved")
    assert [w.pk for w in approved.context["cl"].result_list] == [second.pk]


def test_the_list_is_short_with_the_status_early(anna, pending):
    page = anna.get(f"{LIST}?review=all")
    columns = list(page.context["cl"].list_display)
    assert columns == [
        "action_checkbox",
        "internal_withdrawal_id",
        "status",
        "user",
        "amount_usd",
        "final_amount_usd",
        "currency",
        "created_at",
    ]


def test_actions_posted_to_the_plain_list_reach_every_status(anna, pending, settings):
    # The default view filters what is shown, never what an action's POST selects.
    settings.PAYMENTS_PAYOUTS_ENABLED = False
    withdrawals.withdrawal_approve(withdrawal_id=pending.pk, admin_user=anna.user)
    response = act(anna, "mark_processing", [pending])
    assert response.status_code == 302
    assert reload(pending).status == "processing"


# --- at 1280 px the status column is in view (headless Chromium) -----------------------------


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_status_column_is_in_view_at_1280_px(live_server, usdt, settings):
    """The list as an operator sees it at 1280 px: no horizontal scroll, the status on screen."""
    import os

    chromium, chromedriver = "/usr/bin/chromium", "/usr/bin/chromedriver"
    if not (os.access(chromium, os.X_OK) and os.access(chromedriver, os.X_OK)):
        pytest.skip("needs Chromium and chromedriver")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    anna = staff("anna", "approver")
    for n in range(3):  # long names and big amounts: the widest rows the list shows
        customer = UserFactory(username=f"customer-with-a-long-name-{n:04d}@example.com")
        ledger.post(
            user_id=customer.pk,
            kind="deposit",
            amount_usd=Decimal("99999.99"),
            idempotency_key=f"wide{n}",
        )
        withdraw(customer, usdt, "12345.67", network_fee_usd=Decimal("1234.56"))
    options = Options()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    try:
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False},
        )
        driver.get(f"{live_server.url}/admin/login/")
        driver.add_cookie({"name": "sessionid", "value": anna.cookies["sessionid"].value})
        for query in ("", "?review=all"):
            driver.get(f"{live_server.url}{LIST}{query}")
            seen = driver.execute_script(
                """
                const header = document.querySelector("#result_list th.column-status");
                const cell = document.querySelector("#result_list td.field-status");
                const box = document.querySelector("#changelist .results");
                return {
                    width: window.innerWidth,
                    scroll: document.documentElement.scrollWidth,
                    header: header && header.getBoundingClientRect().right,
                    cell: cell && cell.getBoundingClientRect().right,
                    box: box && box.getBoundingClientRect().right,
                    scrolled: box && box.scrollLeft,
                };
                """
            )
            assert seen["width"] == 1280, seen
            assert seen["scroll"] <= seen["width"], f"horizontal scroll at 1280 px: {seen}"
            assert seen["header"] is not None, "no status column"
            assert seen["cell"] is not None, "no status cell"
            # In view: inside the window, and inside the table's own scrolling box unscrolled.
            assert seen["header"] <= seen["width"], seen
            assert seen["cell"] <= min(seen["width"], seen["box"]), seen
            assert seen["scrolled"] == 0, seen
    finally:
        driver.quit()
