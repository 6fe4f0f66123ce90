"""Withdrawal requests: hold on creation, review rules, one refund, frozen terms."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission

from payments import ledger
from payments.errors import (
    CurrencyUnavailable,
    InsufficientFunds,
    InvalidAddress,
    InvalidAmount,
    InvalidTransition,
    PermissionDenied,
)
from payments.models import Transaction, UserBalance, WithdrawalRequest
from payments.services import withdrawals
from tests.factories import CurrencyFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def funded_user():
    user = UserFactory()
    ledger.post(user_id=user.pk, kind="deposit", amount_usd=Decimal("100.00"), idempotency_key="f")
    return user


@pytest.fixture
def reviewer():
    admin = UserFactory(is_staff=True)
    admin.user_permissions.add(Permission.objects.get(codename="approve_withdrawalrequest"))
    return admin


@pytest.fixture
def currency():
    return CurrencyFactory(address_regex=r"^T[1-9A-HJ-NP-Za-km-z]{5,40}$")


def create(user, currency, amount="40.00", **extra):
    return withdrawals.withdrawal_create(
        user_id=user.pk,
        amount_usd=Decimal(amount),
        currency_id=currency.pk,
        wallet_address=extra.pop("wallet_address", "TQn9Y2khEsLJW1ChVWFMSMeRDow5KcbLSE"),
        **extra,
    )


def balance(user) -> Decimal:
    return UserBalance.objects.get(user=user).balance_usd


def test_creation_holds_the_amount(funded_user, currency):
    withdrawal = create(funded_user, currency)
    assert balance(funded_user) == Decimal("60.00")
    debit = Transaction.objects.get(withdrawal_request=withdrawal)
    assert (debit.transaction_type, debit.amount_usd) == ("withdrawal", Decimal("-40.00"))


def test_more_than_the_balance_is_refused_and_leaves_nothing(funded_user, currency):
    with pytest.raises(InsufficientFunds):
        create(funded_user, currency, amount="100.01")
    assert not WithdrawalRequest.objects.exists()
    assert balance(funded_user) == Decimal("100.00")


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ({"amount": "1.00", "network_fee_usd": Decimal("1.00")}, InvalidAmount),
        ({"amount": "10.001"}, InvalidAmount),
        ({"wallet_address": "  "}, InvalidAddress),
        ({"wallet_address": "0xNotTron"}, InvalidAddress),
    ],
)
def test_bad_requests_are_refused(funded_user, currency, extra, error):
    amount = extra.pop("amount", "40.00")
    with pytest.raises(error):
        create(funded_user, currency, amount=amount, **extra)
    assert not WithdrawalRequest.objects.exists()
    assert balance(funded_user) == Decimal("100.00")


def test_inactive_currency_is_refused(funded_user, currency):
    currency.is_active = False
    currency.save()
    with pytest.raises(CurrencyUnavailable):
        create(funded_user, currency)


def test_reject_refunds_exactly_once(funded_user, currency, reviewer):
    withdrawal = create(funded_user, currency)
    withdrawals.withdrawal_reject(withdrawal_id=withdrawal.pk, admin_user=reviewer, notes="KYC")
    assert balance(funded_user) == Decimal("100.00")
    with pytest.raises(InvalidTransition):
        withdrawals.withdrawal_reject(withdrawal_id=withdrawal.pk, admin_user=reviewer)
    assert Transaction.objects.filter(transaction_type="refund").count() == 1
    withdrawal.refresh_from_db()
    assert withdrawal.rejected_at is not None
    assert withdrawal.admin_notes.endswith(f" UTC {reviewer.username}: KYC")


def test_failed_payout_refunds(funded_user, currency, reviewer):
    withdrawal = create(funded_user, currency)
    withdrawals.withdrawal_approve(withdrawal_id=withdrawal.pk, admin_user=reviewer)
    withdrawals.withdrawal_start_processing(withdrawal_id=withdrawal.pk)
    withdrawals.withdrawal_fail(withdrawal_id=withdrawal.pk, reason="address blacklisted")
    assert balance(funded_user) == Decimal("100.00")
    assert UserBalance.objects.get(user=funded_user).total_withdrawn == Decimal("0.00")


def test_approval_needs_the_permission(funded_user, currency):
    withdrawal = create(funded_user, currency)
    staff_without_permission = UserFactory(is_staff=True)
    with pytest.raises(PermissionDenied):
        withdrawals.withdrawal_approve(
            withdrawal_id=withdrawal.pk, admin_user=staff_without_permission
        )
    withdrawal.refresh_from_db()
    assert withdrawal.status == "pending"


def test_nobody_approves_their_own_request(currency):
    owner = UserFactory(is_superuser=True, is_staff=True)
    ledger.post(user_id=owner.pk, kind="deposit", amount_usd=Decimal("50.00"), idempotency_key="o")
    withdrawal = create(owner, currency)
    with pytest.raises(PermissionDenied):
        withdrawals.withdrawal_approve(withdrawal_id=withdrawal.pk, admin_user=owner)
    # Through the ORM, as the seed does it, the same rule holds.
    withdrawal.status = WithdrawalRequest.Status.APPROVED
    withdrawal.admin_user = owner
    with pytest.raises(PermissionDenied):
        withdrawal.save()
    withdrawal.refresh_from_db()
    assert withdrawal.status == "pending"


def test_only_the_requester_cancels(funded_user, currency):
    withdrawal = create(funded_user, currency)
    with pytest.raises(PermissionDenied):
        withdrawals.withdrawal_cancel(withdrawal_id=withdrawal.pk, user=UserFactory())
    withdrawals.withdrawal_cancel(withdrawal_id=withdrawal.pk, user=funded_user)
    assert balance(funded_user) == Decimal("100.00")


def test_orm_cannot_skip_steps_or_change_terms(funded_user, currency, reviewer):
    withdrawal = create(funded_user, currency)
    withdrawal.status = WithdrawalRequest.Status.COMPLETED
    withdrawal.transaction_hash = "0x1"
    with pytest.raises(InvalidTransition):
        withdrawal.save()
    withdrawal = WithdrawalRequest.objects.get(pk=withdrawal.pk)
    withdrawal.wallet_address = "TSomeoneElse1"
    with pytest.raises(InvalidTransition):
        withdrawal.save()
    withdrawal = WithdrawalRequest.objects.get(pk=withdrawal.pk)
    withdrawal.status = WithdrawalRequest.Status.REJECTED
    withdrawal.admin_user = reviewer
    withdrawal.save()
    assert balance(funded_user) == Decimal("100.00")


def test_completion_needs_a_hash(funded_user, currency, reviewer):
    withdrawal = create(funded_user, currency)
    withdrawals.withdrawal_approve(withdrawal_id=withdrawal.pk, admin_user=reviewer)
    with pytest.raises(InvalidTransition):
        withdrawals.withdrawal_complete(withdrawal_id=withdrawal.pk, transaction_hash=" ")
    done = withdrawals.withdrawal_complete(withdrawal_id=withdrawal.pk, transaction_hash="0xabc")
    assert done.status == "completed"
    assert done.completed_at is not None
    assert balance(funded_user) == Decimal("60.00")


def test_stale_orm_object_cannot_overwrite_a_newer_status(funded_user, currency, reviewer):
    withdrawal = create(funded_user, currency)
    stale = WithdrawalRequest.objects.get(pk=withdrawal.pk)
    withdrawals.withdrawal_cancel(withdrawal_id=withdrawal.pk, user=funded_user)
    stale.status = WithdrawalRequest.Status.APPROVED
    stale.admin_user = reviewer
    with pytest.raises(InvalidTransition):
        stale.save()
    assert WithdrawalRequest.objects.get(pk=withdrawal.pk).status == "cancelled"


def test_an_orm_save_keeps_the_payouts_provider_fields(funded_user, currency, reviewer):
    from payments.services.withdrawals import lifecycle

    withdrawal = create(funded_user, currency)
    withdrawals.withdrawal_approve(withdrawal_id=withdrawal.pk, admin_user=reviewer)
    stale = WithdrawalRequest.objects.get(pk=withdrawal.pk)
    lifecycle.withdrawal_record_payout(
        withdrawal_id=withdrawal.pk, batch_id="8000000001", payout_id="7000000001", data={}
    )
    stale.admin_notes = "checked the address"
    stale.save()
    stored = WithdrawalRequest.objects.get(pk=withdrawal.pk)
    assert stored.admin_notes == "checked the address"
    assert (stored.provider_batch_id, stored.provider_payout_id) == ("8000000001", "7000000001")


def test_notes_are_appended_with_the_time_and_author(funded_user, currency, reviewer):
    withdrawal = create(funded_user, currency)
    with pytest.raises(InvalidTransition, match="needs some text"):
        withdrawals.withdrawal_add_note(withdrawal_id=withdrawal.pk, author=reviewer, text=" \n")
    withdrawals.withdrawal_add_note(withdrawal_id=withdrawal.pk, author=reviewer, text="one")
    withdrawals.withdrawal_add_note(
        withdrawal_id=withdrawal.pk, author=funded_user, text="two\n  lines"
    )
    withdrawals.withdrawal_approve(withdrawal_id=withdrawal.pk, admin_user=reviewer)
    lines = WithdrawalRequest.objects.get(pk=withdrawal.pk).admin_notes.splitlines()
    assert [line[16:] for line in lines] == [
        f" UTC {reviewer.username}: one",
        f" UTC {funded_user.username}: two lines",
    ]
    datetime.strptime(lines[0][:16], "%Y-%m-%d %H:%M")  # noqa: DTZ007 (the text says UTC)


def test_an_orm_save_never_edits_or_drops_a_note(funded_user, currency, reviewer):
    withdrawal = create(funded_user, currency)
    stale = WithdrawalRequest.objects.get(pk=withdrawal.pk)
    withdrawals.withdrawal_add_note(withdrawal_id=withdrawal.pk, author=reviewer, text="kept")
    stale.save()  # loaded before the note: the note stays
    notes = WithdrawalRequest.objects.get(pk=withdrawal.pk).admin_notes
    assert notes.endswith("kept")
    fresh = WithdrawalRequest.objects.get(pk=withdrawal.pk)
    fresh.admin_notes = "replaced"
    with pytest.raises(InvalidTransition, match="only ever added to"):
        fresh.save()
    fresh.admin_notes = notes + "\nappended by the ORM"
    fresh.save()
    assert WithdrawalRequest.objects.get(pk=withdrawal.pk).admin_notes == fresh.admin_notes


def test_with_a_payout_only_the_provider_or_an_override_ends_it(funded_user, currency, reviewer):
    from payments.services.withdrawals import lifecycle

    withdrawal = create(funded_user, currency)
    withdrawals.withdrawal_approve(withdrawal_id=withdrawal.pk, admin_user=reviewer)
    withdrawals.withdrawal_start_processing(withdrawal_id=withdrawal.pk)
    lifecycle.withdrawal_record_payout(
        withdrawal_id=withdrawal.pk, batch_id="8000000001", payout_id="7000000001", data={}
    )
    with pytest.raises(InvalidTransition, match="only when NowPayments reports it"):
        withdrawals.withdrawal_fail(withdrawal_id=withdrawal.pk, reason="by hand")
    done = withdrawals.withdrawal_complete(
        withdrawal_id=withdrawal.pk,
        transaction_hash="ab" * 32,
        confirmation=withdrawals.Confirmation.PROVIDER,
    )
    assert done.status == "completed"
    with pytest.raises(InvalidTransition):  # completed is final: never refunded after
        withdrawals.withdrawal_fail(
            withdrawal_id=withdrawal.pk,
            reason="late",
            confirmation=withdrawals.Confirmation.OVERRIDE,
        )
    assert (
        Transaction.objects.filter(withdrawal_request=done, transaction_type="refund").count() == 0
    )
