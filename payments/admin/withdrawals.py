"""The withdrawals admin: the review page with its Approve / Reject confirmations, the payout steps
and append-only notes, each through a service (the forced overrides are in
``withdrawal_overrides``, the review page's figures in ``withdrawal_review``)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, QueryDict

from payments.admin.base import log_action
from payments.admin.exports import CsvExportMixin
from payments.admin.paging import FlatChangelistMixin
from payments.admin.withdrawal_decisions import DecisionPagesAdmin
from payments.admin.withdrawal_overrides import OverrideActionsAdmin
from payments.admin.withdrawal_review import withdrawal_review_build
from payments.errors import PaymentsError
from payments.models import (
    WithdrawalRequest,
)
from payments.models.withdrawal import WithdrawalStatus
from payments.services import withdrawals

NOTE_LABEL = "Add a note"
# The review page's record form: what an operator may write; the rest is folded away.
RECORD_FIELDS = ("transaction_hash", "failure_reason", "rejection_reason", "admin_notes")


class ReviewFilter(admin.SimpleListFilter):
    """ "Needs review" (pending, oldest first) is the list's default view; "All" shows every
    request, newest first. Without the parameter (an action's POST, another filter) nothing is
    filtered."""

    title = "review"
    parameter_name = "review"
    NEEDS = "needs"
    ALL = "all"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(self.NEEDS, "Needs review (oldest first)"), (self.ALL, "All (newest first)")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == self.NEEDS:
            return queryset.filter(status=WithdrawalStatus.PENDING)
        return queryset

    def choices(self, changelist: Any) -> Any:
        current = self.value() or self.ALL
        for lookup, title in self.lookup_choices:
            yield {
                "selected": current == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }


class PayoutFailingFilter(admin.SimpleListFilter):
    """Open withdrawals whose NowPayments calls keep failing (backed off on their own row; the
    payout sweeps go on with the others): the last error and the next try are on each."""

    title = "payout"
    parameter_name = "payout"
    FAILING = "failing"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(self.FAILING, "Calls to NowPayments failing")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == self.FAILING:
            return queryset.filter(
                payout_attempts__gt=0,
                status__in=(WithdrawalStatus.APPROVED, WithdrawalStatus.PROCESSING),
            )
        return queryset


class WithdrawalRequestForm(forms.ModelForm):
    """The change form: the notes are shown read-only; a new note is appended, never edits."""

    add_note = forms.CharField(
        label=NOTE_LABEL,
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        help_text="Appended to the notes with the time and your name; notes are never edited "
        "or removed.",
    )

    class Meta:
        model = WithdrawalRequest
        fields: tuple[str, ...] = ()


@admin.register(WithdrawalRequest)
class WithdrawalRequestAdmin(
    FlatChangelistMixin, CsvExportMixin, DecisionPagesAdmin, OverrideActionsAdmin
):
    form = WithdrawalRequestForm
    # Short, with the status early: it stays in view at 1280 px beside the filters.
    list_display = (
        "internal_withdrawal_id",
        "status",
        "user",
        "amount_usd",
        "final_amount_usd",
        "currency",
        "created_at",
    )
    list_filter = (ReviewFilter, PayoutFailingFilter, "status", "currency", "created_at")
    search_fields = (
        "internal_withdrawal_id",
        "wallet_address",
        "transaction_hash",
        "user__username",
        "user__email",
    )
    list_select_related = ("user", "currency", "admin_user")
    date_hierarchy = "created_at"
    fields = (
        "internal_withdrawal_id",
        "user",
        "status",
        "amount_usd",
        "network_fee_usd",
        "service_fee_usd",
        "total_fee_usd",
        "final_amount_usd",
        "currency",
        "wallet_address",
        "wallet_extra_id",
        "transaction_hash",
        "admin_user",
        "admin_notes",
        "add_note",
        "failure_reason",
        "rejection_reason",
        "payout_attempts",
        "payout_retry_at",
        "payout_last_error",
        "created_at",
        "approved_at",
        "processing_at",
        "completed_at",
        "rejected_at",
        "cancelled_at",
        "failed_at",
    )
    actions = (
        "approve_selected",
        "reject_selected",
        "mark_processing",
        "mark_completed",
        "mark_failed",
        "request_forced_failure",
        "request_forced_completion",
        "approve_forced_override",
        "refuse_forced_override",
    )

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = list(self.fields)
        if not self.has_change_permission(request, obj):
            fields.remove("add_note")  # a viewer adds no note
        return fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        editable = {"add_note"}
        if obj is not None and obj.status in (
            WithdrawalStatus.APPROVED,
            WithdrawalStatus.PROCESSING,
        ):
            # The operator records the payout's hash here, then runs "Mark completed".
            editable |= {"transaction_hash", "failure_reason"}
        return tuple(f for f in self.fields if f not in editable)

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = self.get_fields(request, obj)
        record = [f for f in (*RECORD_FIELDS, "add_note") if f in fields]
        rest = [f for f in fields if f not in record]
        return [
            ("Record", {"fields": record}),
            ("All fields", {"fields": rest, "classes": ["collapse"]}),
        ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super().get_queryset(request).select_related("user", "currency", "admin_user")

    def get_ordering(self, request: HttpRequest) -> tuple[str, ...]:
        if request.GET.get(ReviewFilter.parameter_name) == ReviewFilter.NEEDS:
            return ("created_at",)
        return ("-created_at",)

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        # Opened with no query at all, the list is the review queue (as if ?review=needs; the
        # page is served as is rather than redirected, so the plain URL answers 200).
        if request.method == "GET" and not request.GET:
            request.GET = QueryDict(f"{ReviewFilter.parameter_name}={ReviewFilter.NEEDS}")
        return super().changelist_view(request, extra_context)

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> Any:
        if obj is not None:
            context["title"] = "Review withdrawal request"
            context["review"] = withdrawal_review_build(withdrawal=obj)
            context["review_actions"] = self._review_actions(request, obj)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        # Only the payout's hash and failure reason are edited here, and a note is appended
        # through the lifecycle; status changes go through the actions, and the model's save
        # re-checks that nothing fixed at creation has changed.
        if set(form.changed_data) - {"add_note"}:
            try:
                obj.save()
            except PaymentsError as exc:
                form.save_failed = True  # nothing to log: see construct_change_message
                self.message_user(request, exc.message, level=messages.ERROR)
                return
        note = form.cleaned_data.get("add_note", "").strip()
        if not note:
            return
        try:
            withdrawals.withdrawal_add_note(withdrawal_id=obj.pk, author=request.user, text=note)
        except PaymentsError as exc:
            self.message_user(request, exc.message, level=messages.ERROR)
        else:
            log_action(request, obj, f"Added a note: {note}")

    def construct_change_message(
        self, request: HttpRequest, form: Any, formsets: Any, add: bool = False
    ) -> list[dict[str, Any]]:
        """Django's record of a change-form save, without the note (logged as its own entry)
        and empty when the save failed."""
        if getattr(form, "save_failed", False):
            return []
        message = super().construct_change_message(request, form, formsets, add)
        for part in message:
            if "changed" in part:
                part["changed"]["fields"] = [
                    f for f in part["changed"]["fields"] if f != NOTE_LABEL
                ]
        return [p for p in message if p.get("changed", {"fields": True})["fields"]]

    def log_change(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        if not message:  # nothing changed but (perhaps) a note, logged by save_model
            return None
        return super().log_change(request, obj, message)

    @admin.action(description="Approve selected withdrawals", permissions=["approve"])
    def approve_selected(self, request: HttpRequest, queryset: QuerySet[Any]) -> Any:
        if "apply" not in request.POST:
            return self._override_page(
                request,
                list(queryset),
                title="Approve withdrawals",
                intro="These withdrawals will be approved and paid out to the addresses shown. "
                "A note, if you write one, is added to each one's notes.",
                summary=True,
                needs_reason=True,
                reason_name="reason",
                reason_label="Note (optional)",
                reason_optional=True,
                button="Approve them",
            )
        note = " ".join(request.POST.get("reason", "").split())
        self._each(request, queryset, lambda w: self._approve(request, w, note), "approved")
        return None

    @admin.action(
        description="Reject selected withdrawals (refunds the hold)", permissions=["approve"]
    )
    def reject_selected(self, request: HttpRequest, queryset: QuerySet[Any]) -> Any:
        if "apply" not in request.POST:
            return self._override_page(
                request,
                list(queryset),
                title="Reject withdrawals",
                intro="These withdrawals will be rejected and their holds refunded. Say why: "
                "the reason is shown to each user and added to each one's notes.",
                summary=True,
                needs_reason=True,
                reason_name="reason",
                button="Reject them",
            )
        reason = " ".join(request.POST.get("reason", "").split())
        if not reason:
            self.message_user(request, "Say why the withdrawals are rejected.", messages.ERROR)
            return None
        error = self._check_reason(reason, required=True)
        if error:
            self.message_user(request, error, messages.ERROR)
            return None
        self._each(request, queryset, lambda w: self._reject(request, w, reason), "rejected")
        return None

    @admin.action(
        description="Mark selected as processing (payout started elsewhere)",
        permissions=["approve"],
    )
    def mark_processing(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        if withdrawals.payouts_enabled():
            # The payout worker claims approved withdrawals itself; a hand-made "processing"
            # would strand one that no payout pays.
            self.message_user(
                request,
                "Payouts are sent through NowPayments: the payout worker starts them.",
                level=messages.ERROR,
            )
            return

        def start(withdrawal: Any) -> str:
            withdrawals.withdrawal_start_processing(withdrawal_id=withdrawal.pk)
            return "Marked processing (the payout was started outside NowPayments)."

        self._each(request, queryset, start, "marked processing")

    @admin.action(
        description="Mark selected as completed (NowPayments' hash, or the one typed if paid "
        "by hand)",
        permissions=["approve"],
    )
    def mark_completed(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        # With a payout, NowPayments must report it finished and its hash is used; without one
        # (manual payouts), the typed hash must have the network's format.

        def complete(withdrawal: Any) -> str:
            done = withdrawals.withdrawal_mark_completed(
                withdrawal_id=withdrawal.pk,
                admin_user=request.user,
                transaction_hash=withdrawal.transaction_hash,
            )
            return f"Marked completed, transaction hash {done.transaction_hash}."

        self._each(request, queryset, complete, "completed")

    @admin.action(
        description="Mark selected as failed (refunds the hold; with a payout, only if "
        "NowPayments reports it failed)",
        permissions=["approve"],
    )
    def mark_failed(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:

        def fail(withdrawal: Any) -> str:
            failed = withdrawals.withdrawal_mark_failed(
                withdrawal_id=withdrawal.pk,
                admin_user=request.user,
                reason=withdrawal.failure_reason,
            )
            return f"Marked failed (the hold is refunded): {failed.failure_reason}"

        self._each(request, queryset, fail, "marked failed")
