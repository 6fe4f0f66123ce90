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
                approved = deposits.payment_review_approve(
                    resolution_id=resolution.pk, approver=request.user
                )
            except PaymentsError as exc:
                self.message_user(
                    request,
                    f"{resolution.payment.internal_payment_id}: {exc.message}",
                    level=messages.ERROR,
                )
            else:
                log_action(
                    request,
                    resolution.payment,
                    f"Approved crediting {approved.credit_usd} USD in full, requested by "
                    f"{approved.requested_by}: {approved.reason}",
                )
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


def _review_message(resolution: PaymentResolution) -> str:
    """What an operator's decision on a payment in review did, for its History."""
    if resolution.action == ResolutionAction.CREDIT_FULL:
        done = f"Requested crediting {resolution.credit_usd} USD in full (a second operator "
        done += "approves)"
    elif resolution.action == ResolutionAction.CREDIT_RECEIVED:
        done = f"Credited the received amount, {resolution.credit_usd} USD"
    else:
        done = "Rejected (credited nothing)"
    return f"{done}: {resolution.reason}"
