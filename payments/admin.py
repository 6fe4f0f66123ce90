"""The operators' admin for the five payments models, with money fields read-only."""

from __future__ import annotations

from functools import partial
from typing import Any

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse

from payments.errors import PaymentsError
from payments.models import (
    Currency,
    LedgerDrift,
    Payment,
    PaymentResolution,
    PeriodicRun,
    ProviderEvent,
    Transaction,
    UserBalance,
    WithdrawalRequest,
)
from payments.models.event import EventOutcome
from payments.models.payment import ACTIVE_STATUSES, PaymentStatus
from payments.models.resolution import ResolutionAction
from payments.models.withdrawal import WithdrawalStatus
from payments.services import deposits, findings, withdrawals
from payments.services.deposits import review
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


class PaymentResolutionInline(admin.TabularInline):
    """The payment's review history: every decision, who asked and who approved."""

    model = PaymentResolution
    extra = 0
    can_delete = False
    fields = readonly_fields = (
        "action",
        "reason",
        "credit_usd",
        "requested_by",
        "requested_at",
        "decided_by",
        "decided_at",
        "outcome",
    )

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


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
        "credited_usd",
        "review_reason",
        "expires_at",
        "completed_at",
        "status_changed_at",
        "provider_checked_at",
        "provider_requested_at",
        "created_at",
        "updated_at",
    )
    actions = (
        "check_at_nowpayments",
        "settle_now",
        "credit_received",
        "request_full_credit",
        "approve_full_credit",
        "reject_payment",
    )
    inlines = (PaymentResolutionInline,)

    @admin.action(description="In review: credit the received amount", permissions=["resolve"])
    def credit_received(self, request: HttpRequest, queryset: QuerySet[Any]) -> Any:
        return self._review_decision(request, queryset, ResolutionAction.CREDIT_RECEIVED)

    @admin.action(
        description="In review: request crediting the price in full (second operator)",
        permissions=["resolve"],
    )
    def request_full_credit(self, request: HttpRequest, queryset: QuerySet[Any]) -> Any:
        return self._review_decision(request, queryset, ResolutionAction.CREDIT_FULL)

    @admin.action(description="In review: reject (credit nothing)", permissions=["resolve"])
    def reject_payment(self, request: HttpRequest, queryset: QuerySet[Any]) -> Any:
        return self._review_decision(request, queryset, ResolutionAction.REJECT)

    @admin.action(
        description="In review: approve a requested credit in full", permissions=["approve_full"]
    )
    def approve_full_credit(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        pending = PaymentResolution.objects.filter(
            payment__in=queryset, outcome=PaymentResolution.Outcome.PENDING
        ).select_related("payment")
        done = 0
        for resolution in pending:
            try:
                deposits.payment_review_approve(resolution_id=resolution.pk, approver=request.user)
            except PaymentsError as exc:
                self.message_user(
                    request,
                    f"{resolution.payment.internal_payment_id}: {exc.message}",
                    level=messages.ERROR,
                )
            else:
                done += 1
        self.message_user(request, f"{done} credit(s) in full approved and posted.")

    def has_resolve_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(review.RESOLVE_PERMISSION)

    def has_approve_full_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(review.APPROVE_FULL_PERMISSION)

    def _review_decision(
        self, request: HttpRequest, queryset: QuerySet[Any], action: str
    ) -> TemplateResponse | None:
        label = ResolutionAction(action).label
        if "apply" not in request.POST:
            return TemplateResponse(
                request,
                "admin/payments/payment/review_decision.html",
                {
                    **self.admin_site.each_context(request),
                    "title": label,
                    "explanation": "Only payments in review are decided; each decision is "
                    "stored with your reason in the payment's history.",
                    "payments": list(queryset),
                    "action": request.POST.get("action", ""),
                    "opts": self.model._meta,
                },
            )
        done = 0
        for payment in queryset:
            try:
                deposits.payment_review_request(
                    payment_id=payment.pk,
                    action=action,
                    operator=request.user,
                    reason=request.POST.get("reason", ""),
                )
            except PaymentsError as exc:
                self.message_user(
                    request, f"{payment.internal_payment_id}: {exc.message}", level=messages.ERROR
                )
            else:
                done += 1
        if done:
            self.message_user(request, f"{label}: {done} payment(s).", level=messages.SUCCESS)
        return None

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

    @admin.action(description="Mark selected as processing (payout started)")
    def mark_processing(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
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
        from django.template.response import TemplateResponse

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
        "figures",
    )
    exclude = ("last_result",)  # shown readably as "figures in full"

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = super().get_readonly_fields(request, obj)
        return [("figures_in_full" if name == "last_result" else name) for name in fields]

    @admin.display(boolean=True, description="last run failed")
    def has_error(self, obj: PeriodicRun) -> bool:
        return bool(obj.last_error)

    @admin.display(description="last result")
    def figures(self, obj: PeriodicRun) -> str:
        """The last result on one line: "payments_checked 12 · payments_differing 1 · ..."."""
        return " · ".join(f"{k} {self._inline(v)}" for k, v in self._items(obj.last_result))

    @admin.display(description="last result")
    def figures_in_full(self, obj: PeriodicRun) -> str:
        """One line per figure, nested ones by their path ("by_kind.chain_broken: 1")."""
        return "\n".join(f"{key}: {value}" for key, value in self._flat(obj.last_result)) or "-"

    @staticmethod
    def _items(value: Any) -> list[tuple[str, Any]]:
        return [(str(k), v) for k, v in value.items()] if isinstance(value, dict) else []

    @classmethod
    def _inline(cls, value: Any) -> str:
        if not isinstance(value, dict):
            return str(value)
        inner = ", ".join(f"{k} {cls._inline(v)}" for k, v in cls._items(value))
        return f"({inner})" if inner else "none"

    @classmethod
    def _flat(cls, value: Any, prefix: str = "") -> list[tuple[str, str]]:
        rows: list[tuple[str, str]] = []
        for key, item in cls._items(value):
            if isinstance(item, dict) and item:
                rows.extend(cls._flat(item, f"{prefix}{key}."))
            else:
                rows.append((f"{prefix}{key}", cls._inline(item)))
        return rows


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
