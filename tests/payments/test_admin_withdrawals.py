"""The withdrawal admin against the sandbox: mark completed / failed move a withdrawal with a
payout only on NowPayments' word, manual hashes have the network's format, forced overrides
need a second operator, and racing operators and pollers never pay anyone twice."""

from __future__ import annotations

import random
import threading
import time
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client

from payments import ledger
from payments.errors import InvalidTransition, PermissionDenied
from payments.models import LedgerDrift, Transaction, WithdrawalRequest
from payments.models.withdrawal import WithdrawalOverride
from payments.services import withdrawals
from tests.factories import CurrencyFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/admin/payments/withdrawalrequest/"
TRON = "TQn9Y2khEsLJW1ChVWFMSMeRDow5KcbLSE"
GOOD_TRON_HASH = "a" * 64


def operator(username: str, *codenames: str) -> Client:
    user = UserFactory(username=username, is_staff=True)
    wanted = {"view_withdrawalrequest", "change_withdrawalrequest", *codenames}
    user.user_permissions.add(*Permission.objects.filter(codename__in=wanted))
    client = Client()
    client.force_login(user)
    client.user = user  # type: ignore[attr-defined]
    return client


@pytest.fixture
def alice():
    """An operator who reviews withdrawals and may approve overrides (not her own)."""
    return operator("alice", "approve_withdrawalrequest", "override_withdrawalrequest")


@pytest.fixture
def bob():
    """A supervisor: holds the override permission."""
    return operator("bob", "approve_withdrawalrequest", "override_withdrawalrequest")


@pytest.fixture
def carol():
    """An operator without the override permission."""
    return operator("carol", "approve_withdrawalrequest")


@pytest.fixture
def paying(sandbox, usdt, settings):
    settings.PAYMENTS_PAYOUTS_ENABLED = True
    settings.PAYMENTS_PAYOUT_FAILED_SETTLE_SECONDS = 1800
    sandbox.control.set_balance("usdttrc20", "1000000")
    return sandbox


def processing(currency, count: int = 1) -> list[WithdrawalRequest]:
    """Withdrawals approved and sent: processing, with a payout at the sandbox."""
    reviewer = UserFactory(is_staff=True)
    reviewer.user_permissions.add(Permission.objects.get(codename="approve_withdrawalrequest"))
    sent = []
    for n in range(count):
        user = UserFactory()
        ledger.post(
            user_id=user.pk, kind="deposit", amount_usd=Decimal("100.00"), idempotency_key=f"d{n}"
        )
        withdrawal = withdrawals.withdrawal_create(
            user_id=user.pk,
            amount_usd=Decimal("21.50"),
            currency_id=currency.pk,
            wallet_address=TRON,
            network_fee_usd=Decimal("1.00"),
            service_fee_usd=Decimal("0.50"),
        )
        withdrawals.withdrawal_approve(withdrawal_id=withdrawal.pk, admin_user=reviewer)
        sent.append(withdrawals.withdrawal_payout_send(withdrawal_id=withdrawal.pk))
    assert all(w.status == "processing" and w.provider_payout_id for w in sent)
    return sent


def act(client: Client, action: str, objects: list, **extra: str) -> list[str]:
    response = client.post(
        URL,
        {"action": action, "_selected_action": [str(o.pk) for o in objects], **extra},
        follow=True,
    )
    assert response.status_code == 200, response.status_code
    shown = [str(m) for m in get_messages(response.wsgi_request)]
    return [m for m in shown if "was changed successfully" not in m]  # the change form's


def refunds(withdrawal) -> int:
    return Transaction.objects.filter(
        withdrawal_request_id=withdrawal.pk, transaction_type="refund"
    ).count()


def reload(withdrawal) -> WithdrawalRequest:
    return WithdrawalRequest.objects.get(pk=withdrawal.pk)


# --- mark failed / mark completed on the provider's word ----------------------------------


@pytest.mark.parametrize("status", [None, "PROCESSING", "SENDING", "FINISHED"])
def test_mark_failed_is_refused_while_the_payout_may_be_paid(paying, usdt, alice, status):
    (withdrawal,) = processing(usdt)
    if status:
        paying.control.advance_payout(withdrawal.provider_payout_id, status=status)
    reported = status or "WAITING"
    messages = act(alice, "mark_failed", [withdrawal])
    assert len(messages) == 1
    assert f"reports payout {withdrawal.provider_payout_id} as {reported}" in messages[0]
    assert reload(withdrawal).status == "processing"
    assert refunds(withdrawal) == 0


@pytest.mark.parametrize("status", ["FAILED", "REJECTED"])
def test_mark_failed_applies_when_the_provider_reports_failure(paying, usdt, alice, status):
    (withdrawal,) = processing(usdt)
    paying.control.advance_payout(withdrawal.provider_payout_id, status=status)
    assert act(alice, "mark_failed", [withdrawal]) == ["1 withdrawal(s) marked failed."]
    failed = reload(withdrawal)
    assert failed.status == "failed"
    assert status.lower() in failed.failure_reason
    assert refunds(failed) == 1


def test_mark_completed_takes_the_providers_hash_not_a_typed_one(paying, usdt, alice):
    (withdrawal,) = processing(usdt)
    response = alice.post(
        f"{URL}{withdrawal.pk}/change/",
        {"transaction_hash": "not-a-real-hash", "admin_notes": "", "failure_reason": ""},
        follow=True,
    )
    assert response.status_code == 200
    messages = act(alice, "mark_completed", [withdrawal])
    assert "as WAITING, not finished" in messages[0]
    assert reload(withdrawal).status == "processing"
    (item,) = paying.control.advance_payout(withdrawal.provider_payout_id, status="FINISHED")
    assert act(alice, "mark_completed", [withdrawal]) == ["1 withdrawal(s) completed."]
    done = reload(withdrawal)
    assert (done.status, done.transaction_hash) == ("completed", item["hash"])
    assert refunds(done) == 0


def test_the_lifecycle_refuses_an_operators_word_where_a_payout_exists(paying, usdt):
    (withdrawal,) = processing(usdt)
    with pytest.raises(InvalidTransition, match="only when NowPayments reports it"):
        withdrawals.withdrawal_fail(withdrawal_id=withdrawal.pk, reason="by hand")
    with pytest.raises(InvalidTransition, match="only when NowPayments reports it"):
        withdrawals.withdrawal_complete(withdrawal_id=withdrawal.pk, transaction_hash="a" * 64)
    stale = WithdrawalRequest.objects.get(pk=withdrawal.pk)
    stale.status = "failed"
    with pytest.raises(InvalidTransition, match="only when NowPayments reports it"):
        stale.save()  # the seed's ORM path follows the same rule
    assert reload(withdrawal).status == "processing"
    assert refunds(withdrawal) == 0


# --- manual payouts: the typed hash must have the network's format ------------------------


@pytest.mark.parametrize(
    ("network", "tx_hash", "ok"),
    [
        ("TRC20", "ab" * 32, True),
        ("TRC20", "0x" + "ab" * 32, False),
        ("TRC20", "not-a-real-hash", False),
        ("ERC20", "0x" + "Ab" * 32, True),
        ("ERC20", "ab" * 32, False),
        ("BSC", "0x" + "1" * 64, True),
        ("MATIC", "0x" + "1" * 63, False),
        ("BTC", "f" * 64, True),
        ("BTC", "f" * 65, False),
        ("SOL", "5" * 88, True),
        ("SOL", "0" * 88, False),
        ("TON", "A" * 43 + "=", True),
        ("TON", "A" * 40, False),
        ("XYZ", "abc_DEF-1234567890", True),
        ("XYZ", "short", False),
    ],
)
def test_manual_completion_needs_a_hash_in_the_networks_format(
    settings, alice, network, tx_hash, ok
):
    settings.PAYMENTS_PAYOUTS_ENABLED = False
    user = UserFactory()
    ledger.post(user_id=user.pk, kind="deposit", amount_usd=Decimal("50.00"), idempotency_key="m")
    currency = CurrencyFactory(code=f"T{network}", network=network, token="T")
    withdrawal = withdrawals.withdrawal_create(
        user_id=user.pk, amount_usd=Decimal("20.00"), currency_id=currency.pk, wallet_address="a1"
    )
    assert act(alice, "approve_selected", [withdrawal], apply="1") == ["1 withdrawal(s) approved."]
    response = alice.post(
        f"{URL}{withdrawal.pk}/change/",
        {"transaction_hash": tx_hash, "admin_notes": "", "failure_reason": ""},
        follow=True,
    )
    assert response.status_code == 200
    messages = act(alice, "mark_completed", [withdrawal])
    after = reload(withdrawal)
    if ok:
        assert messages == ["1 withdrawal(s) completed."]
        assert (after.status, after.transaction_hash) == ("completed", tx_hash)
    else:
        assert "is not a" in messages[0]
        assert "transaction hash" in messages[0]
        assert after.status == "approved"


def test_manual_failure_needs_no_provider(settings, usdt, alice):
    settings.PAYMENTS_PAYOUTS_ENABLED = False
    user = UserFactory()
    ledger.post(user_id=user.pk, kind="deposit", amount_usd=Decimal("50.00"), idempotency_key="m")
    withdrawal = withdrawals.withdrawal_create(
        user_id=user.pk, amount_usd=Decimal("20.00"), currency_id=usdt.pk, wallet_address=TRON
    )
    act(alice, "approve_selected", [withdrawal], apply="1")
    act(alice, "mark_processing", [withdrawal])
    assert act(alice, "mark_failed", [withdrawal]) == ["1 withdrawal(s) marked failed."]
    assert refunds(withdrawal) == 1


def test_a_claim_never_sent_can_be_failed_by_an_operator_and_is_then_never_sent(
    paying, usdt, alice
):
    """A processing withdrawal whose payout call never went out (its worker died after the
    claim, or NowPayments did nothing for the call) holds no payout: an operator fails it
    without an override, and the claim's holder can no longer send it."""
    user = UserFactory()
    ledger.post(user_id=user.pk, kind="deposit", amount_usd=Decimal("50.00"), idempotency_key="u")
    withdrawal = withdrawals.withdrawal_create(
        user_id=user.pk, amount_usd=Decimal("20.00"), currency_id=usdt.pk, wallet_address=TRON
    )
    act(alice, "approve_selected", [withdrawal], apply="1")
    withdrawals.withdrawal_start_processing(withdrawal_id=withdrawal.pk, claim="stalled")
    assert act(alice, "mark_failed", [withdrawal]) == ["1 withdrawal(s) marked failed."]
    failed = reload(withdrawal)
    assert failed.status == "failed"
    assert refunds(failed) == 1
    assert withdrawals.withdrawal_mark_sending(withdrawal_id=withdrawal.pk, claim="stalled") is None
    assert withdrawals.unsent_withdrawal_ids() == []
    assert paying.control.payouts() == []


def test_a_claim_marked_sending_is_not_failed_on_an_operators_word(paying, usdt, alice):
    user = UserFactory()
    ledger.post(user_id=user.pk, kind="deposit", amount_usd=Decimal("50.00"), idempotency_key="s")
    withdrawal = withdrawals.withdrawal_create(
        user_id=user.pk, amount_usd=Decimal("20.00"), currency_id=usdt.pk, wallet_address=TRON
    )
    act(alice, "approve_selected", [withdrawal], apply="1")
    withdrawals.withdrawal_start_processing(withdrawal_id=withdrawal.pk, claim="mine")
    assert withdrawals.withdrawal_mark_sending(withdrawal_id=withdrawal.pk, claim="mine")
    with pytest.raises(InvalidTransition, match="only when NowPayments reports it"):
        withdrawals.withdrawal_fail(withdrawal_id=withdrawal.pk, reason="by hand")
    (message,) = act(alice, "mark_failed", [withdrawal])
    assert "shows no payout" in message
    assert (reload(withdrawal).status, refunds(withdrawal)) == ("processing", 0)


# --- forced overrides: a second operator with the permission ------------------------------


def test_a_forced_failure_needs_a_different_supervisor(paying, usdt, alice, bob, carol):
    (withdrawal,) = processing(usdt)
    page = alice.post(
        URL, {"action": "request_forced_failure", "_selected_action": [str(withdrawal.pk)]}
    )
    assert page.status_code == 200
    assert 'name="override_reason"' in page.content.decode()
    assert act(alice, "request_forced_failure", [withdrawal], apply="1", override_reason="") == [
        f"{withdrawal.internal_withdrawal_id}: A forced override needs a reason."
    ]
    messages = act(
        alice,
        "request_forced_failure",
        [withdrawal],
        apply="1",
        override_reason="NowPayments support confirms it will never be sent",
    )
    assert messages == ["1 withdrawal(s) have a forced fail waiting for a supervisor's approval."]
    again = act(alice, "request_forced_failure", [withdrawal], apply="1", override_reason="x")
    assert "already has a forced override waiting" in again[0]

    # The requester cannot approve her own request, even with the permission.
    assert (
        "Nobody approves or refuses the forced override they requested"
        in (act(alice, "approve_forced_override", [withdrawal], apply="1")[0])
    )
    # An operator without the permission cannot approve it.
    assert (
        "may not approve or refuse forced withdrawal overrides"
        in (act(carol, "approve_forced_override", [withdrawal], apply="1")[0])
    )
    override = WithdrawalOverride.objects.get(withdrawal_id=withdrawal.pk)
    with pytest.raises(PermissionDenied):
        withdrawals.withdrawal_override_approve(override_id=override.pk, approver=carol.user)
    with pytest.raises(PermissionDenied):
        withdrawals.withdrawal_override_approve(override_id=override.pk, approver=alice.user)
    assert reload(withdrawal).status == "processing"
    assert refunds(withdrawal) == 0
    assert not LedgerDrift.objects.filter(kind="forced_override").exists()

    # The supervisor sees what is pending, then approves: applied once, with a finding.
    listing = bob.post(
        URL, {"action": "approve_forced_override", "_selected_action": [str(withdrawal.pk)]}
    )
    assert "never be sent" in listing.content.decode()
    assert act(bob, "approve_forced_override", [withdrawal], apply="1") == [
        "1 forced override(s) approved."
    ]
    failed = reload(withdrawal)
    assert failed.status == "failed"
    assert refunds(failed) == 1
    override = WithdrawalOverride.objects.get(withdrawal_id=withdrawal.pk)
    assert (override.outcome, override.decided_by) == ("applied", bob.user)
    finding = LedgerDrift.objects.get(kind="forced_override")
    assert finding.subject == f"withdrawal:{withdrawal.pk}"
    assert "alice" in finding.detail
    assert "bob" in finding.detail
    assert act(bob, "approve_forced_override", [withdrawal], apply="1") == [
        "No forced override is waiting for the selected withdrawals."
    ]
    assert refunds(failed) == 1


def test_a_forced_completion_uses_the_requested_hash(paying, usdt, alice, bob):
    (withdrawal,) = processing(usdt)
    override = withdrawals.withdrawal_override_request(
        withdrawal_id=withdrawal.pk,
        action="complete",
        requested_by=bob.user,
        reason="paid from the hot wallet after NowPayments lost it",
        transaction_hash=GOOD_TRON_HASH,
    )
    assert act(alice, "approve_forced_override", [withdrawal], apply="1") == [
        "1 forced override(s) approved."
    ]
    done = reload(withdrawal)
    assert (done.status, done.transaction_hash) == ("completed", GOOD_TRON_HASH)
    assert refunds(done) == 0
    override.refresh_from_db()
    assert override.outcome == "applied"
    assert LedgerDrift.objects.filter(kind="forced_override").count() == 1


def test_an_override_that_can_no_longer_apply_is_refused(paying, usdt, alice, bob, settings):
    (withdrawal,) = processing(usdt)
    withdrawals.withdrawal_override_request(
        withdrawal_id=withdrawal.pk, action="fail", requested_by=alice.user, reason="stuck"
    )
    paying.control.advance_payout(withdrawal.provider_payout_id, status="FINISHED")
    assert withdrawals.payouts_poll().completed == 1
    messages = act(bob, "approve_forced_override", [withdrawal], apply="1")
    assert "The forced override was refused" in messages[0]
    override = WithdrawalOverride.objects.get(withdrawal_id=withdrawal.pk)
    assert override.outcome == "refused"
    assert reload(withdrawal).status == "completed"
    assert refunds(withdrawal) == 0
    assert not LedgerDrift.objects.filter(kind="forced_override").exists()


# --- the race -------------------------------------------------------------------------------


def test_racing_pollers_and_operators_never_pay_anyone_twice(paying, usdt, alice, bob, settings):
    settings.PAYMENTS_PAYOUT_FAILED_SETTLE_SECONDS = 0
    sent = processing(usdt, 20)
    rng = random.Random(20)
    outcome = {w.pk: rng.choice(["FINISHED", "FAILED"]) for w in sent}
    stop = threading.Event()
    errors: list[BaseException] = []

    def worker(body) -> None:
        try:
            while not stop.is_set():
                body()
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
        finally:
            connection.close()

    def poll() -> None:
        withdrawals.payouts_poll()

    def mark(client: Client, action: str) -> None:
        ids = [str(w.pk) for w in rng.sample(sent, 10)]
        response = client.post(URL, {"action": action, "_selected_action": ids})
        assert response.status_code == 302

    threads = [
        threading.Thread(target=worker, args=(poll,)),
        threading.Thread(target=worker, args=(poll,)),
        threading.Thread(target=worker, args=(lambda: mark(alice, "mark_failed"),)),
        threading.Thread(target=worker, args=(lambda: mark(bob, "mark_completed"),)),
        threading.Thread(target=worker, args=(lambda: mark(bob, "mark_failed"),)),
    ]
    for thread in threads:
        thread.start()
    try:
        for withdrawal in rng.sample(sent, len(sent)):
            paying.control.advance_payout(
                withdrawal.provider_payout_id, status=outcome[withdrawal.pk]
            )
            time.sleep(0.05)
        time.sleep(1.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert not errors, errors
    for _ in range(2):  # let the settling time (0 here) pass for the last failures
        withdrawals.payouts_poll()

    remote = {w["id"]: w for batch in paying.control.payouts() for w in batch["withdrawals"]}
    for withdrawal in sent:
        final = reload(withdrawal)
        item = remote[final.provider_payout_id]
        refunded = refunds(final)
        assert refunded <= 1
        assert not (refunded and final.status == "completed"), final.internal_withdrawal_id
        if refunded:
            assert final.status == "failed"
            assert item["status"] == "FAILED", "every refund is of a payout the provider failed"
        if final.status == "completed":
            assert item["status"] == "FINISHED"
            assert final.transaction_hash == item["hash"]
        assert final.status == {"FINISHED": "completed", "FAILED": "failed"}[item["status"]]
