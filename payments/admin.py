"""The operators' admin for the five payments models, with money fields read-only."""

from __future__ import annotations

from functools import partial
from typing import Any

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest

from payments.errors import PaymentsError
from payments.models import (
    Currency,
    LedgerDrift,
    Payment,
    PeriodicRun,
    ProviderEvent,
    Transaction,
    UserBalance,
    WithdrawalRequest,
)
from payments.models.event import EventOutcome
from payments.models.payment import ACTIVE_STATUSES, PaymentStatus
from payments.models.withdrawal import WithdrawalStatus
from payments.services import findings, withdrawals
from payments.services.events import events_reprocess, reprocess_summary


class AuditAdmin(admin.ModelAdmin):
    """Rows kept for the audit trail: never added or deleted by hand in the admin."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyAdmin(AuditAdmin):
    """Rows only the system writes: viewable, never changed here either."""

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in self.model._meta.fields]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Currency)
class CurrencyAdmin(admin.ModelAdmin):
    list_display = (
        "code",
        "display_name",
        "network",
        "is_active",
        "provider_enabled",
        "min_amount_usd",
        "sort_order",
        "synced_at",
    )
    list_filter = ("is_active", "provider_enabled", "network")
    list_editable = ("is_active", "sort_order")
    search_fields = ("code", "name", "token", "network")
    readonly_fields = ("provider_enabled", "synced_at", "created_at", "updated_at")


@admin.register(Payment)
class PaymentAdmin(AuditAdmin):
    list_display = (
        "internal_payment_id",
        "user",
        "amount_usd",
        "currency",
        "status",
        "provider_payment_id",
        "created_at",
        "completed_at",
    )
    list_filter = ("status", "currency", "created_at")
    search_fields = (
        "internal_payment_id",
        "provider_payment_id",
        "pay_address",
        "transaction_hash",
        "user__username",
        "user__email",
    )
    list_select_related = ("user", "currency")
    date_hierarchy = "created_at"
    readonly_fields = (
        "id",
        "internal_payment_id",
        "user",
        "amount_usd",
        "currency",
        "pay_amount",
        "actual_amount",
        "actual_amount_usd",
        "provider",
        "provider_payment_id",
        "status",
        "pay_address",
        "pay_extra_id",
        "transaction_hash",
        "provider_data",
        "provider_error",
        "expires_at",
        "completed_at",
        "status_changed_at",
        "provider_checked_at",
        "provider_requested_at",
        "created_at",
        "updated_at",
    )
    actions = ("check_at_nowpayments", "settle_now")

    @admin.action(description="Check status at NowPayments now")
    def check_at_nowpayments(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        from workers.tasks import payment_refresh_task

        ids = list(
            queryset.filter(
                status__in=ACTIVE_STATUSES, provider_payment_id__isnull=False
            ).values_list("pk", flat=True)
        )
        for payment_id in ids:
            transaction.on_commit(partial(payment_refresh_task.delay, payment_id=str(payment_id)))
        self.message_user(request, f"Asked NowPayments about {len(ids)} active payment(s).")

    @admin.action(description="Settle completed payments now")
    def settle_now(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        from workers.tasks import payment_settle_task

        ids = list(queryset.filter(status=PaymentStatus.COMPLETED).values_list("pk", flat=True))
        for payment_id in ids:
            transaction.on_commit(partial(payment_settle_task.delay, payment_id=str(payment_id)))
        self.message_user(
            request, f"Settlement queued for {len(ids)} completed payment(s); it credits once."
        )


@admin.register(UserBalance)
class UserBalanceAdmin(ReadOnlyAdmin):
    list_display = (
        "user",
        "balance_usd",
        "total_deposited",
        "total_withdrawn",
        "transaction_count",
        "last_transaction_at",
    )
    search_fields = ("user__username", "user__email")
    list_select_related = ("user",)


@admin.register(Transaction)
class TransactionAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "user",
        "transaction_type",
        "amount_usd",
        "balance_after",
        "sequence",
        "payment",
        "withdrawal_request",
        "created_at",
    )
    list_filter = ("transaction_type", "created_at")
    search_fields = ("idempotency_key", "description", "user__username", "user__email")
    list_select_related = ("user", "payment", "withdrawal_request")
    date_hierarchy = "created_at"


@admin.register(WithdrawalRequest)
class WithdrawalRequestAdmin(AuditAdmin):
    list_display = (
        "internal_withdrawal_id",
        "user",
        "amount_usd",
        "final_amount_usd",
        "currency",
        "status",
        "admin_user",
        "created_at",
    )
    list_filter = ("status", "currency", "created_at")
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
        "failure_reason",
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
    )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        editable = {"admin_notes"}
        if obj is not None and obj.status in (
            WithdrawalStatus.APPROVED,
            WithdrawalStatus.PROCESSING,
        ):
            # The operator records the payout's hash here, then runs "Mark completed".
            editable |= {"transaction_hash", "failure_reason"}
        return tuple(f for f in self.fields if f not in editable)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        # Only the notes are editable here; status changes go through the actions, and the
        # model's save re-checks that nothing fixed at creation has changed.
        try:
            obj.save()
        except PaymentsError as exc:
            self.message_user(request, exc.message, level=messages.ERROR)

    @admin.action(description="Approve selected withdrawals", permissions=["approve"])
    def approve_selected(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        from payments.services.withdrawals import payouts_enabled
        from workers.tasks import withdrawal_payout_send_task

        def approve(withdrawal: Any) -> None:
            withdrawals.withdrawal_approve(withdrawal_id=withdrawal.pk, admin_user=request.user)
            if payouts_enabled():
                send = partial(withdrawal_payout_send_task.delay, withdrawal_id=str(withdrawal.pk))
                transaction.on_commit(send)

        self._each(request, queryset, approve, "approved")

    @admin.action(
        description="Reject selected withdrawals (refunds the hold)", permissions=["approve"]
    )
    def reject_selected(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        self._each(
            request,
            queryset,
            lambda w: withdrawals.withdrawal_reject(withdrawal_id=w.pk, admin_user=request.user),
            "rejected",
        )

    @admin.action(description="Mark selected as processing (payout started)")
    def mark_processing(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        self._each(
            request,
            queryset,
            lambda w: withdrawals.withdrawal_start_processing(withdrawal_id=w.pk),
            "marked processing",
        )

    @admin.action(
        description="Mark selected as completed (needs each one's transaction hash)",
        permissions=["approve"],
    )
    def mark_completed(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        self._each(
            request,
            queryset,
            lambda w: withdrawals.withdrawal_complete(
                withdrawal_id=w.pk, transaction_hash=w.transaction_hash, admin_user=request.user
            ),
            "completed",
        )

    @admin.action(description="Mark selected as failed (refunds the hold)", permissions=["approve"])
    def mark_failed(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        self._each(
            request,
            queryset,
            lambda w: withdrawals.withdrawal_fail(
                withdrawal_id=w.pk, reason=w.failure_reason or f"marked failed by {request.user}"
            ),
            "marked failed",
        )

    def has_approve_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(withdrawals.APPROVE_PERMISSION)

    def _each(self, request: HttpRequest, queryset: QuerySet[Any], action: Any, verb: str) -> None:
        done = 0
        for withdrawal in queryset:
            try:
                action(withdrawal)
            except PaymentsError as exc:
                self.message_user(
                    request,
                    f"{withdrawal.internal_withdrawal_id}: {exc.message}",
                    level=messages.ERROR,
                )
            else:
                done += 1
        if done:
            self.message_user(request, f"{done} withdrawal(s) {verb}.", level=messages.SUCCESS)


@admin.register(ProviderEvent)
class ProviderEventAdmin(ReadOnlyAdmin):
    list_display = (
        "received_at",
        "kind",
        "provider_object_id",
        "provider_status",
        "outcome",
        "deliveries",
        "payment",
    )
    list_filter = ("kind", "outcome", "provider_status")
    search_fields = ("provider_object_id", "dedupe_key")
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
    )

    @admin.display(boolean=True, description="last run failed")
    def has_error(self, obj: PeriodicRun) -> bool:
        return bool(obj.last_error)


@admin.register(LedgerDrift)
class LedgerDriftAdmin(AuditAdmin):
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
            findings.finding_resolve(
                finding_id=finding.pk,
                user=request.user,
                notes=finding.resolution_notes or f"marked resolved by {request.user}",
            )
            count += 1
        self.message_user(request, f"{count} drift record(s) marked resolved.")
