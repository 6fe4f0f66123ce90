"""Reconciliation against NowPayments: our settled payments and payouts against the provider's word.

Read-only on our rows. What differs becomes a finding (``findings.finding_record``) for an
operator; nothing is corrected here. NowPayments is called outside any database transaction,
and every comparison is made before anything is recorded, so a run the provider did not answer
at all records nothing and raises ``ProviderUnavailable`` (the task retries it).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import F, Q
from django.utils import timezone

from payments.errors import ProviderError, ProviderRejected, ProviderUnavailable
from payments.models import Payment, WithdrawalRequest
from payments.models.ops import DriftKind
from payments.models.payment import PaymentStatus
from payments.models.withdrawal import WithdrawalStatus
from payments.services.deposits.statuses import our_status
from payments.services.findings import finding_record
from payments.services.providers.nowpayments.gateway import get_provider, refuse_inside_transaction
from payments.services.providers.nowpayments.provider import NowPaymentsProvider
from payments.services.providers.nowpayments.statuses import FINAL_PAYOUT_STATUSES
from payments.services.providers.nowpayments.types import PayoutWithdrawal, ProviderPayment
from payments.services.reconcile_checks import Finding

logger = logging.getLogger(__name__)

DEFAULT_WINDOW = timedelta(days=7)
# Payments the list endpoint cannot give (no JWT credentials, or not listed) cost one status
# call each: at most this many per run, those the provider confirmed longest ago first.
MAX_STATUS_CALLS = 200
# Payout batches read per run (one call each): processing ones first, then the newest completed.
MAX_PAYOUT_CALLS = 200
# The payout poller settles a FINISHED or FAILED payout within a minute; a withdrawal still
# processing this long after its last change is one the poller missed.
POLLER_GRACE = timedelta(minutes=10)
PAGE_SIZE = 500
# Our statuses the provider's record must bear out.
CHECKED_STATUSES = (PaymentStatus.COMPLETED, PaymentStatus.REFUNDED, PaymentStatus.REVIEW)
_REVIEW = PaymentStatus.REVIEW


FIGURES = ("payments_checked", "payments_differing", "withdrawals_checked", "withdrawals_differing")


@dataclass
class _Run:
    """What one run saw: its findings (recorded at the end) and its figures."""

    findings: list[Finding] = field(default_factory=list)
    figures: Counter[str] = field(default_factory=Counter)
    errors: int = 0
    calls: int = 0  # per-item provider calls made
    unanswered: int = 0  # of which the provider did not answer
    unavailable: ProviderUnavailable | None = None  # the last of those

    def add(self, found: list[Finding], *, what: str) -> None:
        self.findings.extend(found)
        self.figures[f"{what}_checked"] += 1
        self.figures[f"{what}_differing"] += bool(found)

    def summary(self) -> dict[str, Any]:
        return {
            **{name: self.figures[name] for name in FIGURES},
            "errors": self.errors,
            "by_kind": dict(Counter(str(item.kind) for item in self.findings)),
        }


class _Missing:
    """The provider answered that it does not know the object."""


MISSING = _Missing()


def provider_reconcile(*, window: timedelta = DEFAULT_WINDOW) -> dict[str, Any]:
    """Check settled payments and paid-out withdrawals of the last ``window`` at NowPayments.

    Returns ``{"payments_checked", "payments_differing", "withdrawals_checked",
    "withdrawals_differing", "errors", "by_kind": {kind: n}}``. One item the provider fails
    on is counted in ``errors`` and the rest go on; ``ProviderUnavailable`` is raised when the
    provider answered nothing at all.
    """
    refuse_inside_transaction()
    now = timezone.now()
    provider = get_provider()
    run = _Run()
    _check_payments(provider, run, since=now - window)
    _check_withdrawals(provider, run, since=now - window, now=now)
    if run.unavailable is not None and run.unanswered == run.calls:
        raise run.unavailable
    for item in run.findings:
        finding_record(**asdict(item))
    summary = run.summary()
    if run.findings:
        logger.error("provider reconciliation found differences: %s", summary)
    else:
        logger.info("provider reconciliation: consistent with NowPayments (%s)", summary)
    return summary


# --- payments -------------------------------------------------------------------------------


def _check_payments(provider: NowPaymentsProvider, run: _Run, *, since: datetime) -> None:
    due = list(
        Payment.objects.filter(Q(status_changed_at__gte=since) | Q(completed_at__gte=since))
        .filter(status__in=CHECKED_STATUSES, provider_payment_id__isnull=False)
        .select_related("currency")
        .order_by(F("provider_checked_at").asc(nulls_first=True), "pk")
    )
    if not due:
        return
    by_id = {str(payment.provider_payment_id): payment for payment in due}
    listed: dict[str, ProviderPayment] = {}
    if provider.config.has_jwt_credentials:
        oldest = min(payment.created_at for payment in due)
        date_from = (oldest - timedelta(days=1)).date().isoformat()
        for report in provider.iter_payments(
            limit=PAGE_SIZE, date_from=date_from, sort_by="created_at", order_by="asc"
        ):
            if report.payment_id in by_id:
                listed[report.payment_id] = report
                if len(listed) == len(by_id):
                    break
    unlisted = [pid for pid in by_id if pid not in listed][:MAX_STATUS_CALLS]
    for pid in by_id:
        if pid in listed:
            run.add(_compare_payment(by_id[pid], listed[pid]), what="payments")
    for pid in unlisted:
        answer = _call(run, provider.get_payment_status, pid, what=f"payment {pid}")
        if isinstance(answer, _Missing):
            run.add([_payment_missing(by_id[pid])], what="payments")
        elif isinstance(answer, ProviderPayment):
            run.add(_compare_payment(by_id[pid], answer), what="payments")


def _compare_payment(payment: Payment, report: ProviderPayment) -> list[Finding]:
    """Each way NowPayments' record of ``payment`` differs from ours: expected ours, actual its."""
    paid, their_paid = payment.actual_amount or Decimal(0), report.actually_paid or Decimal(0)
    asset, their_asset = payment.currency.provider_code.lower(), (report.pay_currency or "").lower()
    differ: list[tuple[str, str, str, str]] = []
    if not _status_consistent(payment.status, report.payment_status):
        differ.append(
            ("status", DriftKind.PROVIDER_STATUS_DIFFERS, payment.status, report.payment_status)
        )
    if paid != their_paid:
        differ.append(
            (
                "amount received",
                DriftKind.PROVIDER_AMOUNT_DIFFERS,
                _amount(paid),
                _amount(their_paid),
            )
        )
    # A payment in review for another asset is in review for exactly this reason.
    if asset != their_asset and payment.status != PaymentStatus.REVIEW:
        differ.append(("pay currency", DriftKind.PROVIDER_ASSET_DIFFERS, asset, their_asset))
    return [
        Finding(
            kind=kind,
            subject=f"payment:{payment.pk}",
            user_id=payment.user_id,
            payment_id=payment.pk,
            expected=ours,
            actual=theirs or "(none)",
            detail=f"Payment {payment.internal_payment_id}: our {what} is {ours}; NowPayments "
            f"payment {report.payment_id} says {theirs or 'nothing'}. Nothing was changed: "
            "check the NowPayments dashboard before correcting it.",
        )
        for what, kind, ours, theirs in differ
    ]


def _status_consistent(ours: str, provider_status: str) -> bool:
    """Review (an operator decides) fits any provider status; otherwise the map must agree."""
    if ours == _REVIEW:
        return True
    try:
        return our_status(provider_status) == ours
    except ProviderError:  # a status we do not know is not the one we hold
        return False


def _payment_missing(payment: Payment) -> Finding:
    return Finding(
        kind=DriftKind.PROVIDER_PAYMENT_MISSING,
        subject=f"payment:{payment.pk}",
        user_id=payment.user_id,
        payment_id=payment.pk,
        expected=f"NowPayments payment {payment.provider_payment_id}",
        actual="not found",
        detail=f"Our {payment.status} payment {payment.internal_payment_id} names NowPayments "
        f"payment {payment.provider_payment_id}, which NowPayments does not know.",
    )


def _amount(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"


# --- withdrawals ----------------------------------------------------------------------------


def _check_withdrawals(
    provider: NowPaymentsProvider, run: _Run, *, since: datetime, now: datetime
) -> None:
    paid_out = WithdrawalRequest.objects.exclude(provider_batch_id="")
    due = [
        *paid_out.filter(status=WithdrawalStatus.PROCESSING).order_by("processing_at", "pk"),
        *paid_out.filter(status=WithdrawalStatus.COMPLETED, completed_at__gte=since).order_by(
            "-completed_at", "pk"
        ),
        # Refunded after a failed payout: NowPayments warns a failed payout may still be paid.
        *paid_out.filter(status=WithdrawalStatus.FAILED, failed_at__gte=since).order_by(
            "-failed_at", "pk"
        ),
    ]
    batches: dict[str, list[PayoutWithdrawal] | _Missing | None] = {}
    for withdrawal in due:
        batch_id = withdrawal.provider_batch_id
        if batch_id not in batches:
            if len(batches) >= MAX_PAYOUT_CALLS:
                break
            batches[batch_id] = _call(run, provider.get_payout, batch_id, what=f"payout {batch_id}")
        items = batches[batch_id]
        if items is None:
            continue  # not read: counted in errors
        item = None if isinstance(items, _Missing) else _match(withdrawal, items)
        if item is None:
            run.add([_payout_missing(withdrawal)], what="withdrawals")
        else:
            run.add(_compare_payout(withdrawal, item, now=now), what="withdrawals")


def _match(withdrawal: WithdrawalRequest, items: list[PayoutWithdrawal]) -> PayoutWithdrawal | None:
    """The batch's item for ``withdrawal``: by its item id, else by our external id."""
    if withdrawal.provider_payout_id:
        for item in items:
            if item.id == withdrawal.provider_payout_id:
                return item
    for item in items:
        if item.unique_external_id == withdrawal.internal_withdrawal_id:
            return item
    return None


def _compare_payout(
    withdrawal: WithdrawalRequest, item: PayoutWithdrawal, *, now: datetime
) -> list[Finding]:
    status, their_hash = item.status.upper(), (item.hash or "").strip()
    where = f"NowPayments payout item {item.id} (batch {withdrawal.provider_batch_id})"
    if withdrawal.status == WithdrawalStatus.COMPLETED:
        ours = withdrawal.transaction_hash.strip()
        if status == "FINISHED" and their_hash == ours:
            return []
        expected, actual = f"completed {ours}", f"{status or '(none)'} {their_hash or '(no hash)'}"
        detail = (
            f"Withdrawal {withdrawal.internal_withdrawal_id} is completed with hash {ours}; "
            f"{where} is {status or 'without a status'} with hash {their_hash or 'none'}."
        )
    elif withdrawal.status == WithdrawalStatus.FAILED:
        if status != "FINISHED" and not their_hash:
            return []
        expected, actual = "failed (refunded)", f"{status} {their_hash or '(no hash)'}"
        detail = (
            f"Withdrawal {withdrawal.internal_withdrawal_id} failed and its hold was refunded, "
            f"but {where} is {status} with hash {their_hash or 'none'}: the user may have been "
            "paid as well as refunded. Check the chain and recover the refund by hand."
        )
    else:
        if status not in FINAL_PAYOUT_STATUSES or withdrawal.updated_at > now - POLLER_GRACE:
            return []
        expected, actual = "processing", status
        detail = (
            f"NowPayments says {status} but we are processing: withdrawal "
            f"{withdrawal.internal_withdrawal_id} has not changed since "
            f"{withdrawal.updated_at:%Y-%m-%d %H:%M} UTC; {where}. The payout poller should "
            "have moved it on: check its runs."
        )
    return [
        Finding(
            kind=DriftKind.PROVIDER_PAYOUT_DIFFERS,
            subject=f"withdrawal:{withdrawal.pk}",
            user_id=withdrawal.user_id,
            expected=expected,
            actual=actual,
            detail=detail,
        )
    ]


def _payout_missing(withdrawal: WithdrawalRequest) -> Finding:
    wanted = withdrawal.provider_payout_id or withdrawal.internal_withdrawal_id
    return Finding(
        kind=DriftKind.PROVIDER_PAYOUT_MISSING,
        subject=f"withdrawal:{withdrawal.pk}",
        user_id=withdrawal.user_id,
        expected=f"payout item {wanted}",
        actual="not found",
        detail=f"Our {withdrawal.status} withdrawal {withdrawal.internal_withdrawal_id} names "
        f"NowPayments batch {withdrawal.provider_batch_id}, which has no item {wanted}.",
    )


# --- provider calls -------------------------------------------------------------------------


def _call(run: _Run, method: Any, object_id: str, *, what: str) -> Any:
    """``method(object_id)``; MISSING when NowPayments does not know it, None on an error."""
    run.calls += 1
    try:
        return method(object_id)
    except ProviderError as exc:
        if isinstance(exc, ProviderRejected) and (
            exc.http_status == 404 or exc.provider_code == "NOT_FOUND"
        ):
            return MISSING
        if isinstance(exc, ProviderUnavailable):
            run.unanswered += 1
            run.unavailable = exc
        run.errors += 1
        logger.warning("provider reconciliation: %s not read (%s)", what, exc.code)
        return None
