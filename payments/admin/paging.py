"""Changelists whose cost does not grow with the table: a bounded count and a date hierarchy
drawn from the first and last dates instead of from every row (``FlatChangelistMixin``).

- The count reads at most ``COUNT_LIMIT + 1`` rows. Past that, an unfiltered list says "about
  N" from PostgreSQL's own estimate of the table (``pg_class.reltuples`` scaled to the table's
  current size, as the planner does) and a filtered one "more than 10,000"; the pages go on
  as far as that number reaches. No second count of the whole table ("N total") is made.
- The date hierarchy asks for the first and last date only (``MIN``/``MAX``, each one index
  probe) and offers every year, month or day between them, so a period in the range with no
  rows is offered too (it shows an empty list) rather than found by reading every row.

Each changelist then runs the same queries, each reading a bounded number of rows, whether the
table holds ten thousand rows or ten million, provided its default ordering has an index.
"""

from __future__ import annotations

import datetime as dt
from functools import cached_property
from typing import Any

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import Max, Min, QuerySet
from django.http import HttpRequest
from django.utils import timezone

COUNT_LIMIT = 10_000
# A date hierarchy level never offers more than this many links (days of a month: 31).
MAX_PERIODS = 400

_ESTIMATE_SQL = """
SELECT CASE WHEN c.reltuples < 0 OR c.relpages = 0 THEN NULL
            ELSE c.reltuples / c.relpages
                 * (pg_relation_size(c.oid) / current_setting('block_size')::int) END
  FROM pg_class c WHERE c.oid = %s::regclass
"""


class BoundedPaginator(Paginator):
    """A paginator that counts at most ``COUNT_LIMIT + 1`` rows (see the module docstring).

    ``approximate`` says whether ``count`` is a lower bound (``more_than``) or an estimate.
    """

    approximate = False
    estimated = False

    @cached_property
    def count(self) -> int:
        rows = self.object_list
        if not isinstance(rows, QuerySet):
            return len(rows)
        estimate = _table_estimate(rows) if _unfiltered(rows) else None
        counted = rows.order_by()[: COUNT_LIMIT + 1].count()
        if counted <= COUNT_LIMIT:
            return counted
        self.approximate = True
        if estimate is not None and estimate > COUNT_LIMIT:
            self.estimated = True
            return estimate
        return COUNT_LIMIT + 1

    @property
    def more_than(self) -> int:
        return COUNT_LIMIT


def _unfiltered(queryset: QuerySet[Any]) -> bool:
    """Whether the queryset is every row of its table once (what the estimate counts)."""
    query = queryset.query
    return not query.where and not query.distinct and not query.is_sliced and not query.combinator


def _table_estimate(queryset: QuerySet[Any]) -> int | None:
    """PostgreSQL's estimate of the rows in the queryset's table; None elsewhere or unknown."""
    connection = connections[queryset.db]
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(_ESTIMATE_SQL, [connection.ops.quote_name(queryset.model._meta.db_table)])
        row = cursor.fetchone()
    return None if row is None or row[0] is None else int(row[0])


class BoundedPeriodsMixin:
    """``dates()``/``datetimes()`` as the date hierarchy uses them, from MIN and MAX only."""

    def datetimes(self, field_name: str, kind: str, order: str = "ASC", tzinfo: Any = None) -> Any:
        return self._periods(field_name, kind, aware=True, tzinfo=tzinfo)

    def dates(self, field_name: str, kind: str, order: str = "ASC") -> Any:
        return self._periods(field_name, kind, aware=False)

    def _periods(self, field_name: str, kind: str, *, aware: bool, tzinfo: Any = None) -> list[Any]:
        queryset: Any = self
        bounds = queryset.order_by().aggregate(first=Min(field_name), last=Max(field_name))
        first, last = bounds["first"], bounds["last"]
        if first is None or last is None:
            return []
        zone = tzinfo or timezone.get_current_timezone()
        if aware:
            first, last = timezone.localtime(first, zone), timezone.localtime(last, zone)
        day, end = _start_of(first.date() if aware else first, kind), last
        end_day = end.date() if aware else end
        periods: list[Any] = []
        while day <= end_day and len(periods) < MAX_PERIODS:
            periods.append(dt.datetime.combine(day, dt.time.min, zone) if aware else day)
            day = _next(day, kind)
        return periods


def _start_of(day: dt.date, kind: str) -> dt.date:
    if kind == "year":
        return day.replace(month=1, day=1)
    if kind == "month":
        return day.replace(day=1)
    return day


def _next(day: dt.date, kind: str) -> dt.date:
    if kind == "year":
        return day.replace(year=day.year + 1)
    if kind == "month":
        return (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return day + dt.timedelta(days=1)


_BOUNDED: dict[type, type] = {}


def with_bounded_periods(queryset: QuerySet[Any]) -> QuerySet[Any]:
    """The same queryset (and class, guards included) with the bounded ``dates()``."""
    base = type(queryset)
    if issubclass(base, BoundedPeriodsMixin):
        return queryset
    bounded = _BOUNDED.get(base)
    if bounded is None:
        bounded = _BOUNDED[base] = type(f"Bounded{base.__name__}", (BoundedPeriodsMixin, base), {})
    clone = queryset._chain()  # type: ignore[attr-defined]
    clone.__class__ = bounded
    return clone  # type: ignore[no-any-return]


class FlatChangeList(ChangeList):
    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> Any:
        return with_bounded_periods(super().get_queryset(request, exclude_parameters))


class FlatChangelistMixin(admin.ModelAdmin):
    """A changelist with the bounded count and date hierarchy (put it before ModelAdmin)."""

    paginator = BoundedPaginator
    show_full_result_count = False

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return FlatChangeList
