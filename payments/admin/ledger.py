"""The ledger admin: balances and postings, read-only."""

from __future__ import annotations

from django.contrib import admin

from payments.admin.base import ReadOnlyAdmin
from payments.admin.exports import CsvExportMixin
from payments.admin.paging import FlatChangelistMixin
from payments.models import (
    Transaction,
    UserBalance,
)


@admin.register(UserBalance)
class UserBalanceAdmin(FlatChangelistMixin, ReadOnlyAdmin):
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
class TransactionAdmin(FlatChangelistMixin, CsvExportMixin, ReadOnlyAdmin):
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
