"""The Payment status machine: apply what NowPayments reports, forward only, settling once."""

from __future__ import annotations

import functools
import json
import logging
import uuid
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.utils import timezone

from payments import ledger, ledger_pg, rowsql
from payments.bulk import update_rows
from payments.models import Currency, Payment, Transaction
from payments.models.event import EventOutcome
from payments.models.ops import DriftKind
from payments.models.payment import PaymentStatus, can_move
from payments.models.webhook import WebhookEventType
from payments.money import CENT
from payments.services.deposits.policy import Verdict, judge_report
from payments.services.deposits.reverse import collect_locked, reverse_locked
from payments.services.deposits.settle import settle_locked
from payments.services.deposits.statuses import our_status
from payments.services.findings import finding_record
from payments.services.host_webhooks import ANY_ACTIVE_COLUMN, webhook_payments_record
from payments.services.providers.nowpayments.types import ProviderPayment

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ApplyResult:
    outcome: str
    payment_id: uuid.UUID | None = None
    status: str | None = None
    deposit: Transaction | None = None


def payment_apply_report(*, report: ProviderPayment, source: str) -> ApplyResult:
    """Apply what NowPayments says of a payment (from a poll or an IPN).

    The status only moves forward; a stale or repeated report changes nothing. Reaching
    completed posts the deposit in the same database transaction, exactly once.
    """
    ours = our_status(report.payment_status)
    with transaction.atomic():
        balances: dict[int, ledger.Balance] = {}
        endpoints_active: bool | None = None
        if connection.vendor == "postgresql":
            locked, endpoints_active = _lock_reported(report.payment_id, ours, balances)
        else:
            locked = (
                Payment._base_manager.select_for_update(of=("self",))
                .select_related("currency")
                .filter(provider_payment_id=report.payment_id)
                .first()
            )
        if locked is None:
            return _unknown_payment(report)
        payment = locked
        old_status = payment.status
        outcome, verdict = _merge_report(payment, report, ours, timezone.now())
        _write_progress([payment])
        deposits = consequences(
            [(payment, verdict)], balances=balances, endpoints_active=endpoints_active
        )
    deposit = deposits[0] if deposits else None
    if outcome == EventOutcome.APPLIED:
        logger.info("payment id=%s %s -> %s via %s", payment.pk, old_status, payment.status, source)
    return ApplyResult(
        outcome=outcome, payment_id=payment.pk, status=payment.status, deposit=deposit
    )


# The payment a report names, with its currency (the policy reads its decimals), locked; and
# for a report that completes it, its user's balance too, by the same statement (payment
# first, as everywhere): settling then needs no lock statement of its own. The last column
# says whether any webhook endpoint is active (the outbox would ask next).
_REPORTED = (
    "SELECT {payment}, {currency}{balance}, {endpoints} FROM payments_payment p "
    "JOIN payments_currency c ON c.id = p.currency_id{join} "
    "WHERE p.provider_payment_id = %s FOR UPDATE OF p{of}"
)


@functools.cache
def _reported_sql(*, with_balance: bool) -> str:
    return _REPORTED.format(
        payment=rowsql.select_list(Payment, "p"),
        currency=rowsql.select_list(Currency, "c"),
        balance=f", {ledger.balance_columns('b')}" if with_balance else "",
        join=" JOIN payments_userbalance b ON b.user_id = p.user_id" if with_balance else "",
        of=", b" if with_balance else "",
        endpoints=ANY_ACTIVE_COLUMN,
    )


def _lock_reported(
    provider_payment_id: str, ours: str, balances: dict[int, ledger.Balance]
) -> tuple[Payment | None, bool | None]:
    """The payment ``provider_payment_id`` names, locked, built as the ORM would (PostgreSQL),
    and whether a webhook endpoint is active; a completing report's balance row goes into
    ``balances``. (None, None): no such payment."""
    rows = []
    if ours == PaymentStatus.COMPLETED:
        rows = ledger_pg.run(_reported_sql(with_balance=True), [provider_payment_id])
    if not rows:  # not completing, or the user's first credit (no balance row yet)
        rows = ledger_pg.run(_reported_sql(with_balance=False), [provider_payment_id])
    if not rows:
        return None, None
    *row, endpoints_active = rows[0]
    split = rowsql.width(Payment)
    end = split + rowsql.width(Currency)
    payment = rowsql.build(Payment, row[:split])
    Payment.currency.field.set_cached_value(payment, rowsql.build(Currency, row[split:end]))
    if len(row) > end:
        balances[payment.user_id] = ledger.balance_of(row[end:])
    return payment, endpoints_active


def payments_apply_reports(
    *,
    reports: list[ProviderPayment],
    source: str,
    outcomes: dict[str, tuple[str, uuid.UUID]] | None = None,
) -> dict[str, int]:
    """Apply many reports in one database transaction (the poller's path, a page at a time).

    The same rules as ``payment_apply_report``: forward only, and completed payments get their
    deposit in the same transaction, through one ``ledger.post_many``. ``outcomes``, when
    given, receives each known payment's (outcome, payment id) by provider payment id (the
    IPN drain records them on its events); reports of unknown payments are left out.
    """
    counts = {"applied": 0, "stale": 0, "unchanged": 0, "credited": 0}
    by_id = {report.payment_id: report for report in reports}
    if not by_id:
        return counts
    now = timezone.now()
    with transaction.atomic():
        payments = list(
            Payment._base_manager.select_for_update(of=("self",))
            .select_related("currency")
            .filter(provider_payment_id__in=list(by_id))
            .order_by("pk")
        )
        moved = []
        for payment in payments:
            report = by_id[payment.provider_payment_id or ""]
            outcome, verdict = _merge_report(
                payment, report, our_status(report.payment_status), now
            )
            counts[outcome] += 1
            if outcomes is not None:
                outcomes[report.payment_id] = (outcome, payment.pk)
            moved.append((payment, verdict))
        _write_progress(payments)
        counts["credited"] = len(consequences(moved, only_new=True))
    if counts["applied"]:
        logger.info("%s: applied %s report(s) in one batch", source, counts["applied"])
    return counts


# The columns a provider report may change.
_PROGRESS_FIELDS = [
    "status",
    "status_changed_at",
    "completed_at",
    "actual_amount",
    "actual_amount_usd",
    "transaction_hash",
    "pay_address",
    "pay_amount",
    "provider_data",
    "provider_checked_at",
    "credited_usd",
    "review_reason",
    "updated_at",
]


def _merge_report(
    payment: Payment, report: ProviderPayment, ours: str, now: Any
) -> tuple[str, Verdict | None]:
    """Merge a report into the payment in memory: the outcome (applied/stale/unchanged) and,
    when the status moved, the policy's verdict that moved it."""
    payment.provider_checked_at = now
    payment.updated_at = now
    old_status = payment.status
    verdict = judge_report(payment, report, ours)
    if verdict.status == old_status:
        _copy_progress(payment, report)
        late = (
            old_status == PaymentStatus.COMPLETED
            and verdict.credit_usd is not None
            and payment.credited_usd is not None
            and verdict.credit_usd > payment.credited_usd
        )
        return EventOutcome.UNCHANGED, verdict if late else None
    if not can_move(old_status, verdict.status):
        return EventOutcome.STALE, None
    payment.status = verdict.status
    payment.status_changed_at = now
    if verdict.status == PaymentStatus.COMPLETED:
        payment.credited_usd = verdict.credit_usd
        if payment.completed_at is None:
            payment.completed_at = now
    if verdict.review_reason:
        payment.review_reason = verdict.review_reason[:300]
    _copy_progress(payment, report)
    return EventOutcome.APPLIED, verdict


def consequences(
    moved: list[tuple[Payment, Verdict | None]],
    *,
    only_new: bool = False,
    balances: dict[int, ledger.Balance] | None = None,
    endpoints_active: bool | None = None,
) -> list[Transaction]:
    """What the moves mean for money, in the same transaction: settle completions, reverse
    refunded credits, collect what is owed, and put reviews and excess before an operator.
    ``balances``: balance rows the caller locked with the payments (``ledger.post_batch``);
    ``endpoints_active``: whether the caller's lock found an active webhook endpoint."""
    payments = [payment for payment, _ in moved]
    # Every balance this may touch (of a completed or refunded payment), locked once in user
    # order: settling, reversing and collecting then never wait on each other in another
    # order. One user's balance needs no order: the ledger locks it when it posts.
    touched = {
        payment.user_id
        for payment in payments
        if payment.status in (PaymentStatus.COMPLETED, PaymentStatus.REFUNDED)
    }
    if len(touched) > 1:
        ledger.lock_balances(touched)
    deposits = settle_locked(
        payments, only_new=only_new, balances=balances, endpoints_active=endpoints_active
    )
    reverse_locked(payments)
    if deposits:
        collect_locked({t.user_id for t in deposits})
    # Every move into review, whoever made it (a report, our own move, the ORM), passes here.
    webhook_payments_record(
        event_type=WebhookEventType.PAYMENT_IN_REVIEW,
        extras={
            payment.pk: {"reason": verdict.review_reason or payment.review_reason}
            for payment, verdict in moved
            if verdict is not None and verdict.status == PaymentStatus.REVIEW
        },
        endpoints_active=endpoints_active,
    )
    for payment, verdict in moved:
        if verdict is None:
            continue
        if verdict.status == PaymentStatus.REVIEW:
            finding_record(
                kind=DriftKind.PAYMENT_IN_REVIEW,
                subject=f"payment:{payment.pk}",
                user_id=payment.user_id,
                payment_id=payment.pk,
                expected="a report that matches the payment",
                actual=verdict.review_reason or payment.review_reason,
                detail=f"{payment.internal_payment_id} is in review: "
                f"{verdict.review_reason or payment.review_reason}. Credit what was received, "
                "credit in full (second operator) or reject it.",
            )
        if (
            verdict.status == PaymentStatus.COMPLETED
            and payment.status == PaymentStatus.COMPLETED
            and payment.credited_usd is not None
            and verdict.credit_usd is not None
            and verdict.credit_usd > payment.credited_usd
        ):
            finding_record(
                kind=DriftKind.LATE_PROVIDER_REPORT,
                subject=f"payment:{payment.pk}",
                user_id=payment.user_id,
                payment_id=payment.pk,
                expected=f"{payment.credited_usd} USD credited",
                actual=f"worth {verdict.credit_usd} USD now",
                detail=f"{payment.internal_payment_id} was settled at {payment.credited_usd} USD; "
                f"NowPayments now reports more received (worth {verdict.credit_usd} USD). "
                "Credit the difference by hand if it is right.",
            )
            continue
        if verdict.excess_usd:
            finding_record(
                kind=DriftKind.OVERPAYMENT,
                subject=f"payment:{payment.pk}",
                user_id=payment.user_id,
                payment_id=payment.pk,
                expected=f"{payment.amount_usd} USD",
                actual=f"{payment.amount_usd + verdict.excess_usd} USD received",
                detail=f"{payment.internal_payment_id} was overpaid by about "
                f"{verdict.excess_usd} USD; the price was credited and the excess was not.",
            )
    return deposits


def _write_progress(payments: list[Payment]) -> None:
    """Write the progress columns of many payments in one statement (PostgreSQL)."""
    if not payments:
        return
    if connection.vendor != "postgresql":
        for payment in payments:
            Payment._base_manager.filter(pk=payment.pk).update(
                **{name: getattr(payment, name) for name in _PROGRESS_FIELDS}
            )
        return
    update_rows(
        table="payments_payment",
        key=("id", "uuid"),
        columns=[
            ("status", "varchar"),
            ("status_changed_at", "timestamptz"),
            ("completed_at", "timestamptz"),
            ("actual_amount", "numeric"),
            ("actual_amount_usd", "numeric"),
            ("transaction_hash", "varchar"),
            ("pay_address", "varchar"),
            ("pay_amount", "numeric"),
            ("provider_data", "jsonb"),
            ("provider_checked_at", "timestamptz"),
            ("credited_usd", "numeric"),
            ("review_reason", "varchar"),
            ("updated_at", "timestamptz"),
        ],
        rows=[
            (
                p.pk,
                p.status,
                p.status_changed_at,
                p.completed_at,
                p.actual_amount,
                p.actual_amount_usd,
                p.transaction_hash,
                p.pay_address,
                p.pay_amount,
                json.dumps(p.provider_data, cls=DjangoJSONEncoder),
                p.provider_checked_at,
                p.credited_usd,
                p.review_reason,
                p.updated_at,
            )
            for p in payments
        ],
    )


def _unknown_payment(report: ProviderPayment) -> ApplyResult:
    """A payment we did not create: a re-deposit to one of ours is put before an operator.

    NowPayments makes a child payment when a customer pays the same address again; it is never
    credited automatically (the amount and asset need a person's check).
    """
    parent = None
    if report.parent_payment_id:
        parent = Payment.objects.filter(provider_payment_id=report.parent_payment_id).first()
    if parent is None:
        return ApplyResult(outcome=EventOutcome.UNKNOWN_PAYMENT)
    paid = f"{report.actually_paid or 0} {report.pay_currency or ''}".strip()
    finding_record(
        kind=DriftKind.REDEPOSIT,
        subject=f"redeposit:{report.payment_id}",
        user_id=parent.user_id,
        payment_id=parent.pk,
        expected="no further deposit",
        actual=paid,
        detail=f"NowPayments payment {report.payment_id} ({report.payment_status}) "
        f"re-deposited to the address of {parent.internal_payment_id}.",
    )
    logger.warning("re-deposit %s to payment %s needs review", report.payment_id, parent.pk)
    return ApplyResult(outcome=EventOutcome.IGNORED, payment_id=parent.pk, status=parent.status)


def _copy_progress(payment: Payment, report: ProviderPayment) -> None:
    if report.actually_paid is not None:
        payment.actual_amount = report.actually_paid
        payment.actual_amount_usd = _usd_value(payment, report)
    if report.payin_hash:
        payment.transaction_hash = report.payin_hash
    if report.pay_address and not payment.pay_address:
        payment.pay_address = report.pay_address
    if report.pay_amount is not None and payment.pay_amount is None:
        payment.pay_amount = report.pay_amount
    payment.provider_data = dict(report.raw)


def _usd_value(payment: Payment, report: ProviderPayment) -> Decimal | None:
    if report.actually_paid_at_fiat is not None:
        return report.actually_paid_at_fiat.quantize(CENT, rounding=ROUND_DOWN)
    paid, asked = report.actually_paid, payment.pay_amount or report.pay_amount
    if paid is None or not asked:
        return None
    return (payment.amount_usd * paid / asked).quantize(CENT, rounding=ROUND_DOWN)
