"""The operators' dashboard on the admin index (read-only figures) and the notifications admin.

Every figure is one bounded query (an aggregate, or one GROUP BY), whatever the history holds;
the queue depths come from the broker itself. The index shows it through our template
``admin/payments/index.html`` (it extends ``admin/index.html``, so a host project's own index
still applies), set as ``admin.site.index_template`` unless the host set one: a host with its
own index or admin site adds ``{% load payments_dashboard %}{% payments_dashboard %}`` to it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode, urlsplit

from django.apps import apps
from django.conf import settings
from django.contrib import admin
from django.db.models import Count, DecimalField, Min, Q, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.urls import reverse
from django.utils import timezone

from payments.admin.base import ReadOnlyAdmin
from payments.admin.paging import FlatChangelistMixin
from payments.models import LedgerDrift, Notification, Payment, PeriodicRun, WithdrawalRequest
from payments.models.ops import DriftKind
from payments.models.payment import PaymentStatus
from payments.models.withdrawal import WithdrawalStatus
from workers.queues import DEFAULT, TASK_QUEUES

INDEX_TEMPLATE = "admin/payments/index.html"
CHART_DAYS = 30
_ZERO = Decimal("0.00")
# kombu's Redis transport keeps a queue's prioritised messages in lists named <queue><sep><n>.
_KOMBU_SEP = "\x06\x16"
_KOMBU_PRIORITY_STEPS = (0, 3, 6, 9)


def changelist(model: str, **filters: Any) -> str:
    """The admin changelist of a payments model, filtered by ``filters`` (querystring)."""
    url = reverse(f"admin:payments_{model}_changelist")
    query = {k: v.isoformat() if isinstance(v, date) else v for k, v in filters.items()}
    return f"{url}?{urlencode(query)}" if query else url


@dataclass(frozen=True)
class Withdrawals:
    pending: int
    oldest_pending: datetime | None
    stuck: int
    oldest_stuck: datetime | None
    stuck_minutes: int
    pending_url: str
    stuck_url: str


def withdrawal_figures(*, now: datetime) -> Withdrawals:
    """Withdrawals waiting for review, and payouts processing longer than the threshold."""
    minutes = int(getattr(settings, "PAYMENTS_PAYOUT_STUCK_MINUTES", 60))
    cutoff = now - timedelta(minutes=minutes)
    pending = Q(status=WithdrawalStatus.PENDING)
    stuck = Q(status=WithdrawalStatus.PROCESSING, processing_at__lt=cutoff)
    row = WithdrawalRequest.objects.filter(pending | stuck).aggregate(
        pending=Count("pk", filter=pending),
        oldest_pending=Min("created_at", filter=pending),
        stuck=Count("pk", filter=stuck),
        oldest_stuck=Min("processing_at", filter=stuck),
    )
    return Withdrawals(
        pending=row["pending"],
        oldest_pending=row["oldest_pending"],
        stuck=row["stuck"],
        oldest_stuck=row["oldest_stuck"],
        stuck_minutes=minutes,
        pending_url=changelist("withdrawalrequest", status__exact=WithdrawalStatus.PENDING),
        stuck_url=changelist(
            "withdrawalrequest", status__exact=WithdrawalStatus.PROCESSING, processing_at__lt=cutoff
        ),
    )


@dataclass(frozen=True)
class Reviews:
    count: int
    oldest: datetime | None
    url: str


def review_figures() -> Reviews:
    row = Payment.objects.filter(status=PaymentStatus.REVIEW).aggregate(
        count=Count("pk"), oldest=Min("status_changed_at")
    )
    url = changelist("payment", status__exact=PaymentStatus.REVIEW)
    return Reviews(count=row["count"], oldest=row["oldest"], url=url)


@dataclass(frozen=True)
class FindingCount:
    kind: str
    label: str
    count: int
    url: str


def open_findings() -> list[FindingCount]:
    """Open findings (not resolved) by kind, the most numerous first."""
    rows = (
        LedgerDrift.objects.filter(resolved_at__isnull=True)
        .values("kind")
        .annotate(count=Count("pk"))
        .order_by("-count", "kind")
    )
    labels = dict(DriftKind.choices)
    return [
        FindingCount(
            kind=row["kind"],
            label=str(labels.get(row["kind"], row["kind"])),
            count=row["count"],
            url=changelist("ledgerdrift", kind__exact=row["kind"], resolved_at__isempty=1),
        )
        for row in rows
    ]


@dataclass
class Job:
    task: str
    schedule: str = ""
    enabled: bool | None = None
    every_seconds: int | None = None
    beat_last_run_at: datetime | None = None
    run: PeriodicRun | None = None
    url: str = ""

    @property
    def state(self) -> str:
        """failed, running, late (no run in three intervals), never ran, disabled or ok."""
        run = self.run
        if run is not None and run.last_error:
            return "failed"
        if self.enabled is False:
            return "disabled"
        last = max((t for t in self._times() if t is not None), default=None)
        if last is None:
            return "never ran"
        now = timezone.now()
        if run is not None and run.running_until is not None and run.running_until > now:
            return "running"
        if self.every_seconds and now - last > timedelta(seconds=3 * self.every_seconds):
            return "late"
        return "ok"

    def _times(self) -> Iterable[datetime | None]:
        yield self.beat_last_run_at
        if self.run is not None:
            yield self.run.last_started_at
            yield self.run.last_finished_at

    @property
    def error_line(self) -> str:
        """The last line of the last error's traceback: the exception and its message."""
        lines = (self.run.last_error if self.run else "").strip().splitlines()
        return lines[-1][:300] if lines else ""


def jobs() -> list[Job]:
    """Each periodic job: its lease record (PeriodicRun) and its beat schedule (two queries)."""
    found: dict[str, Job] = {}
    for run in PeriodicRun.objects.order_by("name"):
        found[run.name] = Job(
            task=run.name, run=run, url=reverse("admin:payments_periodicrun_change", args=[run.pk])
        )
    if apps.is_installed("django_celery_beat"):
        from django_celery_beat.models import PeriodicTask

        beat = PeriodicTask.objects.exclude(task__startswith="celery.").values(
            "name", "task", "enabled", "last_run_at", "interval__every", "interval__period"
        )
        for row in beat:
            job = found.setdefault(row["task"], Job(task=row["task"]))
            job.schedule, job.enabled = row["name"], row["enabled"]
            job.beat_last_run_at = row["last_run_at"]
            if row["interval__every"] is not None:
                job.every_seconds = _seconds(row["interval__every"], row["interval__period"])
    return sorted(found.values(), key=lambda j: j.task)


def _seconds(every: int, period: str) -> int:
    unit = {"days": 86400, "hours": 3600, "minutes": 60, "seconds": 1}.get(period, 0)
    return every * unit


@dataclass(frozen=True)
class QueueDepths:
    depths: list[tuple[str, int]] = field(default_factory=list)
    problem: str = ""  # why the broker cannot report them, or ""


def queue_names() -> list[str]:
    return sorted({*TASK_QUEUES.values(), DEFAULT})


def queue_depths() -> QueueDepths:
    """``LLEN`` of each of our queues on a Redis broker, with a short timeout; otherwise why not."""
    url = str(getattr(settings, "CELERY_BROKER_URL", "") or "").split(";")[0].strip()
    scheme = urlsplit(url).scheme
    if scheme not in ("redis", "rediss"):
        return QueueDepths(problem=f"{scheme or 'no broker'}:// is not Redis")
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    options: dict[str, Any] = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {}) or {}
    prefix = str(options.get("global_keyprefix", ""))
    sep = str(options.get("sep", _KOMBU_SEP))
    steps = [int(s) for s in options.get("priority_steps", _KOMBU_PRIORITY_STEPS)]
    timeout = float(getattr(settings, "PAYMENTS_DASHBOARD_BROKER_TIMEOUT", 0.5))
    names = queue_names()
    client = redis.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
    )
    try:
        pipe = client.pipeline(transaction=False)
        for name in names:
            for step in steps:
                pipe.llen(f"{prefix}{name}{sep}{step}" if step else f"{prefix}{name}")
        lengths = [int(n) for n in pipe.execute()]
    except (redis.RedisError, OSError) as exc:
        return QueueDepths(problem=str(exc)[:300] or type(exc).__name__)
    finally:
        client.close()
    per = len(steps)
    return QueueDepths(
        depths=[(n, sum(lengths[i * per : (i + 1) * per])) for i, n in enumerate(names)]
    )


@dataclass(frozen=True)
class Day:
    day: date
    deposits: int = 0
    deposits_usd: Decimal = _ZERO
    withdrawals: int = 0
    withdrawals_usd: Decimal = _ZERO
    deposits_url: str = ""
    withdrawals_url: str = ""


def daily_activity(*, today: date, days: int = CHART_DAYS) -> list[Day]:
    """Deposits credited (payments completed) and withdrawals requested per UTC day, oldest
    first, ``days`` days up to ``today``: two GROUP BY queries."""
    first = today - timedelta(days=days - 1)
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    money: DecimalField[Decimal, Decimal] = DecimalField(max_digits=14, decimal_places=2)
    deposits = {
        row["day"]: (row["count"], row["usd"])
        for row in Payment.objects.filter(status=PaymentStatus.COMPLETED, completed_at__gte=start)
        .annotate(day=TruncDate("completed_at", tzinfo=UTC))
        .values("day")
        .annotate(
            count=Count("pk"),
            usd=Sum(Coalesce("credited_usd", "amount_usd"), output_field=money),
        )
        .order_by("day")
    }
    withdrawals = {
        row["day"]: (row["count"], row["usd"])
        for row in WithdrawalRequest.objects.filter(created_at__gte=start)
        .annotate(day=TruncDate("created_at", tzinfo=UTC))
        .values("day")
        .annotate(count=Count("pk"), usd=Sum("amount_usd", output_field=money))
        .order_by("day")
    }
    result = []
    for offset in range(days):
        day = first + timedelta(days=offset)
        begin = datetime(day.year, day.month, day.day, tzinfo=UTC)
        end = begin + timedelta(days=1)
        d_count, d_usd = deposits.get(day, (0, _ZERO))
        w_count, w_usd = withdrawals.get(day, (0, _ZERO))
        result.append(
            Day(
                day=day,
                deposits=d_count,
                deposits_usd=d_usd or _ZERO,
                withdrawals=w_count,
                withdrawals_usd=w_usd or _ZERO,
                deposits_url=changelist(
                    "payment",
                    status__exact=PaymentStatus.COMPLETED,
                    completed_at__gte=begin,
                    completed_at__lt=end,
                ),
                withdrawals_url=changelist(
                    "withdrawalrequest", created_at__gte=begin, created_at__lt=end
                ),
            )
        )
    return result


@admin.register(Notification)
class NotificationAdmin(FlatChangelistMixin, ReadOnlyAdmin):
    list_display = ("created_at", "kind", "subject", "sent_at", "attempts")
    list_filter = ("kind", ("sent_at", admin.EmptyFieldListFilter))
    search_fields = ("key", "subject")
    date_hierarchy = "created_at"


if admin.site.index_template is None:
    admin.site.index_template = INDEX_TEMPLATE
