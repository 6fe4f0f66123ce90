"""Every money case end to end: real worker, beat (and web) processes, the sandbox over HTTP.

Each deposit case runs twice: once with NowPayments' IPNs delivered to a real gunicorn web
process (the poller off), once through the poller alone (no IPN callback URL). Payouts are
followed by the payout poller only (payout IPNs are not applied), so they run once.

One set of processes serves every case of a path (a module-scoped ``stack``); each case has a
user and payments of its own, so cases cannot see each other's money. After each case the
user's balance is what the deposit policy says was received, no payment has two deposits, no
withdrawal is both refunded and completed, and ``ledger_reconcile()`` and
``provider_reconcile()`` find exactly what the case expects on its own objects, and nothing on
anything no case made.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.db.models import Count, Q
from django.test import override_settings
from django.utils import timezone

from payments import ledger
from payments.models import (
    LedgerDrift,
    Payment,
    PeriodicRun,
    Transaction,
    UserBalance,
    WithdrawalRequest,
)
from payments.services import deposits as service
from payments.services.reconcile import collect, ledger_reconcile
from payments.services.reconcile_provider import provider_reconcile
from sandbox.server import SandboxServer
from tests.factories import CurrencyFactory, UserFactory
from tests.payments.test_ledger_concurrency import assert_ledger_consistent
from tests.workers.processes import (
    Processes,
    flush_broker,
    free_port,
    process_env,
    set_intervals,
    start_web,
    wait_until,
)

# The mark makes pytest-django create the test database; the override of its marker fixture
# below stops it wrapping or flushing each test: the cases share one database with running
# processes, and ``stack`` flushes it once at the end.
pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _django_db_marker() -> None:
    """Overrides pytest-django's: no per-test transaction or flush in this module."""


CENT = Decimal("0.01")
MICRO = Decimal("0.000001")  # USDTTRC20's 6 decimal places
POLL, SETTLE, PAYOUTS = (
    "workers.payments_poll",
    "workers.payments_settle_sweep",
    "workers.withdrawals_payout_sweep",
)
WALLET = "TQn9Y2khEsLJW1ChVWFMSMeRDow5KcbLSE"
BOTH_PATHS = pytest.mark.parametrize("stack", ["ipn", "poll"], indirect=True)
POLL_ONLY = pytest.mark.parametrize("stack", ["poll"], indirect=True)
WAIT = 30  # seconds: a case's money moves within a few beat ticks


@dataclass
class Stack:
    """The processes of one path, and the subjects of the cases that ran on them so far."""

    path: str
    sandbox: SandboxServer
    procs: Processes
    earlier: set[str] = field(default_factory=set)


@pytest.fixture(scope="module")
def stack(
    request: pytest.FixtureRequest, django_db_setup: None, django_db_blocker: Any, sandbox_server
) -> Iterator[Stack]:
    """Worker and beat (and, for the IPN path, a web process) shared by the module's cases.

    The database is not flushed between cases (that would pull the schedules from under a
    running beat): each case makes its own user and payments. It is flushed once at the end,
    as a transactional test would, so later tests start from a clean database.
    """
    path: str = request.param
    config = sandbox_server.config
    with django_db_blocker.unblock():
        sandbox_server.control.reset()
        sandbox_server.control.set_balance("usdttrc20", "100000")
        flush_broker()
        procs = Processes(
            process_env(
                sandbox_server,
                PAYMENTS_PAYOUTS_ENABLED="1",
                # Far beyond a case: a payout reported FAILED is never refunded while it runs.
                PAYMENTS_PAYOUT_FAILED_SETTLE_SECONDS="600",
                PAYMENTS_REFUND_RECHECK_SECONDS="1",
            )
        )
        overrides = override_settings(
            PAYMENTS_ENABLED=True,
            NOWPAYMENTS_API_URL=sandbox_server.api_url,
            NOWPAYMENTS_API_KEY=config.api_key,
            NOWPAYMENTS_IPN_SECRET=config.ipn_secret,
            NOWPAYMENTS_EMAIL=config.email,
            NOWPAYMENTS_PASSWORD=config.password,
            NOWPAYMENTS_TOTP_SECRET=config.totp_secret,
            NOWPAYMENTS_TIMEOUT=5.0,
            PAYMENTS_PUBLIC_BASE_URL="",
        )
        overrides.enable()
        overrides_ipn = None
        try:
            CurrencyFactory(code="USDTTRC20", decimal_places=6, min_amount_usd=Decimal("1.00"))
            intervals = {SETTLE: 1, PAYOUTS: 1}
            if path == "poll":
                intervals[POLL] = 1
            set_intervals(intervals)
            if path == "ipn":
                port = free_port()
                start_web(procs, port)
                overrides_ipn = override_settings(
                    PAYMENTS_PUBLIC_BASE_URL=f"http://127.0.0.1:{port}"
                )
                overrides_ipn.enable()
            procs.worker()
            procs.beat()
            yield Stack(path=path, sandbox=sandbox_server, procs=procs)
        finally:
            procs.stop_all()
            flush_broker()
            if overrides_ipn is not None:
                overrides_ipn.disable()
            overrides.disable()
            call_command("flush", interactive=False, verbosity=0)


@dataclass
class Case:
    """One case's objects, named as findings name their subjects."""

    stack: Stack
    subjects: set[str] = field(default_factory=set)

    def user(self) -> Any:
        user = UserFactory()
        self.subjects.add(f"user:{user.pk}")
        return user

    def payment(self, user: Any, amount: str) -> Payment:
        payment = service.payment_create(
            user_id=user.pk, amount_usd=Decimal(amount), currency_code="USDTTRC20"
        )
        self.subjects.add(f"payment:{payment.pk}")
        return payment

    def withdrawal(self, withdrawal: WithdrawalRequest) -> WithdrawalRequest:
        self.subjects |= {f"withdrawal:{withdrawal.pk}", f"payout:{withdrawal.pk}"}
        return withdrawal


@pytest.fixture
def case(stack: Stack) -> Iterator[Case]:
    made = Case(stack)
    try:
        yield made
    finally:
        stack.earlier |= made.subjects  # whatever happened, later cases may not judge them


# --- waiting --------------------------------------------------------------------------------


def runs_of(task: str) -> int:
    run = PeriodicRun.objects.filter(name=task).first()
    return run.run_count if run else 0


def more_runs(stack: Stack, task: str, n: int = 2) -> None:
    target = runs_of(task) + n
    wait_until(
        lambda: runs_of(task) >= target, timeout=WAIT, what=f"{n} more {task}", logs=stack.procs
    )


def reached(stack: Stack, payment: Payment, status: str) -> Payment:
    def now() -> Payment | None:
        payment.refresh_from_db()
        return payment if payment.status == status else None

    return wait_until(now, timeout=WAIT, what=f"payment {status}", logs=stack.procs)


def quiet(stack: Stack, payment: Payment) -> None:
    """Let every report about ``payment`` arrive, then one more: nothing may move after."""
    control, pid = stack.sandbox.control, payment.provider_payment_id
    if stack.path == "poll":
        assert control.ipn_log(kind="payment", object_id=pid) == [], "no callback URL: no IPN"
        more_runs(stack, POLL)
        return

    def all_delivered() -> list[dict[str, Any]] | None:
        log = control.ipn_log(kind="payment", object_id=pid)
        done = log and all(d["delivered"] and not d["pending"] for d in log)
        return log if done else None

    base = settings.PAYMENTS_PUBLIC_BASE_URL
    assert base, "the IPN path's payments name the web process"

    log = wait_until(all_delivered, timeout=WAIT, what="the IPNs", logs=stack.procs)
    assert {d["url"] for d in log} == {f"{base}/payments/webhooks/nowpayments/"}
    sent = len(log)
    control.resend_ipn(pid)
    wait_until(
        lambda: (log := all_delivered()) and len(log) > sent,
        timeout=WAIT,
        what="the resent IPN",
        logs=stack.procs,
    )
    more_runs(stack, SETTLE)
    assert runs_of(POLL) == 0, "the IPN path runs without the poller"


# --- what every case must leave true --------------------------------------------------------


def postings(payment: Payment | WithdrawalRequest, kind: str) -> list[Transaction]:
    by = "payment" if isinstance(payment, Payment) else "withdrawal_request"
    return list(Transaction.objects.filter(**{by: payment, "transaction_type": kind}))


def findings_of(case: Case) -> Counter[str]:
    return Counter(
        LedgerDrift.objects.filter(subject__in=case.subjects, resolved_at__isnull=True).values_list(
            "kind", flat=True
        )
    )


def balance_of(user: Any) -> Decimal:
    row = UserBalance.objects.filter(user=user).first()
    return row.balance_usd if row else Decimal("0.00")  # no row: never credited


def check_money(
    case: Case,
    user: Any,
    balance: str,
    *,
    findings: Counter[str] | None = None,
    provider: set[tuple[str, str]] | None = None,
) -> None:
    """The balance, the one-deposit and one-outcome rules, and both reconciliations."""
    assert balance_of(user) == Decimal(balance)
    assert_ledger_consistent(user.pk)

    twice = (
        Transaction.objects.filter(payment__isnull=False)
        .values("payment_id", "transaction_type")
        .annotate(n=Count("id"))
        .filter(n__gt=1, transaction_type__in=["deposit", "reversal"])
    )
    assert list(twice) == [], "a payment with two deposits (or two reversals)"
    refunded_and_done = WithdrawalRequest.objects.filter(
        Q(status="completed") | Q(completed_at__isnull=False),
        transactions__transaction_type="refund",
    )
    assert list(refunded_and_done) == [], "a withdrawal both completed and refunded"

    # Internal reconciliation: the same checks ledger_reconcile() runs, with their subjects.
    items = collect(db=connection, now=timezone.now())
    summary = ledger_reconcile()
    assert summary["drift"] == len(items)
    ours = {(str(i.kind), i.subject) for i in items if i.subject in case.subjects}
    assert ours == set(), f"ledger_reconcile() on this case: {ours}"
    strangers = {(str(i.kind), i.subject) for i in items} - ours
    assert {s for _, s in strangers} <= case.stack.earlier, f"ledger drift: {strangers}"

    # Reconciliation against NowPayments (run here, in the test process).
    started = timezone.now()
    summary = provider_reconcile()
    assert summary["errors"] == 0, summary
    seen = {
        (row.kind, row.subject)
        for row in LedgerDrift.objects.filter(
            last_seen_at__gte=started, kind__in=list(summary["by_kind"]), resolved_at__isnull=True
        )
    }
    assert len(seen) == sum(summary["by_kind"].values()), (seen, summary)
    ours = {(kind, subject) for kind, subject in seen if subject in case.subjects}
    assert ours == (provider or set()), f"provider_reconcile() on this case: {ours}"
    strangers = seen - ours
    assert {s for _, s in strangers} <= case.stack.earlier, f"provider differences: {strangers}"

    assert findings_of(case) == (findings or Counter()), "the case's findings"


def share(price: Decimal, paid: Decimal, asked: Decimal) -> Decimal:
    return (price * paid / asked).quantize(CENT, rounding=ROUND_DOWN)


# --- deposits -------------------------------------------------------------------------------


@BOTH_PATHS
def test_a_full_payment_credits_the_price_once(stack: Stack, case: Case) -> None:
    user = case.user()
    payment = case.payment(user, "42.00")
    stack.sandbox.control.complete(payment.provider_payment_id)
    reached(stack, payment, "completed")
    quiet(stack, payment)
    assert [t.amount_usd for t in postings(payment, "deposit")] == [Decimal("42.00")]
    check_money(case, user, "42.00")


@BOTH_PATHS
def test_an_underpayment_finished_in_the_dashboard_credits_the_received_share(
    stack: Stack, case: Case
) -> None:
    user = case.user()
    price = Decimal("25.00")
    payment = case.payment(user, str(price))
    asked = payment.pay_amount
    paid = (asked * Decimal("0.3721")).quantize(MICRO, rounding=ROUND_DOWN)
    credit = share(price, paid, asked)
    assert credit < price * paid / asked, "the share must need rounding down"
    control = stack.sandbox.control
    control.pay(payment.provider_payment_id, paid)
    control.advance(payment.provider_payment_id, "partially_paid")
    reached(stack, payment, "partially_paid")
    assert postings(payment, "deposit") == []
    control.dashboard_finish(payment.provider_payment_id)
    reached(stack, payment, "completed")
    quiet(stack, payment)
    assert payment.credited_usd == credit
    assert [t.amount_usd for t in postings(payment, "deposit")] == [credit]
    check_money(case, user, str(credit))


@BOTH_PATHS
def test_an_overpayment_credits_the_price_and_records_the_excess(stack: Stack, case: Case) -> None:
    user = case.user()
    payment = case.payment(user, "30.00")
    paid = (payment.pay_amount * Decimal("1.5")).quantize(MICRO, rounding=ROUND_DOWN)
    control = stack.sandbox.control
    control.pay(payment.provider_payment_id, paid)
    control.advance(payment.provider_payment_id, "finished")
    reached(stack, payment, "completed")
    quiet(stack, payment)
    assert [t.amount_usd for t in postings(payment, "deposit")] == [Decimal("30.00")]
    check_money(case, user, "30.00", findings=Counter({"overpayment": 1}))


@BOTH_PATHS
@pytest.mark.parametrize(
    "auto_process",
    [
        pytest.param(False, id="wrong_asset_confirmed"),
        pytest.param(True, id="finished"),
    ],
)
def test_another_asset_puts_the_payment_in_review_and_credits_nothing(
    stack: Stack, case: Case, auto_process: bool
) -> None:
    user = case.user()
    payment = case.payment(user, "20.00")
    stack.sandbox.control.wrong_asset(
        payment.provider_payment_id, "btc", "0.0005", auto_process=auto_process
    )
    assert stack.sandbox.control.payment(payment.provider_payment_id)["payment_status"] == (
        "finished" if auto_process else "wrong_asset_confirmed"
    )
    reached(stack, payment, "review")
    quiet(stack, payment)
    payment.refresh_from_db()
    assert payment.status == "review"
    assert payment.review_reason
    assert postings(payment, "deposit") == []
    check_money(case, user, "0.00", findings=Counter({"payment_in_review": 1}))


@pytest.mark.parametrize(
    "stack",
    [
        "ipn",
        "poll",
    ],
    indirect=True,
)
def test_a_refund_after_finished_reverses_the_deposit(stack: Stack, case: Case) -> None:
    user = case.user()
    ledger.post(
        user_id=user.pk,
        kind="bonus",
        amount_usd=Decimal("5.00"),
        idempotency_key=f"money-cases:bonus:{uuid.uuid4()}",
    )
    payment = case.payment(user, "20.00")
    control = stack.sandbox.control
    control.complete(payment.provider_payment_id)
    reached(stack, payment, "completed")
    wait_until(
        lambda: postings(payment, "deposit"), timeout=WAIT, what="the deposit", logs=stack.procs
    )
    assert balance_of(user) == Decimal("25.00")
    control.refund(payment.provider_payment_id)
    wait_until(
        lambda: postings(payment, "reversal"),
        timeout=10,  # many poll cycles or IPN retries: a working path takes 1-2 s
        what="the reversal of the refunded deposit",
        logs=stack.procs,
    )
    reached(stack, payment, "refunded")
    quiet(stack, payment)
    assert [t.amount_usd for t in postings(payment, "reversal")] == [Decimal("-20.00")]
    assert [t.amount_usd for t in postings(payment, "deposit")] == [Decimal("20.00")]
    check_money(case, user, "5.00", findings=Counter({"payment_reversed": 1}))


# --- payouts --------------------------------------------------------------------------------


def approved_withdrawal(case: Case, amount: str = "20.00") -> tuple[Any, WithdrawalRequest]:
    from django.contrib.auth.models import Permission

    from payments.models import Currency
    from payments.services import withdrawals

    user = case.user()
    reviewer = UserFactory(is_staff=True)
    reviewer.user_permissions.add(Permission.objects.get(codename="approve_withdrawalrequest"))
    ledger.post(
        user_id=user.pk,
        kind="bonus",
        amount_usd=Decimal("30.00"),
        idempotency_key=f"money-cases:bonus:{uuid.uuid4()}",
    )
    withdrawal = withdrawals.withdrawal_create(
        user_id=user.pk,
        amount_usd=Decimal(amount),
        currency_id=Currency.objects.get(code="USDTTRC20").pk,
        wallet_address=WALLET,
    )
    withdrawals.withdrawal_approve(withdrawal_id=withdrawal.pk, admin_user=reviewer)
    return user, case.withdrawal(withdrawal)


def sent_batch(case: Case, withdrawal: WithdrawalRequest) -> str:
    def batch_id() -> str:
        withdrawal.refresh_from_db()
        return withdrawal.provider_batch_id if withdrawal.status == "processing" else ""

    return wait_until(batch_id, timeout=WAIT, what="the payout to be sent", logs=case.stack.procs)


def completed(case: Case, withdrawal: WithdrawalRequest) -> WithdrawalRequest:
    def done() -> WithdrawalRequest | None:
        withdrawal.refresh_from_db()
        return withdrawal if withdrawal.status == "completed" else None

    return wait_until(done, timeout=WAIT, what="the withdrawal completed", logs=case.stack.procs)


@POLL_ONLY
def test_a_payout_finished_then_failed_stays_completed_and_the_provider_check_says_so(
    stack: Stack, case: Case
) -> None:
    user, withdrawal = approved_withdrawal(case)
    batch = sent_batch(case, withdrawal)
    [item] = stack.sandbox.control.advance_payout(batch, status="FINISHED")
    assert item["hash"]
    completed(case, withdrawal)
    assert withdrawal.transaction_hash == item["hash"], "completed with the provider's hash"
    [item] = stack.sandbox.control.advance_payout(batch, status="FAILED")
    assert item["status"] == "FAILED"
    more_runs(stack, PAYOUTS)
    withdrawal.refresh_from_db()
    assert withdrawal.status == "completed"
    assert postings(withdrawal, "refund") == []
    check_money(
        case,
        user,
        "10.00",
        findings=Counter({"provider_payout_differs": 1}),
        provider={("provider_payout_differs", f"withdrawal:{withdrawal.pk}")},
    )


@POLL_ONLY
def test_a_payout_failed_then_finished_within_the_settling_time_is_completed_not_refunded(
    stack: Stack, case: Case
) -> None:
    user, withdrawal = approved_withdrawal(case)
    batch = sent_batch(case, withdrawal)
    stack.sandbox.control.advance_payout(batch, status="FAILED")

    def failure_seen() -> bool:
        withdrawal.refresh_from_db()
        return bool((withdrawal.provider_data or {}).get("failed_seen_at"))

    wait_until(failure_seen, timeout=WAIT, what="the poller to see FAILED", logs=stack.procs)
    more_runs(stack, PAYOUTS)  # seen FAILED again, within the settling time: not refunded
    withdrawal.refresh_from_db()
    assert withdrawal.status == "processing"
    assert postings(withdrawal, "refund") == []
    [item] = stack.sandbox.control.advance_payout(batch, status="FINISHED")
    completed(case, withdrawal)
    assert withdrawal.transaction_hash == item["hash"]
    more_runs(stack, PAYOUTS)
    assert postings(withdrawal, "refund") == []
    check_money(case, user, "10.00")
