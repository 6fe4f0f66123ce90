"""The withdrawals admin: review, payout steps and forced overrides, each through a service."""

from __future__ import annotations

from functools import partial
from typing import Any

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse

from payments.admin.base import AuditAdmin
from payments.errors import PaymentsError
from payments.models import (
    WithdrawalRequest,
)
from payments.models.withdrawal import WithdrawalStatus
from payments.services import withdrawals


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
        "request_forced_failure",
        "request_forced_completion",
        "approve_forced_override",
        "refuse_forced_override",
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
        self._each(
            request,
            queryset,
            lambda w: withdrawals.withdrawal_start_processing(withdrawal_id=w.pk),
            "marked processing",
        )

    @admin.action(
        description="Mark selected as completed (NowPayments' hash, or the one typed if paid "
        "by hand)",
        permissions=["approve"],
    )
    def mark_completed(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        # With a payout, NowPayments must report it finished and its hash is used; without one
        # (manual payouts), the typed hash must have the network's format.
        self._each(
            request,
            queryset,
            lambda w: withdrawals.withdrawal_mark_completed(
                withdrawal_id=w.pk, admin_user=request.user, transaction_hash=w.transaction_hash
            ),
            "completed",
        )

    @admin.action(
        description="Mark selected as failed (refunds the hold; with a payout, only if "
        "NowPayments reports it failed)",
        permissions=["approve"],
    )
    def mark_failed(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        self._each(
            request,
            queryset,
            lambda w: withdrawals.withdrawal_mark_failed(
                withdrawal_id=w.pk, admin_user=request.user, reason=w.failure_reason
            ),
            "marked failed",
        )

    @admin.action(description="Request forced failure (a supervisor must approve)")
    def request_forced_failure(self, request: HttpRequest, queryset: QuerySet[Any]) -> Any:
        return self._request_override(request, queryset, action="fail")

    @admin.action(description="Request forced completion (a supervisor must approve)")
    def request_forced_completion(self, request: HttpRequest, queryset: QuerySet[Any]) -> Any:
        return self._request_override(request, queryset, action="complete")

    @admin.action(description="Approve forced override (supervisor; not your own request)")
    def approve_forced_override(self, request: HttpRequest, queryset: QuerySet[Any]) -> Any:
        return self._decide_overrides(request, queryset, approve=True)

    @admin.action(description="Refuse forced override (supervisor; not your own request)")
    def refuse_forced_override(self, request: HttpRequest, queryset: QuerySet[Any]) -> Any:
        return self._decide_overrides(request, queryset, approve=False)

    def _request_override(self, request: HttpRequest, queryset: QuerySet[Any], action: str) -> Any:
        selected = list(queryset)
        if action == "complete" and len(selected) != 1:
            self.message_user(
                request,
                "Select exactly one withdrawal to force completed: each needs its own hash.",
                level=messages.ERROR,
            )
            return None
        if "apply" not in request.POST:
            verb = "completed" if action == "complete" else "failed (the hold is refunded)"
            return self._override_page(
                request,
                selected,
                title=f"Request a forced {action}",
                intro=f"These withdrawals will be forced {verb} without NowPayments' word, "
                "once a different operator with the override permission approves. Say why.",
                needs_reason=True,
                needs_hash=action == "complete",
                button="Request forced override",
            )
        reason = request.POST.get("override_reason", "")
        transaction_hash = request.POST.get("override_hash", "")
        self._each(
            request,
            queryset,
            lambda w: withdrawals.withdrawal_override_request(
                withdrawal_id=w.pk,
                action=action,
                requested_by=request.user,
                reason=reason,
                transaction_hash=transaction_hash,
            ),
            f"have a forced {action} waiting for a supervisor's approval",
        )
        return None

    def _decide_overrides(
        self, request: HttpRequest, queryset: QuerySet[Any], approve: bool
    ) -> Any:
        if not request.user.has_perm(withdrawals.OVERRIDE_PERMISSION):
            self.message_user(
                request,
                f"{request.user} may not approve or refuse forced withdrawal overrides.",
                level=messages.ERROR,
            )
            return None
        pending = withdrawals.pending_overrides(
            withdrawal_ids=list(queryset.values_list("pk", flat=True))
        )
        if not pending:
            self.message_user(
                request,
                "No forced override is waiting for the selected withdrawals.",
                level=messages.WARNING,
            )
            return None
        verb = "approve" if approve else "refuse"
        if "apply" not in request.POST:
            return self._override_page(
                request,
                [override.withdrawal for override in pending],
                title=f"{verb.capitalize()} forced overrides",
                intro=f"You are about to {verb} these forced overrides:",
                overrides=pending,
                button=f"{verb.capitalize()} them",
            )
        decide = (
            withdrawals.withdrawal_override_approve
            if approve
            else withdrawals.withdrawal_override_refuse
        )
        done = 0
        for override in pending:
            try:
                decide(override_id=override.pk, approver=request.user)
            except PaymentsError as exc:
                self.message_user(
                    request,
                    f"{override.withdrawal.internal_withdrawal_id}: {exc.message}",
                    level=messages.ERROR,
                )
            else:
                done += 1
        if done:
            self.message_user(
                request, f"{done} forced override(s) {verb}d.", level=messages.SUCCESS
            )
        return None

    _OVERRIDE_PAGE = """{% extends "admin/base_site.html" %}
{% block content %}<form method="post">{% csrf_token %}
<p>{{ intro }}</p>
<ul>{% for w in withdrawals %}<li>{{ w.internal_withdrawal_id }}: {{ w.amount_display }},
{{ w.status }}, payout {{ w.provider_payout_id|default:"?" }}
(batch {{ w.provider_batch_id|default:"?" }})</li>{% endfor %}</ul>
{% if overrides %}<ul>{% for o in overrides %}<li>{{ o.withdrawal.internal_withdrawal_id }}:
{{ o.get_action_display }} requested by {{ o.requested_by }} at {{ o.requested_at }}
({{ o.reason }}){% if o.transaction_hash %}, hash {{ o.transaction_hash }}{% endif %}</li>
{% endfor %}</ul>{% endif %}
{% for w in withdrawals %}<input type="hidden" name="_selected_action" value="{{ w.pk }}">
{% endfor %}<input type="hidden" name="action" value="{{ action }}">
{% if needs_reason %}<p><label for="id_override_reason">Reason</label><br>
<textarea name="override_reason" id="id_override_reason" rows="4" cols="80" required>
</textarea></p>{% endif %}
{% if needs_hash %}<p><label for="id_override_hash">Transaction hash of the payout</label><br>
<input type="text" name="override_hash" id="id_override_hash" size="80" required></p>{% endif %}
<input type="submit" name="apply" value="{{ button }}">
<a href="">Cancel</a></form>{% endblock %}"""

    def _override_page(
        self, request: HttpRequest, selected: list[Any], *, title: str, **context: Any
    ) -> Any:
        from django.template import engines

        return TemplateResponse(
            request,
            engines["django"].from_string(self._OVERRIDE_PAGE),
            {
                **self.admin_site.each_context(request),
                "title": title,
                "opts": self.model._meta,
                "withdrawals": selected,
                "action": request.POST.get("action", ""),
                **context,
            },
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
