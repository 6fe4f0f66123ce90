"""The currencies admin: what users may pay with, as NowPayments offers it."""

from __future__ import annotations

from django.contrib import admin

from payments.models import (
    Currency,
)


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
