"""The operators' admin for the five payments models, with money fields read-only."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from payments.errors import PaymentsError
from payments.models import Currency, Payment, Transaction, UserBalance, WithdrawalRequest
from payments.models.withdrawal import WithdrawalStatus
from payments.services import withdrawals


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
class PaymentAdmin(admin.ModelAdmin):
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
        "created_at",
        "updated_at",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(UserBalance)
class UserBalanceAdmin(admin.ModelAdmin):
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
    readonly_fields = (
        "user",
        "balance_usd",
        "total_deposited",
        "total_withdrawn",
        "transaction_count",
        "last_transaction_at",
        "created_at",
        "updated_at",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Transaction)
class TransactionAdmin(admin.ModelAdmin):
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

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in Transaction._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(WithdrawalRequest)
class WithdrawalRequestAdmin(admin.ModelAdmin):
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
    readonly_fields = tuple(f for f in fields if f != "admin_notes")
    actions = ("approve_selected", "reject_selected")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        # Only the notes are editable here; status changes go through the actions, and the
        # model's save re-checks that nothing fixed at creation has changed.
        try:
            obj.save()
        except PaymentsError as exc:
            self.message_user(request, exc.message, level=messages.ERROR)

    @admin.action(description="Approve selected withdrawals", permissions=["approve"])
    def approve_selected(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        self._review(request, queryset, withdrawals.withdrawal_approve, "approved")

    @admin.action(description="Reject selected withdrawals (refunds the hold)", permissions=["approve"])
    def reject_selected(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        self._review(request, queryset, withdrawals.withdrawal_reject, "rejected")

    def has_approve_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(withdrawals.APPROVE_PERMISSION)

    def _review(self, request: HttpRequest, queryset: QuerySet[Any], action: Any, verb: str) -> None:
        done = 0
        for withdrawal in queryset.filter(
            status__in=[WithdrawalStatus.PENDING, WithdrawalStatus.APPROVED]
        ):
            try:
                action(withdrawal_id=withdrawal.pk, admin_user=request.user)
            except PaymentsError as exc:
                self.message_user(
                    request,
                    f"{withdrawal.internal_withdrawal_id}: {exc.message}",
                    level=messages.ERROR,
                )
            else:
                done += 1
        skipped = queryset.count() - done
        if done:
            self.message_user(request, f"{done} withdrawal(s) {verb}.", level=messages.SUCCESS)
        if skipped and not done:
            self.message_user(request, f"No withdrawal was {verb}.", level=messages.WARNING)
