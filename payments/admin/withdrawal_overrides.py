"""The withdrawals admin's forced overrides (a request, then a second operator's decision), and
what every withdrawal action shares: the confirmation page and the per-row run that logs each
success in the withdrawal's History."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse

from payments.admin.base import AuditAdmin, log_action
from payments.errors import PaymentsError
from payments.services import withdrawals


class OverrideActionsAdmin(AuditAdmin):
    """The forced-override actions; ``WithdrawalRequestAdmin`` lists them in its actions."""

    @admin.action(
        description="Request forced failure (a supervisor must approve)", permissions=["change"]
    )
    def request_forced_failure(self, request: HttpRequest, queryset: QuerySet[Any]) -> Any:
        return self._request_override(request, queryset, action="fail")

    @admin.action(
        description="Request forced completion (a supervisor must approve)", permissions=["change"]
    )
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

        def ask(withdrawal: Any) -> str:
            override = withdrawals.withdrawal_override_request(
                withdrawal_id=withdrawal.pk,
                action=action,
                requested_by=request.user,
                reason=reason,
                transaction_hash=transaction_hash,
            )
            hash_part = (
                f" with hash {override.transaction_hash}" if override.transaction_hash else ""
            )
            return f"Requested a forced {action}{hash_part}: {override.reason}"

        self._each(
            request, queryset, ask, f"have a forced {action} waiting for a supervisor's approval"
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
                log_action(
                    request,
                    override.withdrawal,
                    f"{verb.capitalize()}d the forced {override.action} requested by "
                    f"{override.requested_by}: {override.reason}",
                )
        if done:
            self.message_user(
                request, f"{done} forced override(s) {verb}d.", level=messages.SUCCESS
            )
        return None

    _OVERRIDE_PAGE = """{% extends "admin/base_site.html" %}
{% block content %}<form method="post">{% csrf_token %}
<p>{{ intro }}</p>
<ul>{% for w in withdrawals %}<li>{{ w.internal_withdrawal_id }}: {{ w.amount_display }},
{% if summary %}{{ w.final_amount_usd }} USD after fees in {{ w.currency.code }} to
<code>{{ w.wallet_address }}</code>, requested by {{ w.user }}, {{ w.status }}{% else %}
{{ w.status }}, payout {{ w.provider_payout_id|default:"?" }}
(batch {{ w.provider_batch_id|default:"?" }}){% endif %}</li>{% endfor %}</ul>
{% if overrides %}<ul>{% for o in overrides %}<li>{{ o.withdrawal.internal_withdrawal_id }}:
{{ o.get_action_display }} requested by {{ o.requested_by }} at {{ o.requested_at }}
({{ o.reason }}){% if o.transaction_hash %}, hash {{ o.transaction_hash }}{% endif %}</li>
{% endfor %}</ul>{% endif %}
{% for w in withdrawals %}<input type="hidden" name="_selected_action" value="{{ w.pk }}">
{% endfor %}<input type="hidden" name="action" value="{{ action }}">
{% if needs_reason %}<p>
<label for="id_{{ reason_name }}">{{ reason_label|default:"Reason" }}</label><br>
<textarea name="{{ reason_name }}" id="id_{{ reason_name }}" rows="4" cols="80"
{% if not reason_optional %}required{% endif %}></textarea></p>{% endif %}
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
                "reason_name": "override_reason",
                **context,
            },
        )

    def _each(
        self,
        request: HttpRequest,
        queryset: QuerySet[Any],
        action: Callable[[Any], str],
        verb: str,
    ) -> None:
        """Run ``action`` on each withdrawal; each one that succeeds is logged in its History
        with the message ``action`` returns."""
        done = 0
        for withdrawal in queryset:
            try:
                logged = action(withdrawal)
            except PaymentsError as exc:
                self.message_user(
                    request,
                    f"{withdrawal.internal_withdrawal_id}: {exc.message}",
                    level=messages.ERROR,
                )
            else:
                log_action(request, withdrawal, logged)
                done += 1
        if done:
            self.message_user(request, f"{done} withdrawal(s) {verb}.", level=messages.SUCCESS)
