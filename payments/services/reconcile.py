"""Reconciliation: prove the ledger, its balances and its ties to payments and withdrawals hold.

What does not hold becomes a finding (``findings.finding_record``) that operators see in the
admin; nothing is corrected here. The checks live in ``reconcile_checks`` (the ledger itself)
and ``reconcile_links`` (payments and withdrawals): one SQL statement each, set-based, exact in
integer cents on PostgreSQL and on SQLite alike. Which users a run checks (all of them, or an
incremental pass: what changed since the previous run plus a rolling slice of every user) is
decided in ``reconcile_scope``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from payments.services.findings import finding_record
from payments.services.reconcile_checks import LEDGER_CHECKS, Finding
from payments.services.reconcile_links import LINK_CHECKS, REFUND_GRACE, SETTLEMENT_GRACE
from payments.services.reconcile_scope import previous_pass, reconcile_scope

logger = logging.getLogger(__name__)

__all__ = ["REFUND_GRACE", "SETTLEMENT_GRACE", "collect", "examined", "ledger_reconcile"]

CHECKS = (*LEDGER_CHECKS, *LINK_CHECKS)


def ledger_reconcile(*, full: bool = False) -> dict[str, Any]:
    """Check every invariant the ledger promises and record what does not hold.

    Returns ``{"drift": n, "by_kind": {kind: n}, "checked": {"users": .., "postings": ..,
    "payments": .., "withdrawals": ..}, "pass": {...}}``: what was checked (on an incremental
    pass, the users in scope and their rows) and the pass's mark for the next run. Each
    finding is recorded once per run, so a problem seen on two runs has one open finding seen
    twice. ``full`` checks every user whatever the previous run was.
    """
    now = timezone.now()
    scope = reconcile_scope(db=connection, now=now, previous=None if full else previous_pass())
    found = collect(db=connection, now=now, users=scope.users)
    for item in found:
        finding_record(
            kind=item.kind,
            subject=item.subject,
            expected=item.expected,
            actual=item.actual,
            detail=item.detail,
            user_id=item.user_id,
            payment_id=item.payment_id,
        )
    by_kind: dict[str, int] = {}
    for item in found:
        by_kind[str(item.kind)] = by_kind.get(str(item.kind), 0) + 1
    summary = {
        "drift": len(found),
        "by_kind": by_kind,
        "checked": examined(db=connection, users=scope.users),
        "pass": scope.as_dict(),
    }
    if found:
        logger.error("reconciliation found %s problem(s): %s", len(found), by_kind)
    else:
        logger.info("reconciliation: ledger consistent (%s)", summary["checked"])
    return summary


def collect(
    *, db: BaseDatabaseWrapper, now: datetime, users: Sequence[int] | None = None
) -> list[Finding]:
    """Run every check against ``db`` and return what they found, each (kind, subject) once.

    ``users`` limits the checks to these users' rows (PostgreSQL); None checks everyone.
    """
    cutoffs: dict[str, Any] = {
        "settled_before": db.ops.adapt_datetimefield_value(now - SETTLEMENT_GRACE),
        "refunded_before": db.ops.adapt_datetimefield_value(now - REFUND_GRACE),
        "users": None if users is None else list(users),
    }
    found: dict[tuple[str, str], Finding] = {}
    with db.cursor() as cursor:
        for check in CHECKS:
            for item in check(cursor, cutoffs):
                found.setdefault((str(item.kind), item.subject), item)
    return list(found.values())


_EXAMINED_SQL = """
SELECT (SELECT COUNT(*) FROM (SELECT user_id FROM payments_userbalance
                              UNION SELECT user_id FROM payments_transaction) u),
       (SELECT COUNT(*) FROM payments_transaction),
       (SELECT COUNT(*) FROM payments_payment),
       (SELECT COUNT(*) FROM payments_withdrawalrequest)
"""


_EXAMINED_IN_SCOPE_SQL = """
SELECT (SELECT COUNT(*) FROM payments_transaction WHERE user_id = ANY(%(users)s)),
       (SELECT COUNT(*) FROM payments_payment WHERE user_id = ANY(%(users)s)),
       (SELECT COUNT(*) FROM payments_withdrawalrequest WHERE user_id = ANY(%(users)s))
"""


def examined(*, db: BaseDatabaseWrapper, users: Sequence[int] | None = None) -> dict[str, int]:
    """How many users, postings, payments and withdrawals there were to check (of ``users``
    only, when given)."""
    with db.cursor() as cursor:
        if users is None:
            cursor.execute(_EXAMINED_SQL)
            users_count, postings, payments, withdrawals = cursor.fetchone()
        else:
            cursor.execute(_EXAMINED_IN_SCOPE_SQL, {"users": list(users)})
            postings, payments, withdrawals = cursor.fetchone()
            users_count = len(users)
    return {
        "users": users_count,
        "postings": postings,
        "payments": payments,
        "withdrawals": withdrawals,
    }
