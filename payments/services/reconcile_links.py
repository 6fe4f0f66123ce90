"""Reconciliation checks of what ties postings to payments and withdrawals, one SQL statement each.

Amounts are compared in integer cents, as in ``reconcile_checks``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from payments.models.ops import DriftKind
from payments.services.reconcile_checks import Check, Cursor, Finding, as_uuid, scoped, usd

# A completed payment is given this long to be settled before it counts as drift.
SETTLEMENT_GRACE = timedelta(minutes=10)
# The refund of a rejected, cancelled or failed withdrawal is posted with the status change;
# this much slack covers a status change that committed while the check ran.
REFUND_GRACE = timedelta(minutes=5)

# What a payment credits, in cents, as SQL over ``payments_payment p``: the one place to follow
# Payment.credited_amount_usd. A refunded payment keeps its deposit beside its reversal.
CREDIT_CENTS_SQL = "CAST(ROUND(COALESCE(p.credited_usd, p.amount_usd) * 100) AS BIGINT)"

# --- deposits -------------------------------------------------------------------------------

_DEPOSIT_NOT_COMPLETED_SQL = """
SELECT t.payment_id, p.status, t.user_id
  FROM payments_transaction t
  @join_payment(t.payment_id)
 WHERE t.transaction_type = 'deposit' AND p.status <> 'completed' AND @users(t.user_id)
   AND NOT (p.status = 'refunded' AND (
        EXISTS (SELECT 1 FROM payments_transaction r
                 WHERE r.payment_id = p.id AND r.transaction_type = 'reversal')
        OR EXISTS (SELECT 1 FROM payments_receivable d WHERE d.payment_id = p.id)))
"""


def _deposits_not_completed(cursor: Cursor, cutoffs: dict[str, Any]) -> Iterator[Finding]:
    cursor.execute(scoped(_DEPOSIT_NOT_COMPLETED_SQL, cutoffs), cutoffs)
    for payment_id, status, user_id in cursor.fetchall():
        yield Finding(
            kind=DriftKind.DEPOSIT_WITHOUT_COMPLETION,
            subject=f"payment:{as_uuid(payment_id)}",
            user_id=user_id,
            payment_id=as_uuid(payment_id),
            expected="completed",
            actual=status,
        )


_DEPOSIT_MISMATCH_SQL = f"""
SELECT t.payment_id, t.user_id, CAST(ROUND(t.amount_usd * 100) AS BIGINT),
       p.user_id, {CREDIT_CENTS_SQL}
  FROM payments_transaction t
  @join_payment(t.payment_id)
 WHERE t.transaction_type = 'deposit' AND @users(t.user_id)
   AND (t.user_id <> p.user_id OR CAST(ROUND(t.amount_usd * 100) AS BIGINT) <> {CREDIT_CENTS_SQL})
"""  # noqa: S608 - built once from constants


def _deposit_mismatches(cursor: Cursor, cutoffs: dict[str, Any]) -> Iterator[Finding]:
    cursor.execute(scoped(_DEPOSIT_MISMATCH_SQL, cutoffs), cutoffs)
    for payment_id, user_id, cents, payer_id, credit in cursor.fetchall():
        yield Finding(
            kind=DriftKind.DEPOSIT_MISMATCH,
            subject=f"payment:{as_uuid(payment_id)}",
            user_id=user_id,
            payment_id=as_uuid(payment_id),
            expected=f"{usd(credit)} USD to user {payer_id}",
            actual=f"{usd(cents)} USD to user {user_id}",
        )


# Also a payment_id naming no payment, which only a session without foreign keys can write.
_DEPOSIT_WITHOUT_PAYMENT_SQL = """
SELECT t.id, t.user_id, t.sequence, CAST(ROUND(t.amount_usd * 100) AS BIGINT), t.payment_id
  FROM payments_transaction t
  @left_join_payment(t.payment_id)
 WHERE t.transaction_type = 'deposit' AND p.id IS NULL AND @users(t.user_id)
"""


def _deposits_without_payment(cursor: Cursor, cutoffs: dict[str, Any]) -> Iterator[Finding]:
    cursor.execute(scoped(_DEPOSIT_WITHOUT_PAYMENT_SQL, cutoffs), cutoffs)
    for posting_id, user_id, sequence, cents, payment_id in cursor.fetchall():
        named = "no payment" if payment_id is None else f"unknown payment {as_uuid(payment_id)}"
        yield Finding(
            kind=DriftKind.DEPOSIT_WITHOUT_PAYMENT,
            subject=f"posting:{posting_id}",
            user_id=user_id,
            expected="a deposit for a completed payment",
            actual=f"{usd(cents)} USD for {named}",
            detail=f"Posting {posting_id} (user {user_id}, seq {sequence}) is a DEPOSIT for "
            f"{named}; a credit by hand is an ADJUSTMENT or BONUS.",
        )


_UNSETTLED_SQL = f"""
SELECT p.id, p.user_id, {CREDIT_CENTS_SQL}
  FROM payments_payment p
 WHERE p.status = 'completed' AND COALESCE(p.completed_at, p.updated_at) < %(settled_before)s
   AND @users(p.user_id)
   AND NOT EXISTS (SELECT 1 FROM payments_transaction t
                    WHERE t.payment_id = p.id AND t.transaction_type = 'deposit' @probe)
"""  # noqa: S608 - built once from constants


def _unsettled(cursor: Cursor, cutoffs: dict[str, Any]) -> Iterator[Finding]:
    cursor.execute(scoped(_UNSETTLED_SQL, cutoffs), cutoffs)
    for payment_id, user_id, credit in cursor.fetchall():
        yield Finding(
            kind=DriftKind.UNSETTLED_PAYMENT,
            subject=f"payment:{as_uuid(payment_id)}",
            user_id=user_id,
            payment_id=as_uuid(payment_id),
            expected=f"deposit of {usd(credit)} USD",
            actual="no deposit",
        )


_LATE_REPORT_SQL = """
SELECT e.payment_id, p.user_id, MAX(e.provider_status)
  FROM payments_providerevent e
  JOIN payments_payment p ON p.id = e.payment_id
 WHERE e.outcome = 'stale' AND p.status IN ('expired', 'failed', 'cancelled')
   AND e.provider_status IN ('confirming', 'confirmed', 'sending', 'finished', 'partially_paid')
   AND @users(p.user_id)
 GROUP BY e.payment_id, p.user_id
"""


def _late_reports(cursor: Cursor, cutoffs: dict[str, Any]) -> Iterator[Finding]:
    cursor.execute(scoped(_LATE_REPORT_SQL, cutoffs), cutoffs)
    for payment_id, user_id, provider_status in cursor.fetchall():
        yield Finding(
            kind=DriftKind.LATE_PROVIDER_REPORT,
            subject=f"payment:{as_uuid(payment_id)}",
            user_id=user_id,
            payment_id=as_uuid(payment_id),
            expected="no money after the payment closed",
            actual=f"NowPayments reports {provider_status}",
        )


# --- withdrawals ----------------------------------------------------------------------------

# At most one hold per withdrawal (txn_one_debit_per_withdrawal), so one row per withdrawal.
_HOLD_SQL = """
SELECT w.id, w.user_id, CAST(ROUND(w.amount_usd * 100) AS BIGINT),
       t.id, t.user_id, CAST(ROUND(t.amount_usd * 100) AS BIGINT)
  FROM payments_withdrawalrequest w
  LEFT JOIN payments_transaction t
    ON t.withdrawal_request_id = w.id AND t.transaction_type = 'withdrawal'
 WHERE @users(w.user_id)
   AND (t.id IS NULL OR t.user_id <> w.user_id
        OR CAST(ROUND(t.amount_usd * 100) AS BIGINT) <> -CAST(ROUND(w.amount_usd * 100) AS BIGINT))
"""


def _holds(cursor: Cursor, cutoffs: dict[str, Any]) -> Iterator[Finding]:
    cursor.execute(scoped(_HOLD_SQL, cutoffs), cutoffs)
    for withdrawal_id, user_id, cents, hold_id, hold_user, hold_cents in cursor.fetchall():
        yield Finding(
            kind=DriftKind.HOLD_MISSING if hold_id is None else DriftKind.HOLD_MISMATCH,
            subject=f"withdrawal:{as_uuid(withdrawal_id)}",
            user_id=user_id,
            expected=f"-{usd(cents)} USD from user {user_id}",
            actual="no hold" if hold_id is None else f"{usd(hold_cents)} USD from user {hold_user}",
        )


_REFUNDED = "('rejected', 'cancelled', 'failed')"
# At most one refund per withdrawal (txn_one_refund_per_withdrawal), so one row per withdrawal.
_REFUND_SQL = f"""
SELECT w.id, w.user_id, w.status, CAST(ROUND(w.amount_usd * 100) AS BIGINT),
       t.id, t.user_id, CAST(ROUND(t.amount_usd * 100) AS BIGINT)
  FROM payments_withdrawalrequest w
  LEFT JOIN payments_transaction t
    ON t.withdrawal_request_id = w.id AND t.transaction_type = 'refund'
 WHERE @users(w.user_id)
   AND ((t.id IS NULL AND w.status IN {_REFUNDED}
         AND COALESCE(w.rejected_at, w.cancelled_at, w.failed_at, w.updated_at)
             < %(refunded_before)s)
        OR (t.id IS NOT NULL AND (w.status NOT IN {_REFUNDED} OR t.user_id <> w.user_id
            OR CAST(ROUND(t.amount_usd * 100) AS BIGINT)
               <> CAST(ROUND(w.amount_usd * 100) AS BIGINT))))
"""  # noqa: S608 - built once from constants


def _refunds(cursor: Cursor, cutoffs: dict[str, Any]) -> Iterator[Finding]:
    cursor.execute(scoped(_REFUND_SQL, cutoffs), cutoffs)
    for row in cursor.fetchall():
        withdrawal_id, user_id, status, cents, refund_id, refund_user, refund_cents = row
        subject = f"withdrawal:{as_uuid(withdrawal_id)}"
        refund = f"{usd(refund_cents or 0)} USD to user {refund_user}"
        if refund_id is None:
            yield Finding(
                kind=DriftKind.REFUND_MISSING,
                subject=subject,
                user_id=user_id,
                expected=f"refund of {usd(cents)} USD",
                actual=f"{status}, no refund",
            )
            continue
        if status == "completed":
            yield Finding(
                kind=DriftKind.REFUND_ON_COMPLETED,
                subject=subject,
                user_id=user_id,
                expected="paid out or refunded, not both",
                actual=f"completed and refunded {usd(refund_cents)} USD",
            )
        elif status not in ("rejected", "cancelled", "failed"):
            yield Finding(
                kind=DriftKind.REFUND_ON_OPEN,
                subject=subject,
                user_id=user_id,
                expected=f"no refund while {status}",
                actual=refund,
            )
        if refund_user != user_id or refund_cents != cents:
            yield Finding(
                kind=DriftKind.REFUND_MISMATCH,
                subject=subject,
                user_id=user_id,
                expected=f"{usd(cents)} USD to user {user_id}",
                actual=refund,
            )


LINK_CHECKS: tuple[Check, ...] = (
    _deposits_not_completed,
    _deposit_mismatches,
    _deposits_without_payment,
    _unsettled,
    _late_reports,
    _holds,
    _refunds,
)
