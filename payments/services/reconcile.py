"""Reconciliation: prove each balance equals its ledger and each completed payment is credited.

Findings become LedgerDrift rows that operators see in the admin; nothing is corrected here.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.db import connection
from django.db.models import F
from django.utils import timezone

from payments.models import LedgerDrift, ProviderEvent
from payments.models.event import EventOutcome
from payments.models.ops import DriftKind
from payments.services.deposits.settle import unsettled_payment_ids

logger = logging.getLogger(__name__)

# A completed payment is given this long to be settled before it counts as drift.
SETTLEMENT_GRACE = timedelta(minutes=10)

_BALANCE_SQL = """
SELECT b.user_id, b.balance_usd, b.transaction_count,
       COALESCE(SUM(t.amount_usd), 0), COUNT(t.id)
  FROM payments_userbalance b
  LEFT JOIN payments_transaction t ON t.user_id = b.user_id
 GROUP BY b.user_id, b.balance_usd, b.transaction_count
HAVING b.balance_usd <> COALESCE(SUM(t.amount_usd), 0) OR b.transaction_count <> COUNT(t.id)
"""

_CHAIN_SQL = """
SELECT user_id, sequence, balance_after, running, previous_sequence FROM (
    SELECT user_id, sequence, balance_after,
           SUM(amount_usd) OVER (PARTITION BY user_id ORDER BY sequence) AS running,
           LAG(sequence) OVER (PARTITION BY user_id ORDER BY sequence) AS previous_sequence
      FROM payments_transaction
) chain
WHERE balance_after <> running OR balance_after < 0
   OR sequence <> COALESCE(previous_sequence, 0) + 1
"""

_DEPOSIT_SQL = """
SELECT t.payment_id, p.status, t.user_id
  FROM payments_transaction t
  JOIN payments_payment p ON p.id = t.payment_id
 WHERE t.transaction_type = 'deposit' AND p.status <> 'completed'
"""


def ledger_reconcile() -> dict[str, Any]:
    """Check every invariant the ledger promises and record what does not hold."""
    found: list[dict[str, Any]] = []
    with connection.cursor() as cursor:
        cursor.execute(_BALANCE_SQL)
        for user_id, cached, count, total, postings in cursor.fetchall():
            found.append(
                {
                    "kind": DriftKind.BALANCE_MISMATCH,
                    "subject": f"user:{user_id}",
                    "user_id": user_id,
                    "expected": f"{total} USD / {postings} postings",
                    "actual": f"{cached} USD / {count} postings",
                }
            )
        cursor.execute(_CHAIN_SQL)
        for user_id, sequence, balance_after, running, previous in cursor.fetchall():
            found.append(
                {
                    "kind": DriftKind.CHAIN_BROKEN,
                    "subject": f"user:{user_id}:seq:{sequence}",
                    "user_id": user_id,
                    "expected": f"seq {(previous or 0) + 1}, balance {running}",
                    "actual": f"seq {sequence}, balance {balance_after}",
                }
            )
        cursor.execute(_DEPOSIT_SQL)
        for payment_id, status, user_id in cursor.fetchall():
            found.append(
                {
                    "kind": DriftKind.DEPOSIT_WITHOUT_COMPLETION,
                    "subject": f"payment:{payment_id}",
                    "user_id": user_id,
                    "payment_id": payment_id,
                    "expected": "completed",
                    "actual": status,
                }
            )
    cutoff = timezone.now() - SETTLEMENT_GRACE
    from payments.models import Payment

    late = Payment.objects.filter(pk__in=unsettled_payment_ids(limit=1000), completed_at__lt=cutoff)
    for payment_id, user_id, amount in late.values_list("pk", "user_id", "amount_usd"):
        found.append(
            {
                "kind": DriftKind.UNSETTLED_PAYMENT,
                "subject": f"payment:{payment_id}",
                "user_id": user_id,
                "payment_id": payment_id,
                "expected": f"deposit of {amount} USD",
                "actual": "no deposit",
            }
        )
    late_reports = ProviderEvent.objects.filter(
        outcome=EventOutcome.STALE,
        payment__status__in=["expired", "failed", "cancelled"],
        provider_status__in=["confirming", "confirmed", "sending", "finished", "partially_paid"],
    ).values_list("payment_id", "payment__user_id", "provider_status")
    for payment_id, user_id, provider_status in late_reports:
        found.append(
            {
                "kind": DriftKind.LATE_PROVIDER_REPORT,
                "subject": f"payment:{payment_id}",
                "user_id": user_id,
                "payment_id": payment_id,
                "expected": "no money after the payment closed",
                "actual": f"NowPayments reports {provider_status}",
            }
        )
    for item in found:
        _record(item)
    summary = {"drift": len(found), "by_kind": _count(found)}
    if found:
        logger.error("reconciliation found %s problem(s): %s", len(found), summary["by_kind"])
    else:
        logger.info("reconciliation: ledger consistent")
    return summary


def _record(item: dict[str, Any]) -> None:
    updated = LedgerDrift.objects.filter(
        kind=item["kind"], subject=item["subject"], resolved_at__isnull=True
    ).update(times_seen=F("times_seen") + 1, last_seen_at=timezone.now(), actual=item["actual"])
    if not updated:
        LedgerDrift.objects.create(
            kind=item["kind"],
            subject=item["subject"],
            user_id=item.get("user_id"),
            payment_id=item.get("payment_id"),
            expected=item["expected"][:100],
            actual=item["actual"][:100],
        )


def _count(found: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in found:
        counts[str(item["kind"])] = counts.get(str(item["kind"]), 0) + 1
    return counts
