"""Reconciliation checks of the ledger itself: balances, chains and totals against the postings.

Each check is one SQL statement over the users in scope (``@users(column)``, see ``scoped``:
every user on a full pass, the users of an incremental pass otherwise). Every amount is
compared as ``CAST(ROUND(x * 100) AS BIGINT)``: exact on PostgreSQL's numeric and on SQLite,
whose SUM() over decimals adds floats (243.64000000000001 is not 243.64). ``reconcile_links``
checks payments and withdrawals.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from payments.models.ops import DriftKind


@dataclass(frozen=True)
class Finding:
    """One thing a check found wrong, as ``findings.finding_record`` takes it."""

    kind: str
    subject: str
    expected: str
    actual: str
    user_id: int | None = None
    payment_id: uuid.UUID | None = None
    detail: str = ""


# A DB-API cursor of either database (Django's wrapper, which takes %s parameters).
Cursor = Any
Check = Callable[[Cursor, dict[str, Any]], Iterator[Finding]]


def usd(cents: Any) -> str:
    """Integer cents (an int, or PostgreSQL's Decimal SUM) as USD: 24364 -> "243.64"."""
    return str(Decimal(int(cents)).scaleb(-2))


_SCOPE = re.compile(r"@users\(([\w.]+)\)")
_JOIN_PAYMENT = re.compile(r"@(left_)?join_payment\((\w+)\.payment_id\)")


def scoped(sql: str, cutoffs: dict[str, Any]) -> str:
    """``sql`` with each ``@users(column)`` made a condition on the users in scope, and each
    ``@join_payment(t.payment_id)`` (or ``@left_join_payment``) a join of that payment as ``p``,
    and each ``@probe`` (ending an EXISTS subquery) a per-row probe on an incremental pass.

    ``cutoffs["users"]`` is None on a full pass (every user; the condition is always true) or
    the list of user ids of an incremental one (PostgreSQL only: ``= ANY`` of an array). On a
    full pass the payment is a plain join, which the planner hashes over every payment, as it
    should; on an incremental one it is one primary-key probe per posting in scope (a LATERAL
    subquery the planner may not flatten), so the pass reads what its users need, not every
    payment. ``OFFSET 0`` does that to an EXISTS too: PostgreSQL then probes per row rather
    than hashing the whole subquery's table into an anti-join.
    """
    if cutoffs.get("users") is None:
        return _JOIN_PAYMENT.sub(_plain_join, _SCOPE.sub("1 = 1", sql)).replace(" @probe", "")
    scoped_sql = _SCOPE.sub(r"\1 = ANY(%(users)s)", sql).replace("@probe", "OFFSET 0")
    return _JOIN_PAYMENT.sub(_probe_join, scoped_sql)


def _plain_join(match: re.Match[str]) -> str:
    left = "LEFT " if match.group(1) else ""
    return f"{left}JOIN payments_payment p ON p.id = {match.group(2)}.payment_id"


def _probe_join(match: re.Match[str]) -> str:
    alias = match.group(2)  # a table alias of our own SQL (\w+), never a value
    probe = (
        "LATERAL (SELECT * FROM payments_payment p "  # noqa: S608
        f"WHERE p.id = {alias}.payment_id OFFSET 0) p"
    )
    return f"LEFT JOIN {probe} ON true" if match.group(1) else f"CROSS JOIN {probe}"


def as_uuid(value: Any) -> uuid.UUID:
    """A UUID column's value as a UUID: PostgreSQL returns one, SQLite its 32 hex digits."""
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


_BALANCE_SQL = """
SELECT b.user_id, CAST(ROUND(b.balance_usd * 100) AS BIGINT), b.transaction_count,
       COALESCE(s.cents, 0), COALESCE(s.postings, 0)
  FROM payments_userbalance b
  LEFT JOIN (SELECT user_id, SUM(CAST(ROUND(amount_usd * 100) AS BIGINT)) AS cents,
                    COUNT(*) AS postings
               FROM payments_transaction WHERE @users(user_id) GROUP BY user_id) s
    ON s.user_id = b.user_id
 WHERE @users(b.user_id)
   AND (CAST(ROUND(b.balance_usd * 100) AS BIGINT) <> COALESCE(s.cents, 0)
        OR b.transaction_count <> COALESCE(s.postings, 0))
"""


def _balances(cursor: Cursor, cutoffs: dict[str, Any]) -> Iterator[Finding]:
    cursor.execute(scoped(_BALANCE_SQL, cutoffs), cutoffs)
    for user_id, cached, count, total, postings in cursor.fetchall():
        yield Finding(
            kind=DriftKind.BALANCE_MISMATCH,
            subject=f"user:{user_id}",
            user_id=user_id,
            expected=f"{usd(total)} USD / {postings} postings",
            actual=f"{usd(cached)} USD / {count} postings",
        )


_CHAIN_SQL = """
SELECT user_id, sequence, balance_cents, running, previous_sequence FROM (
    SELECT user_id, sequence, CAST(ROUND(balance_after * 100) AS BIGINT) AS balance_cents,
           SUM(CAST(ROUND(amount_usd * 100) AS BIGINT))
               OVER (PARTITION BY user_id ORDER BY sequence) AS running,
           LAG(sequence) OVER (PARTITION BY user_id ORDER BY sequence) AS previous_sequence
      FROM payments_transaction WHERE @users(user_id)
) chain
WHERE balance_cents <> running OR balance_cents < 0
   OR sequence <> COALESCE(previous_sequence, 0) + 1
"""


def _chain(cursor: Cursor, cutoffs: dict[str, Any]) -> Iterator[Finding]:
    cursor.execute(scoped(_CHAIN_SQL, cutoffs), cutoffs)
    for user_id, sequence, balance_after, running, previous in cursor.fetchall():
        yield Finding(
            kind=DriftKind.CHAIN_BROKEN,
            subject=f"user:{user_id}:seq:{sequence}",
            user_id=user_id,
            expected=f"seq {(previous or 0) + 1}, balance {usd(running)}",
            actual=f"seq {sequence}, balance {usd(balance_after)}",
        )


_MISSING_BALANCE_SQL = """
SELECT t.user_id, COUNT(*), SUM(CAST(ROUND(t.amount_usd * 100) AS BIGINT))
  FROM payments_transaction t
  LEFT JOIN payments_userbalance b ON b.user_id = t.user_id
 WHERE b.user_id IS NULL AND @users(t.user_id)
 GROUP BY t.user_id
"""


def _missing_balances(cursor: Cursor, cutoffs: dict[str, Any]) -> Iterator[Finding]:
    cursor.execute(scoped(_MISSING_BALANCE_SQL, cutoffs), cutoffs)
    for user_id, postings, total in cursor.fetchall():
        yield Finding(
            kind=DriftKind.BALANCE_ROW_MISSING,
            subject=f"user:{user_id}",
            user_id=user_id,
            expected=f"a balance of {usd(total)} USD / {postings} postings",
            actual="no balance row",
        )


# total_withdrawn as payments.ledger._move_balance keeps it: a WITHDRAWAL adds what it debits,
# a REFUND of a withdrawal takes its amount off, never below zero. That floored walk ends at
# S - MIN(0, lowest running S), where S is the running sum of those steps in sequence order.
_TOTALS_SQL = """
SELECT b.user_id,
       CAST(ROUND(b.total_deposited * 100) AS BIGINT),
       CAST(ROUND(b.total_withdrawn * 100) AS BIGINT),
       COALESCE(s.deposited, 0), COALESCE(s.withdrawn, 0)
  FROM payments_userbalance b
  LEFT JOIN (
      SELECT user_id,
             SUM(CASE WHEN transaction_type = 'deposit' THEN cents ELSE 0 END) AS deposited,
             SUM(out_cents) - MIN(CASE WHEN running < 0 THEN running ELSE 0 END) AS withdrawn
        FROM (
            SELECT user_id, transaction_type, cents, out_cents,
                   SUM(out_cents) OVER (PARTITION BY user_id ORDER BY sequence) AS running
              FROM (
                  SELECT user_id, sequence, transaction_type,
                         CAST(ROUND(amount_usd * 100) AS BIGINT) AS cents,
                         CASE WHEN transaction_type = 'withdrawal'
                                OR (transaction_type = 'refund'
                                    AND withdrawal_request_id IS NOT NULL)
                              THEN -CAST(ROUND(amount_usd * 100) AS BIGINT) ELSE 0 END
                             AS out_cents
                    FROM payments_transaction WHERE @users(user_id)
              ) steps
        ) walk
       GROUP BY user_id
  ) s ON s.user_id = b.user_id
 WHERE @users(b.user_id)
   AND (CAST(ROUND(b.total_deposited * 100) AS BIGINT) <> COALESCE(s.deposited, 0)
        OR CAST(ROUND(b.total_withdrawn * 100) AS BIGINT) <> COALESCE(s.withdrawn, 0))
"""


def _totals(cursor: Cursor, cutoffs: dict[str, Any]) -> Iterator[Finding]:
    cursor.execute(scoped(_TOTALS_SQL, cutoffs), cutoffs)
    for user_id, deposited, withdrawn, expect_deposited, expect_withdrawn in cursor.fetchall():
        yield Finding(
            kind=DriftKind.TOTALS_MISMATCH,
            subject=f"user:{user_id}",
            user_id=user_id,
            expected=f"deposited {usd(expect_deposited)} / withdrawn {usd(expect_withdrawn)}",
            actual=f"deposited {usd(deposited)} / withdrawn {usd(withdrawn)}",
        )


LEDGER_CHECKS: tuple[Check, ...] = (_balances, _chain, _missing_balances, _totals)
