"""The API keys admin: whose keys exist, when each was last used, and revoking them. A key's
hash is never shown, and keys are created by their users (the API keys page, or
``manage.py api_key_create``), never here."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from payments.admin.base import AuditAdmin, log_action
from payments.errors import PaymentsError
from payments.models import ApiKey
from payments.services.api_keys import api_key_revoke


class ActiveFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("active", "Active"), ("revoked", "Revoked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> QuerySet[ApiKey]:
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ApiKey)
class ApiKeyAdmin(AuditAdmin):
    list_display = ("name", "user", "key_start", "is_active", "created_at", "last_used_at")
    list_filter = (ActiveFilter, "created_at")
    list_select_related = ("user",)
    search_fields = ("name", "prefix", "user__username", "user__email")
    fields = ("name", "user", "key_start", "created_at", "last_used_at", "revoked_at")
    readonly_fields = fields
    actions = ("revoke_selected",)

    @admin.display(description="key")
    def key_start(self, obj: ApiKey) -> str:
        return f"pk_{obj.prefix}_…"

    @admin.display(boolean=True, description="active")
    def is_active(self, obj: ApiKey) -> bool:
        return obj.is_active

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Nothing is edited on the form; revoking (the action) needs the change permission.
        return obj is None and super().has_change_permission(request, obj)

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        revoked = 0
        for api_key in queryset.filter(revoked_at__isnull=True):
            try:
                api_key_revoke(api_key_id=api_key.pk, user=request.user)
            except PaymentsError as exc:
                self.message_user(request, f"{api_key}: {exc.message}", messages.ERROR)
                continue
            log_action(request, api_key, "Revoked the API key.")
            revoked += 1
        self.message_user(request, f"Revoked {revoked} key(s).", messages.SUCCESS)
