"""Reconciliation against NowPayments (the sandbox): each difference reported once, as its kind."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from payments import ledger
from payments.errors import ProviderUnavailable
from payments.models import LedgerDrift, Payment, PeriodicRun, WithdrawalRequest
from payments.services import deposits, withdrawals
from payments.services.reconcile_provider import provider_reconcile
from tests.factories import UserFactory
from workers.tasks import provider_reconcile_task

pytestmark = pytest.mark.django_db(transaction=True)

TRON = "TQn9Y2khEsLJW1ChVWFMSMeRDow5KcbLSE"
CLEAN = {
    "payments_differing": 0,
    "withdrawals_differing": 0,
    "errors": 0,
    "by_kind": {},
}


@pytest.fixture(params=["list", "one_by_one"])
def mode(request, settings):
    """Both ways of reading payments: the JWT list endpoint, or one status call each.

    Call it once the payments and payouts exist (payouts need the JWT credentials).
    """

    def switch() -> str:
        if request.param == "one_by_one":
            settings.NOWPAYMENTS_PASSWORD = ""
        return request.param

    return switch


def completed_payments(sandbox, n: int = 1) -> list[Payment]:
    user = UserFactory()
    created = [
        deposits.payment_create(
            user_id=user.pk, amount_usd=Decimal("20.00"), currency_code="USDTTRC20"
        )
        for _ in range(n)
    ]
    for payment in created:
        sandbox.control.complete(payment.provider_payment_id)
    deposits.payments_poll()
    done = [Payment.objects.get(pk=p.pk) for p in created]
    assert [p.status for p in done] == ["completed"] * n
    return done


def sent_withdrawal(sandbox, usdt, settings) -> WithdrawalRequest:
    """An approved withdrawal paid out through NowPayments: processing, payout verified."""
    settings.PAYMENTS_PAYOUTS_ENABLED = True
    sandbox.control.set_balance("usdttrc20", "100000")
    user, reviewer = UserFactory(), UserFactory(is_staff=True)
    reviewer.user_permissions.add(Permission.objects.get(codename="approve_withdrawalrequest"))
    ledger.post(
        user_id=user.pk, kind="deposit", amount_usd=Decimal("100.00"), idempotency_key=f"d{user.pk}"
    )
    request = withdrawals.withdrawal_create(
        user_id=user.pk,
        amount_usd=Decimal("51.50"),
        currency_id=usdt.pk,
        wallet_address=TRON,
        network_fee_usd=Decimal("1.00"),
        service_fee_usd=Decimal("0.50"),
    )
    withdrawals.withdrawal_approve(withdrawal_id=request.pk, admin_user=reviewer)
    sent = withdrawals.withdrawal_payout_send(withdrawal_id=request.pk)
    assert sent.status == "processing"
    assert sent.provider_batch_id
    assert sent.provider_payout_id
    return sent


def completed_withdrawal(sandbox, usdt, settings) -> WithdrawalRequest:
    sent = sent_withdrawal(sandbox, usdt, settings)
    sandbox.control.advance_payout(sent.provider_batch_id, status="FINISHED")
    assert withdrawals.payouts_poll().completed == 1
    done = WithdrawalRequest.objects.get(pk=sent.pk)
    assert done.status == "completed"
    assert done.transaction_hash
    return done


def found(kind: str) -> list[LedgerDrift]:
    return list(LedgerDrift.objects.filter(kind=kind))


def assert_reported_once(kind: str, subject: str, *, expected: str, actual: str) -> None:
    """Exactly one finding, of this kind and no other; a second run counts one more sighting."""
    assert list(LedgerDrift.objects.values_list("kind", "subject")) == [(kind, subject)]
    (finding,) = found(kind)
    assert (finding.expected, finding.actual, finding.times_seen) == (expected, actual, 1)
    assert provider_reconcile()["by_kind"] == {kind: 1}
    finding.refresh_from_db()
    assert finding.times_seen == 2
    assert LedgerDrift.objects.count() == 1


def test_a_clean_state_reports_nothing(sandbox, usdt, settings, mode):
    payments = completed_payments(sandbox, 2)
    completed_withdrawal(sandbox, usdt, settings)
    sent_withdrawal(sandbox, usdt, settings)
    sandbox.control.reset_requests()
    reading = mode()
    result = provider_reconcile()
    assert result == {**CLEAN, "payments_checked": 2, "withdrawals_checked": 2}
    assert not LedgerDrift.objects.exists()
    calls = sandbox.control.requests()
    if reading == "list":
        assert calls.get("GET /v1/payment/") == 1
        assert calls.get("GET /v1/payment/{id}", 0) == 0
    else:
        assert calls.get("GET /v1/payment/{id}") == len(payments)
    assert all(p.status == "completed" for p in Payment.objects.all()), "nothing is changed"


def test_nothing_outside_the_window_is_checked(sandbox, usdt):
    completed_payments(sandbox, 1)
    assert provider_reconcile(window=timedelta(0))["payments_checked"] == 0


def test_a_payment_the_provider_refunded_after_we_settled(sandbox, usdt, mode):
    (payment,) = completed_payments(sandbox)
    sandbox.control.refund(payment.provider_payment_id)  # the report is not applied
    mode()
    result = provider_reconcile()
    assert (result["payments_checked"], result["payments_differing"]) == (1, 1)
    assert_reported_once(
        "provider_status_differs", f"payment:{payment.pk}", expected="completed", actual="refunded"
    )
    assert Payment.objects.get(pk=payment.pk).status == "completed", "reported, not corrected"


def test_a_payment_in_review_fits_any_provider_status(sandbox, usdt):
    user = UserFactory()
    payment = deposits.payment_create(
        user_id=user.pk, amount_usd=Decimal("20.00"), currency_code="USDTTRC20"
    )
    state = sandbox.state
    with state.lock:  # NowPayments reports another price: the payment goes to an operator
        record = state.payments[int(payment.provider_payment_id)]
        record.price_amount = Decimal("21")
        record.touch(state.now())
    sandbox.control.complete(payment.provider_payment_id)
    deposits.payments_poll()
    assert Payment.objects.get(pk=payment.pk).status == "review"
    assert provider_reconcile() == {**CLEAN, "payments_checked": 1, "withdrawals_checked": 0}
    sandbox.control.refund(payment.provider_payment_id)
    assert provider_reconcile()["by_kind"] == {}


def test_an_amount_received_that_differs_from_ours(sandbox, usdt, mode):
    (payment,) = completed_payments(sandbox)
    theirs = payment.actual_amount.normalize()
    Payment._base_manager.filter(pk=payment.pk).update(actual_amount=Decimal("1.5"))  # bypass
    mode()
    provider_reconcile()
    assert_reported_once(
        "provider_amount_differs", f"payment:{payment.pk}", expected="1.5", actual=f"{theirs:f}"
    )


def test_a_pay_currency_that_differs_from_ours(sandbox, usdt, mode):
    (payment,) = completed_payments(sandbox)
    state = sandbox.state
    with state.lock:
        record = state.payments[int(payment.provider_payment_id)]
        record.pay_currency = "btc"
        record.touch(state.now())
    mode()
    provider_reconcile()
    assert_reported_once(
        "provider_asset_differs", f"payment:{payment.pk}", expected="usdttrc20", actual="btc"
    )


def test_a_payment_the_provider_does_not_know(sandbox, usdt, mode):
    payment, _known = completed_payments(sandbox, 2)
    state = sandbox.state
    with state.lock:  # NowPayments loses the payment
        index = state.payment_order.index(int(payment.provider_payment_id))
        del state.payment_order[index], state.created_index[index]
        del state.payments[int(payment.provider_payment_id)]
    mode()
    result = provider_reconcile()
    assert (result["payments_checked"], result["payments_differing"]) == (2, 1)
    assert_reported_once(
        "provider_payment_missing",
        f"payment:{payment.pk}",
        expected=f"NowPayments payment {payment.provider_payment_id}",
        actual="not found",
    )


def test_a_completed_withdrawal_whose_payout_failed(sandbox, usdt, settings):
    done = completed_withdrawal(sandbox, usdt, settings)
    with sandbox.state.lock:
        sandbox.state.withdrawals[int(done.provider_payout_id)].status = "FAILED"
    result = provider_reconcile()
    assert (result["withdrawals_checked"], result["withdrawals_differing"]) == (1, 1)
    assert_reported_once(
        "provider_payout_differs",
        f"withdrawal:{done.pk}",
        expected=f"completed {done.transaction_hash}",
        actual=f"FAILED {done.transaction_hash}",
    )


def test_a_completed_withdrawal_with_another_hash(sandbox, usdt, settings):
    done = completed_withdrawal(sandbox, usdt, settings)
    with sandbox.state.lock:
        sandbox.state.withdrawals[int(done.provider_payout_id)].hash = "0xother"
    provider_reconcile()
    assert_reported_once(
        "provider_payout_differs",
        f"withdrawal:{done.pk}",
        expected=f"completed {done.transaction_hash}",
        actual="FINISHED 0xother",
    )


def test_a_processing_withdrawal_the_provider_finished_long_ago(sandbox, usdt, settings):
    sent = sent_withdrawal(sandbox, usdt, settings)
    sandbox.control.advance_payout(sent.provider_batch_id, status="FINISHED")
    assert provider_reconcile() == {**CLEAN, "payments_checked": 0, "withdrawals_checked": 1}, (
        "the poller has ten minutes to complete it"
    )
    stale = timezone.now() - timedelta(minutes=11)
    WithdrawalRequest._base_manager.filter(pk=sent.pk).update(updated_at=stale)  # test bypass
    provider_reconcile()
    assert_reported_once(
        "provider_payout_differs", f"withdrawal:{sent.pk}", expected="processing", actual="FINISHED"
    )
    assert (
        "NowPayments says FINISHED but we are processing"
        in found("provider_payout_differs")[0].detail
    )


def test_a_payout_batch_the_provider_does_not_know(sandbox, usdt, settings):
    done = completed_withdrawal(sandbox, usdt, settings)
    with sandbox.state.lock:
        del sandbox.state.batches[int(done.provider_batch_id)]
    provider_reconcile()
    assert_reported_once(
        "provider_payout_missing",
        f"withdrawal:{done.pk}",
        expected=f"payout item {done.provider_payout_id}",
        actual="not found",
    )


def test_a_provider_error_on_one_payment_does_not_stop_the_others(sandbox, usdt, settings):
    settings.NOWPAYMENTS_PASSWORD = ""  # one status call per payment
    first, _second, third = completed_payments(sandbox, 3)
    sandbox.control.refund(third.provider_payment_id)
    sandbox.control.set_fault(
        "malformed_json", count=1, path=f"/v1/payment/{first.provider_payment_id}"
    )
    result = provider_reconcile()
    assert result["errors"] == 1
    assert (result["payments_checked"], result["payments_differing"]) == (2, 1)
    assert list(LedgerDrift.objects.values_list("kind", "subject")) == [
        ("provider_status_differs", f"payment:{third.pk}")
    ]


def test_the_task_runs_under_the_lease_and_records_its_figures(sandbox, usdt):
    (payment,) = completed_payments(sandbox)
    sandbox.control.refund(payment.provider_payment_id)
    result = provider_reconcile_task()
    assert result["by_kind"] == {"provider_status_differs": 1}
    run = PeriodicRun.objects.get(name="workers.provider_reconcile")
    assert (run.run_count, run.last_result, run.last_error) == (1, result, "")
    assert provider_reconcile_task() == {"skipped": True}, "one run per tick"


def test_the_task_fails_for_a_retry_when_the_provider_is_down(sandbox, usdt, mode):
    completed_payments(sandbox, 2)
    mode()  # list: the listing fails; one by one: every status call does
    sandbox.control.set_fault("http_500", count=100)
    with pytest.raises(ProviderUnavailable):
        provider_reconcile_task()
    run = PeriodicRun.objects.get(name="workers.provider_reconcile")
    assert "ProviderUnavailable" in run.last_error
    assert run.last_started_at is None, "the retry is not skipped as a second copy of the tick"
    assert not LedgerDrift.objects.exists()


def test_the_admin_shows_each_jobs_figures(sandbox, usdt, client):
    (payment,) = completed_payments(sandbox)
    sandbox.control.refund(payment.provider_payment_id)
    provider_reconcile_task()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    listing = client.get("/admin/payments/periodicrun/").content.decode()
    assert "payments_checked 1 · payments_differing 1 · withdrawals_checked 0" in listing
    assert "by_kind (provider_status_differs 1)" in listing
    run = PeriodicRun.objects.get(name="workers.provider_reconcile")
    detail = client.get(f"/admin/payments/periodicrun/{run.pk}/change/")
    assert detail.status_code == 200
    page = detail.content.decode()
    assert "payments_differing: 1<br>" in page
    assert "by_kind.provider_status_differs: 1" in page


def test_a_failed_withdrawal_whose_payout_was_paid_after_all(sandbox, usdt, settings):
    settings.PAYMENTS_PAYOUT_FAILED_SETTLE_SECONDS = 0
    sent = sent_withdrawal(sandbox, usdt, settings)
    sandbox.control.advance_payout(sent.provider_batch_id, status="FAILED")
    withdrawals.payouts_poll()
    withdrawals.payouts_poll()  # the second look: still failed, so refunded
    failed = WithdrawalRequest.objects.get(pk=sent.pk)
    assert failed.status == "failed"
    assert provider_reconcile()["withdrawals_differing"] == 0
    sandbox.control.advance_payout(sent.provider_batch_id, status="FINISHED")  # paid after all
    result = provider_reconcile()
    assert result["withdrawals_differing"] == 1
    (finding,) = found("provider_payout_differs")
    assert finding.subject == f"withdrawal:{failed.pk}"
    assert finding.expected == "failed (refunded)"
    assert finding.actual.startswith("FINISHED")
