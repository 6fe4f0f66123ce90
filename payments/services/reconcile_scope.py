"""Which users a reconciliation run checks: every user (a full pass), or, on PostgreSQL once a
previous run has left its mark, an incremental pass over

- the users with a posting, a payment status change or a withdrawal change since shortly
  before the previous run (``LOOKBACK`` covers the grace periods, so a payment completed just
  before that run is checked once its grace is over, and a transaction that committed late);
- the users with an open finding (an open problem is seen again on every run);
- one slice of all users by id, the next one each run: ``PAYMENTS_RECONCILE_SLICES`` (24 by
  default: a day at the hourly schedule) runs check every user, which catches what changes
  nothing we watch (a balance row edited by hand, an old posting's link).

Each run's cost is then its activity plus 1/slices of the ledger, not the whole ledger. When
more than half of the users are in scope anyway, the run is a full pass, which costs less. The
previous run is the reconciliation job's last successful result (``PeriodicRun``), so a failed
run is repeated from the same point; without one (first run, a direct call) the pass is full.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils.dateparse import parse_datetime

from payments.models import PeriodicRun
from payments.services.reconcile_links import REFUND_GRACE, SETTLEMENT_GRACE

# The periodic job whose last result holds the previous pass (workers.tasks names it so).
RECONCILE_JOB = "workers.ledger_reconcile"
LOOKBACK = max(SETTLEMENT_GRACE, REFUND_GRACE) + dt.timedelta(minutes=10)
DEFAULT_SLICES = 24

# {users} and {id}: the user model's table and primary key column (quoted).
_CHANGED_USERS_SQL = """
SELECT user_id FROM payments_transaction WHERE created_at >= %(since)s
UNION SELECT user_id FROM payments_payment WHERE status_changed_at >= %(since)s
UNION SELECT user_id FROM payments_withdrawalrequest WHERE updated_at >= %(since)s
UNION SELECT user_id FROM payments_ledgerdrift
       WHERE resolved_at IS NULL AND user_id IS NOT NULL
UNION SELECT {id} FROM {users} WHERE {id} >= %(low)s AND {id} < %(high)s
"""


@dataclass(frozen=True)
class Scope:
    """What one run checks: ``users`` None is every user."""

    users: list[int] | None
    slice: int
    slices: int
    checked_at: dt.datetime

    @property
    def full(self) -> bool:
        return self.users is None

    def as_dict(self) -> dict[str, Any]:
        """The run's mark, kept in its result: where the next run takes over."""
        return {
            "mode": "full" if self.full else "incremental",
            "slice": self.slice,
            "slices": self.slices,
            "users_in_scope": None if self.users is None else len(self.users),
            "checked_at": self.checked_at.isoformat(),
        }


def slices_setting() -> int:
    return max(1, int(getattr(settings, "PAYMENTS_RECONCILE_SLICES", DEFAULT_SLICES)))


def previous_pass() -> dict[str, Any] | None:
    """The mark of the reconciliation job's last successful run, if it left one."""
    result = PeriodicRun.objects.filter(name=RECONCILE_JOB).values_list("last_result", flat=True)
    last = next(iter(result), None)
    mark = last.get("pass") if isinstance(last, dict) else None
    return mark if isinstance(mark, dict) else None


def reconcile_scope(
    *, db: BaseDatabaseWrapper, now: dt.datetime, previous: dict[str, Any] | None
) -> Scope:
    """The users this run checks, from the previous run's mark (see the module docstring)."""
    slices = slices_setting()
    since = _since(previous)
    if db.vendor != "postgresql" or slices == 1 or since is None or previous is None:
        # A full pass ends a round: the next run starts the slices from the first.
        return Scope(users=None, slice=slices - 1, slices=slices, checked_at=now)
    slice_ = (int(previous.get("slice", -1)) + 1) % slices
    meta = get_user_model()._meta
    names = {"users": db.ops.quote_name(meta.db_table), "id": db.ops.quote_name(meta.pk.column)}
    with db.cursor() as cursor:
        top_sql = "SELECT COALESCE(MAX({id}), 0), COUNT(*) FROM {users}".format(**names)  # noqa: S608
        cursor.execute(top_sql)
        top, everyone = cursor.fetchone()
        width = top // slices + 1
        low = slice_ * width
        high = top + 1 if slice_ == slices - 1 else low + width
        params = {"since": since, "low": low, "high": high}
        cursor.execute(_CHANGED_USERS_SQL.format(**names), params)
        users = sorted(row[0] for row in cursor.fetchall())
    if len(users) * 2 > everyone:
        # Most users in scope: a full pass checks them all for less, by
        # whole-table joins instead of per-user probes (measured: 27 s against 48 s at
        # 1,000,000 postings with every user in scope). It ends the round like any full pass.
        return Scope(users=None, slice=slices - 1, slices=slices, checked_at=now)
    return Scope(users=users, slice=slice_, slices=slices, checked_at=now)


def _since(previous: dict[str, Any] | None) -> dt.datetime | None:
    if previous is None or previous.get("slices") != slices_setting():
        return None  # no mark, or the slices changed: start a new round with a full pass
    checked_at = parse_datetime(str(previous.get("checked_at", "")))
    return None if checked_at is None else checked_at - LOOKBACK
