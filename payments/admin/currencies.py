"""The currencies admin: what users may pay with, as NowPayments offers it, and the withdrawal
terms of each (an operator's edits go through ``services.currencies.currency_update``)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from payments.errors import PaymentsError
from payments.models import Currency
from payments.services import currencies

# From NowPayments at every sync: shown, never edited here (the next sync would undo it).
_CATALOGUE_FIELDS = (
    "code",
    "name",
    "token",
    "network",
    "decimal_places",
    "provider",
    "provider_enabled",
    "min_amount_usd",
    "address_regex",
    "extra_id_required",
    "extra_id_name",
    "explorer_tx_url",
    "synced_at",
    # A coin whose terms NowPayments keeps failing to give (backed off, its stored terms kept).
    "terms_failures",
    "terms_retry_at",
    "terms_last_error",
)
_TERMS_FROM_PROVIDER_NOTE = (
    "The network fee and minimum below come from NowPayments (its payout fee and payout "
    "minimum, in USD) at every currency sync, so they are read-only here. Untick "
    "\u201cWithdrawal fee from provider\u201d and save to set them by hand."
)
_TERMS_BY_HAND_NOTE = (
    "The network fee and minimum below are yours: an empty fee means the "
    "PAYMENTS_WITHDRAWAL_NETWORK_FEE_USD setting. Tick \u201cWithdrawal fee from provider\u201d "
    "to take NowPayments' payout fee and minimum at every sync instead."
)


class CurrencyForm(forms.ModelForm):
    """The change form: only the operator's fields, checked by the service before saving."""

    class Meta:
        model = Currency
        fields = currencies.OPERATOR_FIELDS

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        changes = {name: cleaned[name] for name in self.changed_data if name in cleaned}
        try:
            currencies.currency_update_check(currency=self.instance, changes=changes)
        except PaymentsError as exc:
            raise forms.ValidationError(exc.message) from None
        return cleaned


@admin.register(Currency)
class CurrencyAdmin(admin.ModelAdmin):
    form = CurrencyForm
    list_display = (
        "code",
        "display_name",
        "network",
        "is_active",
        "provider_enabled",
        "min_amount_usd",
        "withdrawal_fee_usd",
        "withdrawal_min_usd",
        "extra_id_required",
        "sort_order",
        "synced_at",
    )
    list_filter = ("is_active", "provider_enabled", "network", "withdrawal_fee_from_provider")
    list_editable = ("is_active", "sort_order")
    search_fields = ("code", "name", "token", "network")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # currencies come from NowPayments (manage.py sync_currencies)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # payments point at them; switch one off with "is active" instead

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        follows = obj is not None and obj.withdrawal_fee_from_provider
        return [
            ("NowPayments (updated at every sync)", {"fields": _CATALOGUE_FIELDS}),
            ("Offered to users", {"fields": ("is_active", "sort_order")}),
            (
                "Withdrawals",
                {
                    "fields": (
                        "withdrawal_fee_from_provider",
                        "withdrawal_fee_usd",
                        "withdrawal_min_usd",
                        "withdrawal_synced_at",
                    ),
                    "description": _TERMS_FROM_PROVIDER_NOTE if follows else _TERMS_BY_HAND_NOTE,
                },
            ),
            ("Record", {"fields": ("created_at", "updated_at"), "classes": ("collapse",)}),
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = [*_CATALOGUE_FIELDS, "withdrawal_synced_at", "created_at", "updated_at"]
        if obj is not None and obj.withdrawal_fee_from_provider:
            fields += currencies.PROVIDER_TERMS
        return fields

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        """Through the currencies service (the one writer of Currency), never ``obj.save()``."""
        changes = {
            name: form.cleaned_data[name]
            for name in form.changed_data
            if name in currencies.OPERATOR_FIELDS
        }
        if changes:
            updated = currencies.currency_update(currency_id=obj.pk, changes=changes)
            obj.updated_at = updated.updated_at
