"""The withdrawal review page's Approve and Reject, each through a confirmation page; the
``WithdrawalRequestAdmin`` in ``withdrawals`` inherits them."""

from __future__ import annotations

from functools import partial
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied as AdminPermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from payments.admin.base import log_action
from payments.errors import PaymentsError
from payments.models import WithdrawalRequest
from payments.models.withdrawal import WITHDRAWAL_TRANSITIONS, WithdrawalStatus
from payments.services import withdrawals
from payments.services.withdrawals.lifecycle import REJECTION_REASON_MAX_LENGTH

NO_REASON = "Say why the withdrawal is rejected: the user is shown the reason."


class DecisionPagesAdmin(admin.ModelAdmin):
    """The buttons of the review page and their confirmation pages."""

    def has_approve_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(withdrawals.APPROVE_PERMISSION)

    def _review_actions(self, request: HttpRequest, obj: WithdrawalRequest) -> dict[str, str]:
        """The Approve / Reject buttons this user may use on this request now."""
        if not self.has_approve_permission(request):
            return {}
        allowed = WITHDRAWAL_TRANSITIONS[WithdrawalStatus(obj.status)]
        name = f"admin:{self.opts.app_label}_{self.opts.model_name}"
        buttons = {}
        if WithdrawalStatus.APPROVED in allowed:
            buttons["approve_url"] = reverse(f"{name}_approve", args=[obj.pk])
        if WithdrawalStatus.REJECTED in allowed:
            buttons["reject_url"] = reverse(f"{name}_reject", args=[obj.pk])
        return buttons

    # --- the review page's Approve and Reject, each through a confirmation page -------------

    def get_urls(self) -> list[URLPattern]:
        name = f"{self.opts.app_label}_{self.opts.model_name}"
        wrap = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/approve/",
                wrap(partial(self._decision_view, approve=True)),
                name=f"{name}_approve",
            ),
            path(
                "<path:object_id>/reject/",
                wrap(partial(self._decision_view, approve=False)),
                name=f"{name}_reject",
            ),
            *super().get_urls(),
        ]

    def _decision_view(
        self, request: HttpRequest, object_id: str, *, approve: bool
    ) -> HttpResponse:
        """GET shows the confirmation; a POST with ``confirm=yes`` approves or rejects through
        the lifecycle, logs it and goes back to the review page; nothing changes otherwise."""
        if not self.has_approve_permission(request):
            raise AdminPermissionDenied
        name = f"admin:{self.opts.app_label}_{self.opts.model_name}"
        withdrawal = self.get_object(request, unquote(object_id))
        if withdrawal is None:  # unknown, or not a UUID at all
            self.message_user(
                request, f"No withdrawal request has the id {object_id!r}.", messages.WARNING
            )
            return HttpResponseRedirect(reverse(f"{name}_changelist"))
        change_url = reverse(f"{name}_change", args=[withdrawal.pk])
        verb = "approved" if approve else "rejected"
        target = WithdrawalStatus.APPROVED if approve else WithdrawalStatus.REJECTED
        if target not in WITHDRAWAL_TRANSITIONS[WithdrawalStatus(withdrawal.status)]:
            self.message_user(
                request,
                f"Withdrawal {withdrawal.internal_withdrawal_id} is {withdrawal.status}: it "
                f"cannot be {verb}.",
                level=messages.ERROR,
            )
            return HttpResponseRedirect(change_url)
        reason = " ".join(request.POST.get("reason", "").split())
        if request.method == "POST" and request.POST.get("confirm") == "yes":
            error = self._check_reason(reason, required=not approve)
            if error is None:
                try:
                    logged = (
                        self._approve(request, withdrawal, reason)
                        if approve
                        else self._reject(request, withdrawal, reason)
                    )
                except PaymentsError as exc:
                    error = exc.message
                else:
                    log_action(request, withdrawal, logged)
                    self.message_user(
                        request,
                        f"Withdrawal {withdrawal.internal_withdrawal_id} {verb}.",
                        level=messages.SUCCESS,
                    )
                    return HttpResponseRedirect(change_url)
            self.message_user(request, error, level=messages.ERROR)
        return TemplateResponse(
            request,
            "admin/payments/withdrawalrequest/decision.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": f"{'Approve' if approve else 'Reject'} withdrawal "
                f"{withdrawal.internal_withdrawal_id}",
                "withdrawal": withdrawal,
                "change_url": change_url,
                "intro": "Approving lets the payout go to this address."
                if approve
                else "Rejecting refunds the hold to the user's balance. The reason is shown to "
                "the user and added to the notes.",
                "reason": reason,
                "reason_label": "Note (optional, added to the notes)"
                if approve
                else "Reason (required; shown to the user)",
                "reason_required": not approve,
                "reason_max_length": None if approve else REJECTION_REASON_MAX_LENGTH,
                "button": "Approve" if approve else "Reject",
            },
        )

    @staticmethod
    def _check_reason(reason: str, *, required: bool) -> str | None:
        if required and not reason:
            return NO_REASON
        if required and len(reason) > REJECTION_REASON_MAX_LENGTH:
            return (
                f"A rejection reason is at most {REJECTION_REASON_MAX_LENGTH} characters "
                f"(this one has {len(reason)})."
            )
        return None

    def _approve(self, request: HttpRequest, withdrawal: Any, note: str) -> str:
        """Approve one request (the payout is queued when payouts are on); the History text."""
        from workers.tasks import withdrawal_payout_send_task

        withdrawals.withdrawal_approve(
            withdrawal_id=withdrawal.pk, admin_user=request.user, notes=note
        )
        done = "Approved."
        if withdrawals.payouts_enabled():
            send = partial(withdrawal_payout_send_task.delay, withdrawal_id=str(withdrawal.pk))
            transaction.on_commit(send)
            done = "Approved; the payout is sent through NowPayments."
        return f"{done} Note: {note}" if note else done

    def _reject(self, request: HttpRequest, withdrawal: Any, reason: str) -> str:
        withdrawals.withdrawal_reject(
            withdrawal_id=withdrawal.pk, admin_user=request.user, notes=reason
        )
        return f"Rejected (the hold is refunded): {reason}"
