"""Payouts through the sandbox: sent once, verified with 2FA, followed to the end."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.db import OperationalError, connection, transaction
from django.utils import timezone

from payments import ledger
from payments.errors import ProviderUnavailable
from payments.models import LedgerDrift, Transaction, UserBalance, WithdrawalRequest
from payments.services import withdrawals
from payments.services import withdrawals as payouts
from payments.services.providers.nowpayments.gateway import get_provider
from payments.services.withdrawals import lifecycle
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

TRON = "TQn9Y2khEsLJW1ChVWFMSMeRDow5KcbLSE"


@pytest.fixture
def approved(sandbox, usdt, settings):
    settings.PAYMENTS_PAYOUTS_ENABLED = True
    sandbox.control.set_balance("usdttrc20", "100000")
    user = UserFactory()
    reviewer = UserFactory(is_staff=True)
    reviewer.user_permissions.add(Permission.objects.get(codename="approve_withdrawalrequest"))
    ledger.post(user_id=user.pk, kind="deposit", amount_usd=Decimal("100.00"), idempotency_key="d")
    withdrawal = withdrawals.withdrawal_create(
        user_id=user.pk,
        amount_usd=Decimal("51.50"),
        currency_id=usdt.pk,
        wallet_address=TRON,
        network_fee_usd=Decimal("1.00"),
        service_fee_usd=Decimal("0.50"),
    )
    return withdrawals.withdrawal_approve(withdrawal_id=withdrawal.pk, admin_user=reviewer)


def refunds(withdrawal) -> int:
    return Transaction.objects.filter(
        withdrawal_request=withdrawal, transaction_type="refund"
    ).count()


def test_an_approved_withdrawal_is_paid_out_once_and_completed(sandbox, approved):
    sent = payouts.withdrawal_payout_send(withdrawal_id=approved.pk)
    assert sent.status == "processing"
    assert sent.provider_batch_id
    again = payouts.withdrawal_payout_send(withdrawal_id=approved.pk)
    assert again.provider_batch_id == sent.provider_batch_id
    remote = sandbox.control.payouts()
    assert len(remote) == 1
    assert remote[0]["verified"] is True
    (item,) = remote[0]["withdrawals"]
    assert item["address"] == TRON
    assert Decimal(str(item["amount"])) == Decimal("50.00"), (
        "the user receives the amount less fees"
    )
    assert item["unique_external_id"] == approved.internal_withdrawal_id
    assert item["status"] == "WAITING", "verified with 2FA"

    sandbox.control.advance_payout(sent.provider_batch_id, status="FINISHED")
    result = payouts.payouts_poll()
    assert result.completed == 1
    done = WithdrawalRequest.objects.get(pk=approved.pk)
    assert done.status == "completed"
    assert done.transaction_hash
    assert refunds(done) == 0
    assert UserBalance.objects.get(user=done.user).balance_usd == Decimal("48.50")


def test_a_failed_payout_is_refunded_once_only_on_a_second_look(sandbox, approved, settings):
    settings.PAYMENTS_PAYOUT_FAILED_SETTLE_SECONDS = 0
    sent = payouts.withdrawal_payout_send(withdrawal_id=approved.pk)
    sandbox.control.advance_payout(sent.provider_batch_id, status="FAILED")
    first = payouts.payouts_poll()
    assert (first.failed, first.settling) == (0, 1), "the first sighting refunds nothing"
    waiting = WithdrawalRequest.objects.get(pk=approved.pk)
    assert waiting.status == "processing"
    assert waiting.provider_data["failed_seen_at"]
    assert refunds(waiting) == 0
    assert payouts.payouts_poll().failed == 1, "still failed after the settling time"
    assert payouts.payouts_poll().failed == 0
    failed = WithdrawalRequest.objects.get(pk=approved.pk)
    assert failed.status == "failed"
    assert "failed" in failed.failure_reason
    assert refunds(failed) == 1
    assert UserBalance.objects.get(user=failed.user).balance_usd == Decimal("100.00")


def test_a_failed_payout_waits_out_the_settling_time(sandbox, approved, settings):
    settings.PAYMENTS_PAYOUT_FAILED_SETTLE_SECONDS = 1800
    sent = payouts.withdrawal_payout_send(withdrawal_id=approved.pk)
    sandbox.control.advance_payout(sent.provider_batch_id, status="FAILED")
    for _ in range(3):
        assert payouts.payouts_poll().failed == 0
    assert WithdrawalRequest.objects.get(pk=approved.pk).status == "processing"
    assert refunds(approved) == 0


def test_failed_then_finished_within_the_settling_time_completes_never_refunds(
    sandbox, approved, settings
):
    settings.PAYMENTS_PAYOUT_FAILED_SETTLE_SECONDS = 1800
    sent = payouts.withdrawal_payout_send(withdrawal_id=approved.pk)
    sandbox.control.advance_payout(sent.provider_batch_id, status="FAILED")
    assert payouts.payouts_poll().settling == 1
    # Spec 3.2: a failed payout may still be processed.
    (item,) = sandbox.control.advance_payout(sent.provider_payout_id, status="FINISHED")
    assert payouts.payouts_poll().completed == 1
    done = WithdrawalRequest.objects.get(pk=approved.pk)
    assert done.status == "completed"
    assert done.transaction_hash == item["hash"]
    assert "failed_seen_at" not in done.provider_data
    assert refunds(done) == 0


def test_a_payout_that_comes_back_restarts_the_settling_time(sandbox, approved, settings):
    settings.PAYMENTS_PAYOUT_FAILED_SETTLE_SECONDS = 0
    sent = payouts.withdrawal_payout_send(withdrawal_id=approved.pk)
    with sandbox.state.lock:  # FAILED, then processing again: no control call does that
        sandbox.state.withdrawals[int(sent.provider_payout_id)].status = "FAILED"
    payouts.payouts_poll()
    with sandbox.state.lock:
        sandbox.state.withdrawals[int(sent.provider_payout_id)].status = "PROCESSING"
    payouts.payouts_poll()
    assert "failed_seen_at" not in WithdrawalRequest.objects.get(pk=approved.pk).provider_data
    with sandbox.state.lock:
        sandbox.state.withdrawals[int(sent.provider_payout_id)].status = "FAILED"
    assert payouts.payouts_poll().failed == 0, "a new failure is a new first sighting"
    assert payouts.payouts_poll().failed == 1


def test_the_batch_id_and_the_item_id_are_both_kept_and_not_confused(sandbox, approved):
    sent = payouts.withdrawal_payout_send(withdrawal_id=approved.pk)
    (batch,) = sandbox.control.payouts()
    (item,) = batch["withdrawals"]
    assert sent.provider_batch_id == batch["id"]
    assert sent.provider_payout_id == item["id"]
    assert sent.provider_batch_id != sent.provider_payout_id
    assert sent.provider_data["payout_id"] == item["id"]
    found = payouts.payout_find(sent)
    assert found.item is not None
    assert found.item.id == item["id"]
    assert found.item.unique_external_id == approved.internal_withdrawal_id


def test_a_refused_payout_fails_and_refunds(sandbox, approved):
    sandbox.control.set_balance("usdttrc20", "0")
    failed = payouts.withdrawal_payout_send(withdrawal_id=approved.pk)
    assert failed.status == "failed"
    assert failed.failure_reason.startswith("NowPayments refused the payout")
    assert refunds(failed) == 1


def test_an_unanswered_payout_is_never_refunded_but_found_later(sandbox, approved, settings):
    settings.NOWPAYMENTS_TIMEOUT = 0.5
    sandbox.control.set_fault("timeout", count=1, path="/v1/payout", delay=1.5)
    with pytest.raises(ProviderUnavailable):
        payouts.withdrawal_payout_send(withdrawal_id=approved.pk)
    pending = WithdrawalRequest.objects.get(pk=approved.pk)
    assert pending.status == "processing"
    assert "unanswered" in pending.failure_reason
    assert refunds(pending) == 0
    settings.NOWPAYMENTS_TIMEOUT = 3.0
    # The sandbox made the payout after all; the poll finds it by its external id.
    sandbox.control.wait_for(lambda: sandbox.control.payouts(), timeout=5)
    result = payouts.payouts_poll()
    assert result.adopted == 1
    adopted = WithdrawalRequest.objects.get(pk=approved.pk)
    assert adopted.provider_batch_id
    sandbox.control.advance_payout(adopted.provider_batch_id, status="FINISHED")
    payouts.payouts_poll()
    assert WithdrawalRequest.objects.get(pk=approved.pk).status == "completed"


def test_a_payout_that_cannot_be_found_goes_to_an_operator(sandbox, approved):
    from datetime import timedelta

    from django.utils import timezone

    withdrawals.withdrawal_start_processing(withdrawal_id=approved.pk)
    WithdrawalRequest._base_manager.filter(pk=approved.pk).update(
        processing_at=timezone.now() - timedelta(hours=2)
    )
    payouts.payouts_poll()
    drift = LedgerDrift.objects.get(kind="lost_payout")
    assert drift.subject == f"payout:{approved.pk}"
    assert WithdrawalRequest.objects.get(pk=approved.pk).status == "processing"
    assert refunds(approved) == 0


def test_an_unanswered_payout_is_found_on_a_later_page_and_not_called_lost(
    sandbox, approved, settings
):
    from datetime import timedelta

    from django.utils import timezone

    from sandbox import payout_flow

    with sandbox.state.lock:
        payout_flow.create_many(
            sandbox.state,
            610,
            per_batch=100,
            withdrawal={"address": TRON, "currency": "usdttrc20", "amount": "1"},
            status=None,
        )
    settings.NOWPAYMENTS_TIMEOUT = 0.5
    sandbox.control.set_fault("timeout", count=1, path="/v1/payout", delay=1.5)
    with pytest.raises(ProviderUnavailable):
        payouts.withdrawal_payout_send(withdrawal_id=approved.pk)
    settings.NOWPAYMENTS_TIMEOUT = 3.0
    sandbox.control.wait_for(lambda: len(sandbox.control.payouts()) == 8, timeout=5)
    # Processing for two hours: a search that gave up after one page would call it lost.
    WithdrawalRequest._base_manager.filter(pk=approved.pk).update(
        processing_at=timezone.now() - timedelta(hours=2)
    )
    sandbox.control.reset_requests()
    result = payouts.payouts_poll()
    assert result.adopted == 1
    assert sandbox.control.requests().get("GET /v1/payout", 0) == 2, "page 0, then page 1"
    assert not LedgerDrift.objects.filter(kind="lost_payout").exists()
    adopted = WithdrawalRequest.objects.get(pk=approved.pk)
    ours = [
        w
        for b in sandbox.control.payouts()
        for w in b["withdrawals"]
        if w["unique_external_id"] == approved.internal_withdrawal_id
    ]
    assert [w["id"] for w in ours] == [adopted.provider_payout_id]
    assert adopted.provider_batch_id == ours[0]["batch_withdrawal_id"]


# --- one payout whose calls keep failing: backed off on its own row, the others go on --------


def test_a_payout_that_cannot_be_verified_is_backed_off_and_never_holds_up_the_next(
    sandbox, approved, usdt, settings
):
    """The issue's case: payouts on, no 2FA secret. The payout is created, its verification
    fails on every try; the sweep used to raise on it, so nothing behind it moved."""
    from datetime import timedelta

    from django.utils import timezone

    settings.NOWPAYMENTS_TOTP_SECRET = ""
    settings.PAYMENTS_ITEM_RETRY_SECONDS = 60
    sent = payouts.withdrawal_payout_send(withdrawal_id=approved.pk)  # raises nothing now
    assert sent.status == "processing"
    assert sent.payout_attempts == 1
    assert "NOWPAYMENTS_TOTP_SECRET" in sent.payout_last_error
    assert timedelta(seconds=55) < sent.payout_retry_at - timezone.now() <= timedelta(seconds=60)
    # A second withdrawal behind it, paid at NowPayments (verified in the dashboard).
    reviewer = approved.admin_user
    user = UserFactory()
    ledger.post(user_id=user.pk, kind="deposit", amount_usd=Decimal("60.00"), idempotency_key="u2")
    second = withdrawals.withdrawal_create(
        user_id=user.pk, amount_usd=Decimal("20.00"), currency_id=usdt.pk, wallet_address=TRON
    )
    withdrawals.withdrawal_approve(withdrawal_id=second.pk, admin_user=reviewer)
    assert payouts.approved_withdrawal_ids() == [second.pk]
    behind = payouts.withdrawal_payout_send(withdrawal_id=second.pk)
    sandbox.control.advance_payout(behind.provider_batch_id, status="FINISHED")
    # Its wait is over: the first is tried again (and fails again, backed off twice as long),
    # and the one behind it completes in the same sweep.
    WithdrawalRequest._base_manager.filter(pk=approved.pk).update(
        payout_retry_at=timezone.now() - timedelta(seconds=1)
    )
    result = payouts.payouts_poll()
    assert result.completed == 1
    assert WithdrawalRequest.objects.get(pk=second.pk).status == "completed"
    first = WithdrawalRequest.objects.get(pk=approved.pk)
    assert (first.status, first.payout_attempts) == ("processing", 2)
    assert timedelta(seconds=115) < first.payout_retry_at - timezone.now() <= timedelta(seconds=120)
    # While backed off it is read (it may be verified in the dashboard), not verified again.
    sandbox.control.reset_requests()
    assert payouts.payouts_poll().checked == 1
    assert "POST /v1/payout/{batch_id}/verify" not in sandbox.control.requests()
    assert WithdrawalRequest.objects.get(pk=approved.pk).payout_attempts == 2
    # Configured again, its next try verifies it, and its failures are forgotten.
    settings.NOWPAYMENTS_TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    WithdrawalRequest._base_manager.filter(pk=approved.pk).update(payout_retry_at=None)
    assert payouts.payouts_poll().verified == 1
    cleared = WithdrawalRequest.objects.get(pk=approved.pk)
    assert (cleared.payout_attempts, cleared.payout_retry_at, cleared.payout_last_error) == (
        0,
        None,
        "",
    )
    assert refunds(cleared) == 0


def test_a_payout_that_cannot_be_read_is_not_read_again_before_its_wait(
    sandbox, approved, settings
):
    sent = payouts.withdrawal_payout_send(withdrawal_id=approved.pk)
    sandbox.control.set_fault("http_500", count=50, path=f"/v1/payout/{sent.provider_batch_id}")
    settings.NOWPAYMENTS_TIMEOUT = 1.0
    assert payouts.payouts_poll().errors == 1
    failing = WithdrawalRequest.objects.get(pk=approved.pk)
    assert failing.payout_attempts == 1
    assert failing.payout_last_error.startswith("reading the payout")
    sandbox.control.reset_requests()
    assert payouts.payouts_poll().checked == 0
    assert sandbox.control.requests().get("GET /v1/payout/{id}", 0) == 0


def test_a_withdrawal_that_cannot_be_priced_stays_approved_and_backed_off(
    sandbox, approved, settings
):
    sandbox.control.set_fault("http_500", count=50, path="/v1/estimate")
    kept = payouts.withdrawal_payout_send(withdrawal_id=approved.pk)
    assert kept.status == "approved"
    assert kept.payout_attempts == 1
    assert "pricing the payout" in kept.payout_last_error
    assert payouts.approved_withdrawal_ids() == [], "the sweep leaves it alone for now"
    sandbox.control.clear_faults()
    assert payouts.withdrawal_payout_send(withdrawal_id=approved.pk).status == "approved", (
        "a send queued before the backoff does nothing either"
    )
    assert sandbox.control.payouts() == []


def is_claim(sql: str, params) -> bool:
    """The claim's write: the withdrawal's row updated to processing."""
    return sql.startswith('UPDATE "payments_withdrawalrequest"') and "processing" in (params or ())


def is_mark(sql: str, params) -> bool:
    """The mark just before the payout call: the processing row's provider data rewritten."""
    return (
        sql.startswith('UPDATE "payments_withdrawalrequest"')
        and '"provider_data"' in sql
        and "processing" not in (params or ())
    )


class LostAnswer:
    """Lets the claim (or the ``write`` it is told) commit, then fails its caller as PostgreSQL
    ending the connection at that moment would: committed, unanswered. With ``rollback`` the
    write fails instead, and its transaction rolls back (nothing held); ``then`` runs before the
    first statement after that (another worker, between our error and our look), and the
    ``read_back_failures`` first statements after it fail as a database still away would."""

    def __init__(
        self, *, rollback: bool = False, then=None, write=is_claim, read_back_failures: int = 0
    ) -> None:
        self.rollback, self.then, self.write = rollback, then, write
        self.failures = read_back_failures
        self.stage = "write"

    def __call__(self, execute, sql, params, many, context):
        if self.stage == "write" and self.write(sql, params):
            self.stage = "after"
            if self.rollback:
                raise OperationalError("terminating connection due to administrator command")
            transaction.on_commit(self.lose)
        elif self.stage == "after" and not transaction.get_connection().in_atomic_block:
            if self.failures:
                self.failures -= 1
                raise OperationalError("the database system is starting up")
            self.stage = "done"
            if self.then is not None:
                self.then()
        return execute(sql, params, many, context)

    @staticmethod
    def lose() -> None:
        raise OperationalError("server closed the connection unexpectedly")


def test_a_claim_committed_without_an_answer_is_still_paid_out_once(sandbox, approved):
    with connection.execute_wrapper(LostAnswer()):
        sent = payouts.withdrawal_payout_send(withdrawal_id=approved.pk)
    assert sent.status == "processing"
    assert sent.provider_batch_id, "the claim held, so this worker sent the payout"
    (batch,) = sandbox.control.payouts()
    assert batch["verified"] is True
    again = payouts.withdrawal_payout_send(withdrawal_id=approved.pk)
    assert again.provider_batch_id == sent.provider_batch_id
    assert len(sandbox.control.payouts()) == 1, "paid once"


def test_a_claim_that_rolled_back_leaves_it_approved_for_the_next_sweep(sandbox, approved):
    with pytest.raises(OperationalError), connection.execute_wrapper(LostAnswer(rollback=True)):
        payouts.withdrawal_payout_send(withdrawal_id=approved.pk)
    assert WithdrawalRequest.objects.get(pk=approved.pk).status == "approved"
    assert sandbox.control.payouts() == []
    assert payouts.withdrawal_payout_send(withdrawal_id=approved.pk).provider_batch_id
    assert len(sandbox.control.payouts()) == 1


def test_a_lost_claim_another_worker_then_took_is_left_to_it(sandbox, approved):
    def another_worker() -> None:
        withdrawals.withdrawal_start_processing(withdrawal_id=approved.pk, claim="theirs")

    with connection.execute_wrapper(LostAnswer(rollback=True, then=another_worker)):
        left = payouts.withdrawal_payout_send(withdrawal_id=approved.pk)
    assert left.status == "processing"
    assert left.provider_data["claim"] == "theirs"
    assert left.provider_batch_id == ""
    assert sandbox.control.payouts() == [], "the worker holding the claim sends it, not us"


def claimed_by_a_dead_worker(withdrawal) -> WithdrawalRequest:
    """What a worker that died (or lost its database) right after its claim leaves behind."""
    return withdrawals.withdrawal_start_processing(withdrawal_id=withdrawal.pk, claim="dead")


def test_a_claim_whose_worker_died_before_sending_is_sent_again_once(sandbox, approved, settings):
    claimed_by_a_dead_worker(approved)
    assert payouts.unsent_withdrawal_ids() == [], "not before the retry time"
    assert payouts.payouts_poll().checked == 0, "nothing to look up: it was never sent"
    settings.PAYMENTS_PAYOUT_UNSENT_RETRY_SECONDS = 0
    assert payouts.unsent_withdrawal_ids() == [approved.pk]

    sent = payouts.withdrawal_payout_send(withdrawal_id=approved.pk)
    assert sent.status == "processing"
    assert sent.provider_batch_id
    assert "unsent" not in sent.provider_data
    (batch,) = sandbox.control.payouts()
    assert batch["verified"] is True
    assert batch["withdrawals"][0]["unique_external_id"] == approved.internal_withdrawal_id
    # The dead worker coming back to life cannot send it: its claim was taken over.
    assert withdrawals.withdrawal_mark_sending(withdrawal_id=approved.pk, claim="dead") is None
    assert payouts.unsent_withdrawal_ids() == []
    payouts.withdrawal_payout_send(withdrawal_id=approved.pk)
    assert len(sandbox.control.payouts()) == 1, "paid once"
    assert refunds(approved) == 0


def test_a_claim_whose_call_may_have_gone_out_is_never_sent_again(sandbox, approved, settings):
    settings.PAYMENTS_PAYOUT_UNSENT_RETRY_SECONDS = 0
    claimed_by_a_dead_worker(approved)
    # The worker marked it and then died, with its call to NowPayments in flight or not.
    assert withdrawals.withdrawal_mark_sending(withdrawal_id=approved.pk, claim="dead")
    assert payouts.unsent_withdrawal_ids() == []
    left = payouts.withdrawal_payout_send(withdrawal_id=approved.pk)
    assert (left.status, left.provider_batch_id) == ("processing", "")
    assert sandbox.control.payouts() == []
    assert payouts.payouts_poll().checked == 1, "looked up by its external id instead"


def test_a_stalled_claimer_and_its_taker_over_send_one_payout(sandbox, approved, settings):
    """Taking over needs the claim to be older than the retry time; the first claimer, if it was
    only slow, loses its claim and sends nothing."""
    claimed_by_a_dead_worker(approved)
    settings.PAYMENTS_PAYOUT_UNSENT_RETRY_SECONDS = 3600
    assert payouts.withdrawal_payout_send(withdrawal_id=approved.pk).provider_batch_id == ""
    assert (
        withdrawals.withdrawal_reclaim_unsent(
            withdrawal_id=approved.pk,
            claim="early",
            claimed_before=timezone.now() - timedelta(hours=1),
        )
        is None
    ), "a claim younger than the retry time is not taken over"
    settings.PAYMENTS_PAYOUT_UNSENT_RETRY_SECONDS = 0
    payouts.withdrawal_payout_send(withdrawal_id=approved.pk)
    assert withdrawals.withdrawal_mark_sending(withdrawal_id=approved.pk, claim="dead") is None
    assert len(sandbox.control.payouts()) == 1


def test_a_lost_claim_whose_read_back_fails_too_is_sent_after_the_retry_time(
    sandbox, approved, settings
):
    settings.PAYMENTS_PAYOUT_READ_BACK_SECONDS = 1  # the database stays away for longer
    with (
        pytest.raises(OperationalError),
        connection.execute_wrapper(LostAnswer(read_back_failures=1000)),
    ):
        payouts.withdrawal_payout_send(withdrawal_id=approved.pk)
    connection.close()
    stranded = WithdrawalRequest.objects.get(pk=approved.pk)
    assert (stranded.status, stranded.provider_batch_id) == ("processing", "")
    assert sandbox.control.payouts() == [], "nothing was sent"
    settings.PAYMENTS_PAYOUT_UNSENT_RETRY_SECONDS = 0
    for withdrawal_id in payouts.unsent_withdrawal_ids():  # what the payout sweep queues
        payouts.withdrawal_payout_send(withdrawal_id=withdrawal_id)
    sent = WithdrawalRequest.objects.get(pk=approved.pk)
    assert sent.provider_batch_id
    assert len(sandbox.control.payouts()) == 1


def test_a_lost_mark_is_read_back_until_the_database_answers_and_sent_once(sandbox, approved):
    """The mark held but its answer was lost, and the database stays away for a while: had the
    worker given up at the first failed read, nobody would send the payout (a marked claim is
    only looked up), and it would wait for an operator although nothing went out."""
    lost = LostAnswer(write=is_mark, read_back_failures=3)
    with connection.execute_wrapper(lost):
        sent = payouts.withdrawal_payout_send(withdrawal_id=approved.pk)
    assert (lost.stage, lost.failures) == ("done", 0), "the mark was lost, three reads failed"
    assert sent.status == "processing"
    assert sent.provider_batch_id
    (batch,) = sandbox.control.payouts()
    assert batch["verified"] is True
    assert batch["withdrawals"][0]["unique_external_id"] == approved.internal_withdrawal_id


def test_a_lost_mark_that_cannot_be_read_back_is_looked_up_never_resent(
    sandbox, approved, settings
):
    settings.PAYMENTS_PAYOUT_READ_BACK_SECONDS = 1
    settings.PAYMENTS_PAYOUT_UNSENT_RETRY_SECONDS = 0
    with (
        pytest.raises(OperationalError),
        connection.execute_wrapper(LostAnswer(write=is_mark, read_back_failures=1000)),
    ):
        payouts.withdrawal_payout_send(withdrawal_id=approved.pk)
    connection.close()
    left = WithdrawalRequest.objects.get(pk=approved.pk)
    assert (left.status, left.provider_batch_id) == ("processing", "")
    assert "unsent" not in left.provider_data, "the mark held"
    assert payouts.unsent_withdrawal_ids() == [], "it may have gone out: never sent again"
    assert sandbox.control.payouts() == []
    assert payouts.payouts_poll().checked == 1, "looked up by its external id instead"


class AwayUntilSent:
    """After the mark before sending commits, PostgreSQL is away (every statement fails as on
    a terminated connection) until the sandbox holds the payout; then it is back."""

    def __init__(self, sandbox) -> None:
        self.state = sandbox.state
        self.marked = False
        self.refused: list[str] = []

    def __call__(self, execute, sql, params, many, context):
        if not self.marked and is_mark(sql, params):
            transaction.on_commit(self.mark)
        elif self.marked and not self.sent():
            self.refused.append(sql)
            raise OperationalError("terminating connection due to administrator command")
        return execute(sql, params, many, context)

    def mark(self) -> None:
        self.marked = True

    def sent(self) -> bool:
        with self.state.lock:
            return bool(self.state.withdrawals)


def test_nothing_between_the_mark_and_the_payout_call_needs_the_database(sandbox, approved):
    """Once marked, a payout is only ever looked up, never sent again: a database statement
    between the mark and the call (a lazy foreign key, a login record) that fails on a lost
    connection would leave a payout nobody sends, waiting for an operator."""
    away = AwayUntilSent(sandbox)
    with connection.execute_wrapper(away):
        sent = payouts.withdrawal_payout_send(withdrawal_id=approved.pk)
    assert away.marked
    assert away.refused == [], "no statement ran between the mark and the call"
    (batch,) = sandbox.control.payouts()
    assert batch["withdrawals"][0]["unique_external_id"] == approved.internal_withdrawal_id
    assert batch["verified"] is True
    assert sent.provider_batch_id == str(batch["id"])


def test_a_failed_login_leaves_the_withdrawal_approved_and_backed_off(sandbox, approved, settings):
    """The JWT is fetched before the claim: a login NowPayments does not answer is not a
    payout creation that may have gone out."""
    settings.NOWPAYMENTS_TIMEOUT = 2.5  # another configuration: a new client, holding no JWT
    sandbox.control.set_fault("http_500", count=50, path="/v1/auth")
    kept = payouts.withdrawal_payout_send(withdrawal_id=approved.pk)
    assert kept.status == "approved"
    assert kept.payout_attempts == 1
    assert kept.payout_last_error.startswith("logging in to NowPayments")
    assert sandbox.control.payouts() == []
    sandbox.control.clear_faults()
    WithdrawalRequest._base_manager.filter(pk=approved.pk).update(payout_retry_at=None)
    assert payouts.withdrawal_payout_send(withdrawal_id=approved.pk).provider_batch_id
    assert len(sandbox.control.payouts()) == 1


def test_a_payout_call_whose_login_failed_after_a_401_is_unsent_and_sent_again(
    sandbox, approved, settings
):
    """NowPayments ends the held JWT early (401 on the payout call) and the login after it
    fails: nothing was created, so the payout is unsent again, backed off, and sent by the
    sweep, not looked up as a creation that may have gone out."""
    get_provider().log_in()
    sandbox.control.advance_clock(400)  # past the JWT's lifetime by the sandbox's clock only
    sandbox.control.set_fault("http_500", count=50, path="/v1/auth")
    kept = payouts.withdrawal_payout_send(withdrawal_id=approved.pk)
    assert kept.status == "processing"
    assert lifecycle.is_unsent(kept)
    assert "sending_at" not in kept.provider_data
    assert kept.payout_last_error.startswith("sending the payout")
    assert kept.payout_attempts == 1
    assert "unanswered" not in kept.failure_reason
    assert sandbox.control.payouts() == []
    assert payouts.payouts_poll().checked == 0, "nothing to look up: it was never created"

    sandbox.control.clear_faults()
    settings.PAYMENTS_PAYOUT_UNSENT_RETRY_SECONDS = 0
    assert payouts.unsent_withdrawal_ids() == [], "backed off"
    WithdrawalRequest._base_manager.filter(pk=approved.pk).update(payout_retry_at=None)
    assert payouts.unsent_withdrawal_ids() == [approved.pk]
    sent = payouts.withdrawal_payout_send(withdrawal_id=approved.pk)
    assert sent.provider_batch_id
    (batch,) = sandbox.control.payouts()
    assert batch["withdrawals"][0]["unique_external_id"] == approved.internal_withdrawal_id
    assert refunds(sent) == 0


def test_only_the_claimer_of_a_payout_without_provider_ids_can_unsend_it(sandbox, approved):
    claimed_by_a_dead_worker(approved)
    unsend = withdrawals.withdrawal_unmark_sending
    assert unsend(withdrawal_id=approved.pk, claim="dead") is False, "it is unsent already"
    assert withdrawals.withdrawal_mark_sending(withdrawal_id=approved.pk, claim="dead")
    assert unsend(withdrawal_id=approved.pk, claim="another") is False, "not its claim"
    lifecycle.withdrawal_record_payout(
        withdrawal_id=approved.pk, batch_id="5000000001", payout_id="", data={}
    )
    assert unsend(withdrawal_id=approved.pk, claim="dead") is False, "NowPayments has a batch"
    kept = WithdrawalRequest.objects.get(pk=approved.pk)
    assert not lifecycle.is_unsent(kept)
    assert "sending_at" in kept.provider_data
