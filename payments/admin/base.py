"""Admin base classes (rows kept for the audit trail, rows only the system writes) and the
operators' audit trail: one admin ``LogEntry`` per action that succeeded."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.models import CHANGE, LogEntry
from django.http import HttpRequest


def log_action(request: HttpRequest, obj: Any, message: str) -> None:
    """Record an operator's action on ``obj`` in its History page and in Recent actions.

    Call it only once the service call has succeeded, with the reason in ``message``.
    """
    user_id = request.user.pk
    if user_id is None:  # the admin only lets staff in: never an anonymous user
        raise RuntimeError("An admin action needs a signed-in user to log it.")
    LogEntry.objects.log_actions(
        user_id=user_id,
        queryset=[obj],
        action_flag=CHANGE,
        change_message=message,
        single_object=True,
    )


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
