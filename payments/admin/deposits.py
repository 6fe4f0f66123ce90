"""The payments admin: deposits, their provider checks, and decisions on payments in review."""

from __future__ import annotations

from functools import partial
from typing import Any

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse

from payments.admin.base import AuditAdmin, log_action
from payments.admin.exports import CsvExportMixin
from payments.admin.paging import FlatChangelistMixin
from payments.errors import PaymentsError
from payments.models import (
    Payment,
    PaymentResolution,
)
from payments.models.payment import ACTIVE_STATUSES, PaymentStatus
from payments.models.resolution import ResolutionAction
from payments.services import deposits
from payments.services.deposits import review


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
class PaymentAdmin(FlatChangelistMixin, CsvExportMixin, AuditAdmin):
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
        "refuse_credit",
        "reject_payment",
    )
    inlines = (PaymentResolutionInline,)

    @admin.action(
        description="In review: request crediting the received amount (second operator)",
        permissions=["resolve"],
    )
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
        description="In review: approve a requested credit (second operator; not your own)",
        permissions=["approve_full"],
    )
    def approve_full_credit(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        # The name stays from when only crediting in full waited; it approves either credit.
        self._decide_credits(request, queryset, approve=True)

    @admin.action(
        description="In review: refuse a requested credit (second operator; not your own)",
        permissions=["approve_full"],
    )
    def refuse_credit(self, request: HttpRequest, queryset: QuerySet[Any]) -> Any:
        if "apply" not in request.POST:
            return self._decision_page(
                request,
                queryset,
                title="Refuse the requested credits",
                explanation="The requested credits of these payments are refused; the payments "
                "stay in review for another decision. Your reason is stored in each payment's "
                "history.",
            )
        reason = " ".join(request.POST.get("reason", "").split())
        if not reason:
            self.message_user(request, "Say why the credits are refused.", level=messages.ERROR)
            return None
        self._decide_credits(request, queryset, approve=False, reason=reason)
        return None

    def _decide_credits(
        self, request: HttpRequest, queryset: QuerySet[Any], *, approve: bool, reason: str = ""
    ) -> None:
        pending = list(
            PaymentResolution.objects.filter(
                payment__in=queryset, outcome=PaymentResolution.Outcome.PENDING
            ).select_related("payment", "requested_by")
        )
        if not pending:
            self.message_user(
                request,
                "No requested credit is waiting for the selected payments.",
                level=messages.WARNING,
            )
            return
        decide = deposits.payment_review_approve if approve else deposits.payment_review_refuse
        done = 0
        for resolution in pending:
            try:
                decided = decide(resolution_id=resolution.pk, approver=request.user)
            except PaymentsError as exc:
                self.message_user(
                    request,
                    f"{resolution.payment.internal_payment_id}: {exc.message}",
                    level=messages.ERROR,
                )
            else:
                log_action(request, resolution.payment, _decision_message(decided, reason))
                done += 1
        if done:
            verb = "approved and posted" if approve else "refused"
            self.message_user(request, f"{done} credit(s) {verb}.", level=messages.SUCCESS)

    def has_resolve_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(review.RESOLVE_PERMISSION)

    def has_approve_full_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(review.APPROVE_FULL_PERMISSION)

    def _review_decision(
        self, request: HttpRequest, queryset: QuerySet[Any], action: str
    ) -> TemplateResponse | None:
        label = ResolutionAction(action).label
        if "apply" not in request.POST:
            waits = (
                " A credit waits for a second operator's approval." if action != "reject" else ""
            )
            return self._decision_page(
                request,
                queryset,
                title=label,
                explanation="Only payments in review are decided; each decision is stored with "
                f"your reason in the payment's history.{waits}",
            )
        done = 0
        for payment in queryset:
            try:
                resolution = deposits.payment_review_request(
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
                log_action(request, payment, _review_message(resolution))
                done += 1
        if done:
            waits = " requested; a second operator approves"
            if action == ResolutionAction.REJECT:
                waits = ""
            self.message_user(
                request, f"{label}: {done} payment(s){waits}.", level=messages.SUCCESS
            )
        return None

    def _decision_page(
        self, request: HttpRequest, queryset: QuerySet[Any], *, title: str, explanation: str
    ) -> TemplateResponse:
        return TemplateResponse(
            request,
            "admin/payments/payment/review_decision.html",
            {
                **self.admin_site.each_context(request),
                "title": title,
                "explanation": explanation,
                "payments": list(queryset),
                "action": request.POST.get("action", ""),
                "opts": self.model._meta,
            },
        )

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


def _review_message(resolution: PaymentResolution) -> str:
    """What an operator's decision on a payment in review did, for its History."""
    if resolution.action == ResolutionAction.REJECT:
        return f"Rejected (credited nothing): {resolution.reason}"
    return (
        f"Requested {_credit_phrase(resolution)} (a second operator approves): {resolution.reason}"
    )


def _credit_phrase(resolution: PaymentResolution) -> str:
    if resolution.action == ResolutionAction.CREDIT_FULL:
        return f"crediting {resolution.credit_usd} USD in full"
    return f"crediting the received amount, {resolution.credit_usd} USD"


def _decision_message(resolution: PaymentResolution, reason: str) -> str:
    """What a second operator's approval or refusal of a requested credit did, for its History."""
    verb = "Approved" if resolution.outcome == PaymentResolution.Outcome.APPLIED else "Refused"
    done = f"{verb} {_credit_phrase(resolution)}, requested by {resolution.requested_by}"
    because = f"; refused because: {reason}" if reason else ""
    return f"{done}: {resolution.reason}{because}"
