"""The webhooks admin: the host application's endpoints, the event outbox, and each delivery
with its attempt log and a Redeliver action."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from payments.admin.base import ReadOnlyAdmin, log_action
from payments.admin.paging import FlatChangelistMixin
from payments.errors import PaymentsError
from payments.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent
from payments.models.webhook import WebhookEventType
from payments.services import host_webhooks

_HELP_WHEN_NEW = (
    "Generated for you: copy it into the host application now, it is never shown again "
    "(or paste one of your own, at least 16 characters)."
)
_HELP_WHEN_CHANGED = "Leave empty to keep the current secret; type a new one to replace it."


class WebhookEndpointForm(forms.ModelForm):
    """The endpoint's fields; the secret is write-only (offered once when the endpoint is new)."""

    url = forms.URLField(label="URL", max_length=500, assume_scheme="https")
    events = forms.MultipleChoiceField(
        choices=WebhookEventType.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="None ticked: every event.",
    )
    new_secret = forms.CharField(label="Signing secret", required=False, max_length=200)

    class Meta:
        model = WebhookEndpoint
        fields = ("url", "description", "events", "is_active")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["new_secret"]
        if self.instance.pk is None:
            field.initial = host_webhooks.webhook_secret_generate()
            field.help_text = _HELP_WHEN_NEW
            field.widget.attrs.update(autocomplete="off", size=60)
        else:
            field.widget = forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"})
            field.help_text = _HELP_WHEN_CHANGED

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if "url" in cleaned:
            secret = cleaned.get("new_secret") or self.instance.secret
            try:
                host_webhooks.webhook_endpoint_check(
                    url=cleaned["url"], events=cleaned.get("events") or [], secret=secret
                )
            except PaymentsError as exc:
                raise forms.ValidationError(exc.message) from None
        return cleaned


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    form = WebhookEndpointForm
    list_display = (
        "url",
        "is_active",
        "event_list",
        "secret_hint",
        "pending",
        "gave_up",
        "updated_at",
    )
    list_filter = ("is_active",)
    search_fields = ("url", "description")
    readonly_fields = ("secret_hint", "created_at", "updated_at")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                pending_count=Count("deliveries", filter=Q(deliveries__status="pending")),
                failed_count=Count("deliveries", filter=Q(deliveries__status="failed")),
            )
        )

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # its deliveries point at it: switch it off with "is active" instead

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = ["url", "description", "events", "is_active"]
        if obj is None or self.has_change_permission(request, obj):
            fields.append("new_secret")
        if obj is not None:
            fields += ["secret_hint", "created_at", "updated_at"]
        return fields

    @admin.display(description="events")
    def event_list(self, obj: WebhookEndpoint) -> str:
        return ", ".join(obj.events) if obj.events else "all"

    @admin.display(description="secret")
    def secret_hint(self, obj: WebhookEndpoint) -> str:
        return host_webhooks.webhook_secret_hint(obj.secret)

    @admin.display(description="pending", ordering="pending_count")
    def pending(self, obj: Any) -> int:
        return int(obj.pending_count)

    @admin.display(description="given up", ordering="failed_count")
    def gave_up(self, obj: Any) -> int:
        return int(obj.failed_count)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        """Through the endpoints service (it checks the URL, the events and the secret)."""
        host_webhooks.webhook_endpoint_save(
            endpoint=obj, new_secret=form.cleaned_data.get("new_secret") or ""
        )


class WebhookDeliveryInline(admin.TabularInline):
    """An event's deliveries, one per endpoint."""

    model = WebhookDelivery
    extra = 0
    can_delete = False
    show_change_link = True
    fields = readonly_fields = (
        "endpoint",
        "status",
        "attempts",
        "last_status_code",
        "last_error",
        "next_attempt_at",
        "delivered_at",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super().get_queryset(request).select_related("endpoint")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(WebhookEvent)
class WebhookEventAdmin(FlatChangelistMixin, ReadOnlyAdmin):
    list_display = ("created_at", "event_type", "dedupe_key", "delivered", "deliveries_total")
    list_filter = ("event_type", "created_at")
    search_fields = ("dedupe_key",)
    date_hierarchy = "created_at"
    exclude = ("payload",)  # shown readably as "payload as sent"
    inlines = (WebhookDeliveryInline,)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                total=Count("deliveries"),
                done=Count("deliveries", filter=Q(deliveries__status="delivered")),
            )
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = super().get_readonly_fields(request, obj)
        return [("payload_as_sent" if name == "payload" else name) for name in fields]

    @admin.display(description="delivered", ordering="done")
    def delivered(self, obj: Any) -> int:
        return int(obj.done)

    @admin.display(description="deliveries", ordering="total")
    def deliveries_total(self, obj: Any) -> int:
        return int(obj.total)

    @admin.display(description="payload as sent")
    def payload_as_sent(self, obj: WebhookEvent) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.payload, indent=2, sort_keys=True))


class WebhookAttemptInline(admin.TabularInline):
    """The delivery log: every HTTP attempt, newest first."""

    model = WebhookAttempt
    extra = 0
    can_delete = False
    fields = readonly_fields = (
        "attempted_at",
        "status_code",
        "error",
        "duration_ms",
        "response_excerpt",
    )

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(FlatChangelistMixin, ReadOnlyAdmin):
    list_display = (
        "id",
        "event_type",
        "endpoint",
        "status",
        "attempts",
        "last_status_code",
        "last_attempt_at",
        "next_attempt_at",
        "delivered_at",
    )
    list_filter = ("status", "event__event_type", "endpoint")
    search_fields = ("event__dedupe_key", "endpoint__url")
    list_select_related = ("event", "endpoint")  # the event and endpoint columns: one join
    inlines = (WebhookAttemptInline,)
    actions = ("redeliver_selected",)

    @admin.display(description="event", ordering="event__event_type")
    def event_type(self, obj: WebhookDelivery) -> str:
        return obj.event.event_type

    @admin.action(description="Redeliver selected deliveries", permissions=["redeliver"])
    def redeliver_selected(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        count = 0
        for delivery in queryset.order_by("pk"):
            previous = delivery.status
            try:
                host_webhooks.webhook_delivery_redeliver(delivery_id=delivery.pk, user=request.user)
            except PaymentsError as exc:
                self.message_user(request, f"Delivery {delivery.pk}: {exc.message}", messages.ERROR)
                continue
            log_action(request, delivery, f"Redelivered (was {previous}).")
            count += 1
        if count:
            self.message_user(
                request,
                f"{count} deliver{'y' if count == 1 else 'ies'} pending again: the dispatch "
                "sweep sends them within seconds.",
            )

    def has_redeliver_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(host_webhooks.REDELIVER_PERMISSION)
