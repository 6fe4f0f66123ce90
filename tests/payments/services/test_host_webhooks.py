"""The webhook outbox: each of the seven events written once by the real service paths, in the
transaction of the money change (none for a change that rolled back)."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from payments import ledger
from payments.models import (
    Payment,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    WithdrawalRequest,
)
from payments.services import deposits, host_webhooks, withdrawals
from tests.factories import CurrencyFactory, UserFactory
from tests.payments.services.deposits.test_policy import apply

pytestmark = pytest.mark.django_db(transaction=True)

TRON = "TQn9Y2khEsLJW1ChVWFMSMeRDow5KcbLSE"


class Rollback(Exception):
    """Raised inside a transaction to undo it."""


@pytest.fixture
def endpoint(db: Any) -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(url="http://127.0.0.1:9/hooks", secret="s" * 32)


@pytest.fixture
def reviewer(db: Any) -> Any:
    admin = UserFactory(is_staff=True)
    admin.user_permissions.add(Permission.objects.get(codename="approve_withdrawalrequest"))
    return admin


@pytest.fixture
def payment(sandbox: Any, usdt: Any) -> Payment:
    return deposits.payment_create(
        user_id=UserFactory().pk, amount_usd=Decimal("25.00"), currency_code="USDTTRC20"
    )


def withdrawal(currency: Any, amount: str = "40.00") -> WithdrawalRequest:
    user = UserFactory()
    ledger.post(
        user_id=user.pk, kind="deposit", amount_usd=Decimal("100.00"), idempotency_key=f"f{user.pk}"
    )
    return withdrawals.withdrawal_create(
        user_id=user.pk, amount_usd=Decimal(amount), currency_id=currency.pk, wallet_address=TRON
    )


def events(event_type: str | None = None) -> list[WebhookEvent]:
    found = WebhookEvent.objects.order_by("created_at")
    return list(found.filter(event_type=event_type) if event_type else found)


def only_event(event_type: str) -> dict[str, Any]:
    """The one event of this type (its payload), with its one delivery, due now."""
    [event] = events(event_type)
    [delivery] = WebhookDelivery.objects.filter(event=event)
    assert delivery.status == "pending"
    assert delivery.attempts == 0
    assert delivery.next_attempt_at is not None
    assert delivery.next_attempt_at <= timezone.now()
    payload = dict(event.payload)
    assert payload["id"] == str(event.pk)
    assert payload["type"] == event_type
    assert payload["created_at"]
    return payload


# --- payments --------------------------------------------------------------------------------


def test_a_sandbox_completed_payment_is_credited_and_the_host_told_once(
    sandbox: Any, payment: Payment, endpoint: WebhookEndpoint
) -> None:
    sandbox.control.complete(payment.provider_payment_id)
    deposits.payment_refresh(payment_id=payment.pk)
    deposits.payment_refresh(payment_id=payment.pk)  # the same report again
    deposits.payments_settle_many(payment_ids=[payment.pk])  # and the safety net
    payload = only_event("payment.credited")
    assert payload["data"]["payment_id"] == str(payment.pk)
    assert payload["data"]["internal_payment_id"] == payment.internal_payment_id
    assert payload["data"]["provider_payment_id"] == str(payment.provider_payment_id)
    assert payload["data"]["user_id"] == payment.user_id
    assert payload["data"]["status"] == "completed"
    assert payload["data"]["currency"] == "USDTTRC20"
    assert payload["data"]["amount_usd"] == "25.00"
    assert payload["data"]["credited_usd"] == "25.00"
    assert isinstance(payload["data"]["transaction_id"], int)
    assert isinstance(payload["data"]["pay_amount"], str)  # a crypto amount, never a float
    assert WebhookEvent.objects.get().dedupe_key == f"payment:{payment.pk}:credited"


def _completed(count: int, currency: Any) -> list[Payment]:
    user = UserFactory()
    return Payment._base_manager.bulk_create(
        [
            Payment(
                user=user,
                currency=currency,
                amount_usd=Decimal("9.99"),
                internal_payment_id=f"PAY_HOOK_{uuid.uuid4().hex[:12]}",
                status="completed",
                completed_at=timezone.now(),
            )
            for _ in range(count)
        ]
    )


def test_the_batch_and_the_single_settlement_tell_the_host_of_each_credit_once(
    usdt: Any, endpoint: WebhookEndpoint
) -> None:
    batch = _completed(3, usdt)
    assert deposits.payments_settle_many(payment_ids=[p.pk for p in batch]) == 3
    single = _completed(1, usdt)[0]
    deposits.payment_settle(payment_id=single.pk)
    deposits.payment_settle(payment_id=single.pk)
    deposits.payments_settle_many(payment_ids=[p.pk for p in [*batch, single]])
    credited = events("payment.credited")
    assert sorted(e.payload["data"]["payment_id"] for e in credited) == sorted(
        str(p.pk) for p in [*batch, single]
    )
    assert {e.payload["data"]["credited_usd"] for e in credited} == {"9.99"}
    assert WebhookDelivery.objects.count() == 4


def test_a_credit_whose_lock_asked_for_endpoints_still_tells_the_host(
    sandbox: Any, usdt: Any, endpoint: WebhookEndpoint
) -> None:
    """A user's later credits lock payment and balance in one statement, which also asks
    whether an endpoint is active: through payment_settle and through a finished report."""
    single = _completed(1, usdt)[0]
    user = single.user
    ledger.post(user_id=user.pk, kind="deposit", amount_usd=Decimal("1.00"), idempotency_key="b")
    deposits.payment_settle(payment_id=single.pk)
    reported = deposits.payment_create(
        user_id=user.pk, amount_usd=Decimal("25.00"), currency_code="USDTTRC20"
    )
    sandbox.control.complete(reported.provider_payment_id)
    deposits.payment_refresh(payment_id=reported.pk)
    credited = {e.payload["data"]["payment_id"] for e in events("payment.credited")}
    assert credited == {str(single.pk), str(reported.pk)}
    assert WebhookDelivery.objects.count() == 2


def test_a_settlement_batch_with_webhooks_runs_the_same_queries_at_2_and_at_40(
    usdt: Any, endpoint: WebhookEndpoint
) -> None:
    def queries(count: int) -> int:
        ids = [p.pk for p in _completed(count, usdt)]
        with CaptureQueriesContext(connection) as captured:
            assert deposits.payments_settle_many(payment_ids=ids) == count
        return len(captured.captured_queries)

    assert queries(2) == queries(40)
    assert WebhookDelivery.objects.count() == 42


def test_a_payment_put_into_review_tells_the_host_with_the_reason(
    sandbox: Any, payment: Payment, endpoint: WebhookEndpoint, settings: Any
) -> None:
    settings.PAYMENTS_UNDERPAYMENT_POLICY = "review"
    done = apply(sandbox, payment, "finished", actually_paid=payment.pay_amount / 4)
    assert done.status == "review"
    apply(sandbox, payment, "finished", actually_paid=payment.pay_amount / 4)  # again
    payload = only_event("payment.in_review")
    assert payload["data"]["status"] == "review"
    assert payload["data"]["reason"] == done.review_reason
    assert payload["data"]["reason"]
    assert events("payment.credited") == []


def test_a_payment_put_into_review_through_the_orm_tells_the_host(
    usdt: Any, endpoint: WebhookEndpoint
) -> None:
    payment = Payment.objects.create(user=UserFactory(), amount_usd=Decimal("5.00"), currency=usdt)
    payment.status = "review"
    payment.review_reason = "the customer wrote in"
    payment.save()
    assert only_event("payment.in_review")["data"]["reason"] == "the customer wrote in"


def test_a_refund_of_a_credited_payment_tells_the_host_it_was_reversed(
    sandbox: Any, payment: Payment, endpoint: WebhookEndpoint
) -> None:
    apply(sandbox, payment, "finished")
    apply(sandbox, payment, "refunded")
    apply(sandbox, payment, "refunded")  # a repeated refund report reverses nothing more
    payload = only_event("payment.reversed")
    assert payload["data"]["status"] == "refunded"
    assert payload["data"]["credited_usd"] == "25.00"
    assert payload["data"]["reversed_usd"] == "25.00"
    assert payload["data"]["owed_usd"] == "0.00"
    assert len(events("payment.credited")) == 1


# --- withdrawals -----------------------------------------------------------------------------


def test_approval_then_completion_tell_the_host_once_each(
    endpoint: WebhookEndpoint, reviewer: Any
) -> None:
    request = withdrawal(CurrencyFactory())
    withdrawals.withdrawal_approve(withdrawal_id=request.pk, admin_user=reviewer)
    withdrawals.withdrawal_complete(withdrawal_id=request.pk, transaction_hash="0xabc123")
    approved = only_event("withdrawal.approved")["data"]
    completed = only_event("withdrawal.completed")["data"]
    assert approved["withdrawal_id"] == completed["withdrawal_id"] == str(request.pk)
    assert approved["internal_withdrawal_id"] == request.internal_withdrawal_id
    assert approved["status"] == "approved"
    assert completed["status"] == "completed"
    assert completed["transaction_hash"] == "0xabc123"
    assert completed["amount_usd"] == "40.00"
    assert Decimal(completed["final_amount_usd"]) == request.final_amount_usd
    assert completed["user_id"] == request.user_id
    assert WebhookEvent.objects.count() == 2


def test_a_rejection_tells_the_host_with_the_reason(
    endpoint: WebhookEndpoint, reviewer: Any
) -> None:
    request = withdrawal(CurrencyFactory())
    withdrawals.withdrawal_reject(withdrawal_id=request.pk, admin_user=reviewer, notes="KYC")
    payload = only_event("withdrawal.rejected")
    assert (payload["data"]["status"], payload["data"]["reason"]) == ("rejected", "KYC")
    assert WebhookEvent.objects.count() == 1


def test_a_failed_payout_tells_the_host_and_processing_and_cancel_tell_nothing(
    endpoint: WebhookEndpoint, reviewer: Any
) -> None:
    currency = CurrencyFactory()
    request = withdrawal(currency)
    withdrawals.withdrawal_approve(withdrawal_id=request.pk, admin_user=reviewer)
    withdrawals.withdrawal_start_processing(withdrawal_id=request.pk)
    withdrawals.withdrawal_fail(withdrawal_id=request.pk, reason="address blacklisted")
    payload = only_event("withdrawal.failed")
    assert (payload["data"]["status"], payload["data"]["reason"]) == (
        "failed",
        "address blacklisted",
    )
    cancelled = withdrawal(currency, amount="10.00")
    withdrawals.withdrawal_cancel(withdrawal_id=cancelled.pk, user=cancelled.user)
    assert sorted(e.event_type for e in events()) == ["withdrawal.approved", "withdrawal.failed"]


# --- what is not recorded --------------------------------------------------------------------


def test_a_change_that_rolls_back_leaves_no_event(
    usdt: Any, endpoint: WebhookEndpoint, reviewer: Any
) -> None:
    request = withdrawal(usdt)
    payments = _completed(2, usdt)
    written: list[int] = []

    @transaction.atomic
    def changes_then_fails() -> None:
        withdrawals.withdrawal_approve(withdrawal_id=request.pk, admin_user=reviewer)
        deposits.payments_settle_many(payment_ids=[p.pk for p in payments])
        written.append(WebhookEvent.objects.count())  # written, in the same transaction
        raise Rollback

    with pytest.raises(Rollback):
        changes_then_fails()
    assert written == [3]
    assert WithdrawalRequest.objects.get(pk=request.pk).status == "pending"
    assert WebhookEvent.objects.count() == WebhookDelivery.objects.count() == 0
    # Done again for real, it is told once.
    withdrawals.withdrawal_approve(withdrawal_id=request.pk, admin_user=reviewer)
    assert only_event("withdrawal.approved")["data"]["status"] == "approved"


def test_events_are_recorded_only_inside_a_transaction(endpoint: WebhookEndpoint) -> None:
    with pytest.raises(RuntimeError, match="inside the transaction"):
        host_webhooks.webhook_event_record(
            event_type="payment.credited", dedupe_key="payment:x:credited", payload={}
        )


def test_a_replay_of_the_same_cause_writes_nothing_new(endpoint: WebhookEndpoint) -> None:
    with transaction.atomic():
        first = host_webhooks.webhook_event_record(
            event_type="withdrawal.completed", dedupe_key="withdrawal:w1:completed", payload={}
        )
        again = host_webhooks.webhook_event_record(
            event_type="withdrawal.completed", dedupe_key="withdrawal:w1:completed", payload={}
        )
    assert first is not None
    assert again is None
    assert WebhookEvent.objects.count() == WebhookDelivery.objects.count() == 1


def test_each_endpoint_gets_the_events_it_wants_and_a_switched_off_one_none(
    usdt: Any, reviewer: Any
) -> None:
    everything = WebhookEndpoint.objects.create(url="http://a.example/h", secret="a" * 20)
    completions = WebhookEndpoint.objects.create(
        url="http://b.example/h", secret="b" * 20, events=["withdrawal.completed"]
    )
    WebhookEndpoint.objects.create(url="http://c.example/h", secret="c" * 20, is_active=False)
    request = withdrawal(usdt)
    withdrawals.withdrawal_approve(withdrawal_id=request.pk, admin_user=reviewer)
    withdrawals.withdrawal_complete(withdrawal_id=request.pk, transaction_hash="0xdef")
    got = {
        (d.endpoint_id, d.event.event_type) for d in WebhookDelivery.objects.select_related("event")
    }
    assert got == {
        (everything.pk, "withdrawal.approved"),
        (everything.pk, "withdrawal.completed"),
        (completions.pk, "withdrawal.completed"),
    }


def test_without_an_endpoint_that_wants_it_nothing_is_stored(usdt: Any, reviewer: Any) -> None:
    WebhookEndpoint.objects.create(
        url="http://b.example/h", secret="b" * 20, events=["payment.reversed"]
    )
    request = withdrawal(usdt)
    withdrawals.withdrawal_approve(withdrawal_id=request.pk, admin_user=reviewer)
    deposits.payments_settle_many(payment_ids=[p.pk for p in _completed(2, usdt)])
    assert WebhookEvent.objects.count() == 0


def test_amounts_are_strings_without_float_noise() -> None:
    from payments.services.host_webhooks.payloads import amount

    assert amount(Decimal("25.00")) == "25.00"
    assert amount(Decimal("0.012500000000000000")) == "0.0125"
    assert amount(Decimal("3.000000000000000000")) == "3.00"
    assert amount(Decimal("7")) == "7"
    assert amount(None) is None
