"""The operations admin: provider events, periodic job runs and reconciliation findings."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from payments.admin.base import AuditAdmin, ReadOnlyAdmin, log_action
from payments.admin.paging import FlatChangelistMixin
from payments.errors import PaymentsError
from payments.models import (
    LedgerDrift,
    PeriodicRun,
    ProviderEvent,
)
from payments.models.event import EventOutcome
from payments.services import findings
from payments.services.events import KIND_PAYMENT, KIND_PAYOUT, events_reprocess, reprocess_summary
from payments.services.providers.nowpayments.statuses import KNOWN_PAYMENT_STATUSES

# NowPayments' payout statuses (spec: Create payout), which it sends upper-case.
_PAYOUT_STATUSES: tuple[str, ...] = ("creating", "waiting", "processing", "sending")
_PAYOUT_STATUSES += ("finished", "failed", "rejected", "cancelled")


class FixedValuesFilter(admin.SimpleListFilter):
    """A filter offering a fixed vocabulary, instead of Django's SELECT DISTINCT over every
    row (``AllValuesFieldListFilter``)."""

    values: tuple[str, ...] = ()
    ignore_case = False

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(value, value) for value in self.values]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if not value:
            return queryset
        # Both spellings as an IN list (not iexact's UPPER(), which the planner cannot
        # estimate from the column's statistics).
        values = {value, value.upper()} if self.ignore_case else {value}
        return queryset.filter(**{f"{self.parameter_name}__in": sorted(values)})


class EventKindFilter(FixedValuesFilter):
    title = "kind"
    parameter_name = "kind"
    values = (KIND_PAYMENT, KIND_PAYOUT)


class ProviderStatusFilter(FixedValuesFilter):
    title = "provider status"
    parameter_name = "provider_status"
    values = tuple(sorted(KNOWN_PAYMENT_STATUSES | set(_PAYOUT_STATUSES)))
    ignore_case = True  # payout statuses arrive upper-case


@admin.register(ProviderEvent)
class ProviderEventAdmin(FlatChangelistMixin, ReadOnlyAdmin):
    list_display = (
        "received_at",
        "kind",
        "provider_object_id",
        "provider_status",
        "outcome",
        "deliveries",
        "payment",
    )
    list_filter = (EventKindFilter, "outcome", ProviderStatusFilter)
    search_fields = ("provider_object_id", "dedupe_key")
    list_select_related = ("payment",)  # the "payment" column: one join, not a query a row
    date_hierarchy = "received_at"
    actions = ("reprocess_selected",)

    @admin.action(description="Reprocess selected events", permissions=["reprocess"])
    def reprocess_selected(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        # Forced: the operator chose these; the deposits service still credits exactly once.
        ids = list(queryset.values_list("pk", flat=True))
        try:
            counts = events_reprocess(event_ids=ids)
        except PaymentsError as exc:
            self.message_user(request, exc.message, level=messages.ERROR)
            return
        for event in ProviderEvent.objects.filter(pk__in=ids).order_by("pk"):
            log_action(request, event, f"Reprocessed: outcome {event.outcome}.")
        failed = ProviderEvent.objects.filter(pk__in=ids, outcome=EventOutcome.ERROR)
        level = messages.WARNING if failed.exists() else messages.SUCCESS
        self.message_user(request, reprocess_summary(counts), level=level)
        for event in failed.order_by("pk"):
            self.message_user(
                request,
                f"Event {event.pk} ({event.kind} {event.provider_object_id}): {event.detail}",
                level=messages.ERROR,
            )

    def has_reprocess_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("payments.change_providerevent")


@admin.register(PeriodicRun)
class PeriodicRunAdmin(ReadOnlyAdmin):
    list_display = (
        "name",
        "last_started_at",
        "last_finished_at",
        "run_count",
        "skipped_count",
        "running_until",
        "has_error",
        "figures",
    )
    exclude = ("last_result",)  # shown readably as "figures in full"

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = super().get_readonly_fields(request, obj)
        return [("figures_in_full" if name == "last_result" else name) for name in fields]

    @admin.display(boolean=True, description="last run failed")
    def has_error(self, obj: PeriodicRun) -> bool:
        return bool(obj.last_error)

    @admin.display(description="last result")
    def figures(self, obj: PeriodicRun) -> str:
        """The last result on one line: "payments_checked 12 · payments_differing 1 · ..."."""
        return " · ".join(f"{k} {self._inline(v)}" for k, v in self._items(obj.last_result))

    @admin.display(description="last result")
    def figures_in_full(self, obj: PeriodicRun) -> str:
        """One line per figure, nested ones by their path ("by_kind.chain_broken: 1")."""
        return "\n".join(f"{key}: {value}" for key, value in self._flat(obj.last_result)) or "-"

    @staticmethod
    def _items(value: Any) -> list[tuple[str, Any]]:
        return [(str(k), v) for k, v in value.items()] if isinstance(value, dict) else []

    @classmethod
    def _inline(cls, value: Any) -> str:
        if not isinstance(value, dict):
            return str(value)
        inner = ", ".join(f"{k} {cls._inline(v)}" for k, v in cls._items(value))
        return f"({inner})" if inner else "none"

    @classmethod
    def _flat(cls, value: Any, prefix: str = "") -> list[tuple[str, str]]:
        rows: list[tuple[str, str]] = []
        for key, item in cls._items(value):
            if isinstance(item, dict) and item:
                rows.extend(cls._flat(item, f"{prefix}{key}."))
            else:
                rows.append((f"{prefix}{key}", cls._inline(item)))
        return rows


@admin.register(LedgerDrift)
class LedgerDriftAdmin(FlatChangelistMixin, AuditAdmin):
    list_display = (
        "kind",
        "subject",
        "expected",
        "actual",
        "times_seen",
        "first_seen_at",
        "last_seen_at",
        "resolved_at",
    )
    list_filter = ("kind", ("resolved_at", admin.EmptyFieldListFilter))
    search_fields = ("subject", "detail")
    actions = ("mark_resolved",)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in LedgerDrift._meta.fields if f.name != "resolution_notes"]

    @admin.action(description="Mark resolved (after correcting it with an ADJUSTMENT posting)")
    def mark_resolved(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        count = 0
        for finding in queryset.filter(resolved_at__isnull=True):
            try:
                resolved = findings.finding_resolve(
                    finding_id=finding.pk,
                    user=request.user,
                    notes=finding.resolution_notes or f"marked resolved by {request.user}",
                )
            except PaymentsError as exc:
                self.message_user(request, f"{finding}: {exc.message}", level=messages.ERROR)
            else:
                log_action(request, finding, f"Marked resolved: {resolved.resolution_notes}")
                count += 1
        self.message_user(request, f"{count} drift record(s) marked resolved.")
