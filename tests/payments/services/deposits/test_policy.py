"""The deposit policy: credit what was received, review what does not match, reverse refunds."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from payments.errors import DebtOutstanding
from payments.models import LedgerDrift, Payment, Receivable, Transaction, UserBalance
from payments.services import deposits
from payments.services.providers.nowpayments.types import ProviderPayment
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def payment(sandbox: Any, usdt: Any) -> Payment:
    return deposits.payment_create(
        user_id=UserFactory().pk, amount_usd=Decimal("25.00"), currency_code="USDTTRC20"
    )


def report(sandbox: Any, payment: Payment, status: str, **changes: Any) -> ProviderPayment:
    """What NowPayments would report of the payment, in ``status``, with ``changes``."""
    body = dict(sandbox.control.payment(payment.provider_payment_id))
    body = {k: v for k, v in body.items() if not k.startswith("_")}
    body["payment_status"] = status
    body.setdefault("actually_paid", body["pay_amount"])
    if status in ("finished", "confirming", "partially_paid") and "actually_paid" not in changes:
        changes["actually_paid"] = body["pay_amount"]
    body.update(changes)
    return ProviderPayment.from_dict(body)


def apply(sandbox: Any, payment: Payment, status: str, **changes: Any) -> Payment:
    deposits.payment_apply_report(report=report(sandbox, payment, status, **changes), source="t")
    return Payment.objects.get(pk=payment.pk)


def credited(payment: Payment) -> list[Decimal]:
    return [t.amount_usd for t in Transaction.objects.filter(payment=payment).order_by("sequence")]


def balance(payment: Payment) -> Decimal:
    row = UserBalance.objects.filter(user_id=payment.user_id).first()
    return row.balance_usd if row else Decimal("0.00")


def findings(payment: Payment) -> set[str]:
    return set(LedgerDrift.objects.filter(payment=payment).values_list("kind", flat=True))


def test_a_full_payment_credits_the_price(sandbox: Any, payment: Payment) -> None:
    done = apply(sandbox, payment, "finished")
    assert (done.status, credited(done), balance(done)) == ("completed", [Decimal("25.00")], 25)


def test_an_underpaid_finish_credits_the_received_share(sandbox: Any, payment: Payment) -> None:
    half = payment.pay_amount / 2
    apply(sandbox, payment, "partially_paid", actually_paid=half)
    done = apply(sandbox, payment, "finished", actually_paid=half)  # a dashboard "fix"
    assert done.status == "completed"
    assert credited(done) == [Decimal("12.50")]
    assert balance(done) == Decimal("12.50")


def test_under_the_review_policy_an_underpayment_waits(
    sandbox: Any, payment: Payment, settings: Any
) -> None:
    settings.PAYMENTS_UNDERPAYMENT_POLICY = "review"
    done = apply(sandbox, payment, "finished", actually_paid=payment.pay_amount / 2)
    assert (done.status, credited(done)) == ("review", [])
    assert "underpaid" in done.review_reason
    assert findings(done) == {"payment_in_review"}


def test_an_overpayment_credits_the_price_and_records_the_excess(
    sandbox: Any, payment: Payment
) -> None:
    done = apply(sandbox, payment, "finished", actually_paid=payment.pay_amount * 2)
    assert credited(done) == [Decimal("25.00")]
    assert findings(done) == {"overpayment"}
    finding = LedgerDrift.objects.get(payment=done)
    assert "25.00" in finding.detail


def test_the_credit_policy_credits_an_overpayment(
    sandbox: Any, payment: Payment, settings: Any
) -> None:
    settings.PAYMENTS_OVERPAYMENT_POLICY = "credit"
    done = apply(sandbox, payment, "finished", actually_paid=payment.pay_amount * 2)
    assert credited(done) == [Decimal("50.00")]


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"pay_currency": "btc", "actually_paid": Decimal("0.0004")}, "pay_currency"),
        ({"price_amount": Decimal("1"), "price_currency": "eur"}, "price"),
        ({"order_id": "PAY_someone_else"}, "order_id"),
    ],
)
def test_a_report_that_does_not_match_goes_to_review_and_credits_nothing(
    sandbox: Any, payment: Payment, changes: dict[str, Any], reason: str
) -> None:
    done = apply(sandbox, payment, "finished", **changes)
    assert (done.status, credited(done), balance(done)) == ("review", [], 0)
    assert reason in done.review_reason
    assert findings(done) == {"payment_in_review"}


def test_wrong_asset_confirmed_goes_to_review(sandbox: Any, payment: Payment) -> None:
    done = apply(sandbox, payment, "wrong_asset_confirmed")
    assert (done.status, credited(done)) == ("review", [])


def test_a_refund_after_the_credit_reverses_it(sandbox: Any, payment: Payment) -> None:
    apply(sandbox, payment, "finished")
    done = apply(sandbox, payment, "refunded")
    assert done.status == "refunded"
    assert credited(done) == [Decimal("25.00"), Decimal("-25.00")]
    assert balance(done) == 0
    assert "payment_reversed" in findings(done)
    # A repeated refund report reverses nothing more.
    apply(sandbox, payment, "refunded")
    assert credited(done) == [Decimal("25.00"), Decimal("-25.00")]


def test_what_a_refund_cannot_take_back_is_owed_and_collected_later(
    sandbox: Any, payment: Payment, usdt: Any
) -> None:
    from payments.services import withdrawals

    apply(sandbox, payment, "finished")
    withdrawals.withdrawal_create(
        user_id=payment.user_id,
        amount_usd=Decimal("10.00"),
        currency_id=usdt.pk,
        wallet_address="TAddr",
    )
    done = apply(sandbox, payment, "refunded")
    assert balance(done) == 0
    debt = Receivable.objects.get(payment=done)
    assert (debt.amount_usd, debt.outstanding_usd) == (Decimal("10.00"), Decimal("10.00"))
    assert {"payment_reversed", "receivable_open"} <= findings(done)
    # While it is owed, no new withdrawal.
    with pytest.raises(DebtOutstanding):
        withdrawals.withdrawal_create(
            user_id=payment.user_id,
            amount_usd=Decimal("5.00"),
            currency_id=usdt.pk,
            wallet_address="TAddr",
        )
    # The next credit pays the debt first.
    later = deposits.payment_create(
        user_id=payment.user_id, amount_usd=Decimal("30.00"), currency_code="USDTTRC20"
    )
    apply(sandbox, later, "finished")
    debt.refresh_from_db()
    assert debt.settled_at is not None
    assert balance(later) == Decimal("20.00")


def test_money_reported_after_we_closed_a_payment_goes_to_review(
    sandbox: Any, payment: Payment
) -> None:
    deposits.payment_move(payment_id=payment.pk, status="expired")
    done = apply(sandbox, payment, "finished")
    assert (done.status, credited(done)) == ("review", [])
    assert "after it was expired" in done.review_reason


def test_a_long_partial_payment_is_settled_by_the_policy(sandbox: Any, payment: Payment) -> None:
    half = payment.pay_amount / 2
    sandbox.control.pay(payment.provider_payment_id, half)
    sandbox.control.advance(payment.provider_payment_id, "partially_paid")
    apply(sandbox, payment, "partially_paid", actually_paid=half)
    assert deposits.payments_expire()["partial_finished"] == 0  # not yet: within the hours
    Payment._base_manager.filter(pk=payment.pk).update(
        status_changed_at=timezone.now() - timedelta(days=2)
    )
    assert deposits.payments_expire()["partial_finished"] == 1
    done = Payment.objects.get(pk=payment.pk)
    assert (done.status, credited(done)) == ("completed", [Decimal("12.50")])


def test_what_is_owed_stops_money_leaving_and_a_returned_hold_pays_it(
    sandbox: Any, payment: Payment, usdt: Any, admin_user: Any
) -> None:
    from django.contrib.auth.models import Permission

    from payments.services import withdrawals

    apply(sandbox, payment, "finished")
    pending = withdrawals.withdrawal_create(
        user_id=payment.user_id, amount_usd=Decimal("25.00"), currency_id=usdt.pk,
        wallet_address="TAddr",
    )  # fmt: skip
    done = apply(sandbox, payment, "refunded")
    assert Receivable.objects.get(payment=done).outstanding_usd == Decimal("25.00")
    approver = UserFactory(is_staff=True)
    approver.user_permissions.add(Permission.objects.get(codename="approve_withdrawalrequest"))
    approver = type(approver).objects.get(pk=approver.pk)
    with pytest.raises(DebtOutstanding):
        withdrawals.withdrawal_approve(withdrawal_id=pending.pk, admin_user=approver)
    # Cancelled, its hold comes back and pays the debt at once.
    owner = type(approver).objects.get(pk=payment.user_id)
    withdrawals.withdrawal_cancel(withdrawal_id=pending.pk, user=owner)
    debt = Receivable.objects.get(payment=done)
    assert debt.settled_at is not None
    assert balance(done) == 0


def test_an_orm_completion_credits_what_was_received(sandbox: Any, payment: Payment) -> None:
    fresh = Payment.objects.get(pk=payment.pk)
    fresh.status = "finished"
    fresh.actual_amount = payment.pay_amount / 2
    fresh.save()
    assert credited(fresh) == [Decimal("12.50")]


def test_an_orm_save_cannot_credit_a_payment_in_review(
    sandbox: Any, payment: Payment, settings: Any
) -> None:
    from django.core.exceptions import ValidationError

    settings.PAYMENTS_UNDERPAYMENT_POLICY = "review"
    apply(sandbox, payment, "finished", actually_paid=payment.pay_amount / 2)
    fresh = Payment.objects.get(pk=payment.pk)
    fresh.status = "completed"
    with pytest.raises(ValidationError, match="review decision"):
        fresh.save()
    assert credited(fresh) == []


def test_a_stale_orm_save_is_refused(sandbox: Any, payment: Payment) -> None:
    from django.core.exceptions import ValidationError

    stale = Payment.objects.get(pk=payment.pk)
    apply(sandbox, payment, "finished", actually_paid=payment.pay_amount / 2)
    stale.status = "completed"
    with pytest.raises(ValidationError, match="someone else"):
        stale.save()
    fresh = Payment.objects.get(pk=payment.pk)
    assert (fresh.credited_usd, credited(fresh)) == (Decimal("12.50"), [Decimal("12.50")])


def test_more_money_after_a_partial_settlement_is_put_before_an_operator(
    sandbox: Any, payment: Payment
) -> None:
    apply(sandbox, payment, "finished", actually_paid=payment.pay_amount / 2)
    done = apply(sandbox, payment, "finished", actually_paid=payment.pay_amount)
    assert credited(done) == [Decimal("12.50")]
    assert "late_provider_report" in findings(done)
