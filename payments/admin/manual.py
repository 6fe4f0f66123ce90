"""The manual money admin: an operator requests a credit or debit, a supervisor approves or
refuses it on its own confirmation page; every step goes through ``payments.services.manual``
and is logged with its reason."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from payments.admin.base import log_action
from payments.admin.paging import FlatChangelistMixin
from payments.errors import PaymentsError
from payments.models import ManualAdjustment, UserBalance
from payments.services import manual

ADD_FIELDS = ("user", "kind", "amount_usd", "reason")
SHOWN_FIELDS = (
    *ADD_FIELDS,
    "outcome",
    "requested_by",
    "requested_at",
    "decided_by",
    "decided_at",
    "decision_notes",
    "transaction",
)
DECISIONS = {
    "approve": {
        "title": "Approve manual money",
        "button": "Approve and post it",
        "label": "Note (optional, stored with the decision)",
        "required": False,
    },
    "refuse": {
        "title": "Refuse manual money",
        "button": "Refuse it",
        "label": "Why it is refused (required, stored with the decision)",
        "required": True,
    },
}


class ManualRequestForm(forms.ModelForm):
    """The request form; the service's own checks validate it, so what it says is what
    ``manual_request`` will do."""

    requested_by: Any = None  # set per request by ``ManualAdjustmentAdmin.get_form``

    class Meta:
        model = ManualAdjustment
        fields = ADD_FIELDS

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if all(data.get(name) is not None for name in ADD_FIELDS):
            try:
                data["reason"] = manual.manual_check_request(
                    user_id=data["user"].pk,
                    kind=data["kind"],
                    amount_usd=data["amount_usd"],
                    reason=data["reason"],
                    requested_by=self.requested_by,
                )
            except manual.ManualError as exc:
                self.add_error(exc.field, exc.message)
        return data


@admin.register(ManualAdjustment)
class ManualAdjustmentAdmin(FlatChangelistMixin, admin.ModelAdmin):
    form = ManualRequestForm
    list_display = (
        "id",
        "user",
        "kind",
        "amount_usd",
        "outcome",
        "requested_by",
        "requested_at",
        "decided_by",
        "decided_at",
        "transaction",
    )
    list_filter = ("outcome", "kind", "requested_at")
    search_fields = ("user__username", "user__email", "reason")
    list_select_related = ("user", "requested_by", "decided_by", "transaction", "transaction__user")
    date_hierarchy = "requested_at"
    raw_id_fields = ("user",)

    # --- who may do what --------------------------------------------------------------------

    def has_add_permission(self, request: HttpRequest) -> bool:
        return super().has_add_permission(request) and request.user.has_perm(
            manual.REQUEST_PERMISSION
        )

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a request is never edited: it is approved or refused, on its own page

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    # --- the request (the add form) ---------------------------------------------------------

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ADD_FIELDS if obj is None else SHOWN_FIELDS

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any):
        form = super().get_form(request, obj, change=change, **kwargs)
        return type(form.__name__, (form,), {"requested_by": request.user})

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        """Create through the service (never ``obj.save()``); a refusal is a message."""
        data = form.cleaned_data
        try:
            created = manual.manual_request(
                user_id=data["user"].pk,
                kind=data["kind"],
                amount_usd=data["amount_usd"],
                reason=data["reason"],
                requested_by=request.user,
            )
        except PaymentsError as exc:
            obj.request_failed = True
            self.message_user(request, exc.message, level=messages.ERROR)
            return
        for field in created._meta.concrete_fields:
            setattr(obj, field.attname, getattr(created, field.attname))
        obj._state.adding = False
        obj._state.db = created._state.db
        _log(
            request,
            created,
            f"Requested {_describe(created)} (a supervisor approves): {created.reason}",
        )

    def log_addition(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        return None  # ``save_model`` logs the request with its reason

    def response_add(self, request: HttpRequest, obj: Any, post_url_continue: Any = None) -> Any:
        if getattr(obj, "request_failed", False):
            return HttpResponseRedirect(request.get_full_path())
        self.message_user(
            request,
            f"Requested {_describe(obj)}; it is posted once a supervisor approves it.",
            level=messages.SUCCESS,
        )
        return HttpResponseRedirect(self._change_url(obj))

    # --- the decision (change page buttons, confirmation pages) -----------------------------

    def get_urls(self) -> list[Any]:
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<path:object_id>/approve/",
                self.admin_site.admin_view(self.approve_view),
                name="{}_{}_approve".format(*info),
            ),
            path(
                "<path:object_id>/refuse/",
                self.admin_site.admin_view(self.refuse_view),
                name="{}_{}_refuse".format(*info),
            ),
            *super().get_urls(),
        ]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        obj = self.get_object(request, unquote(object_id))
        context = dict(extra_context or {})
        if obj is not None:
            context["decisions"] = {
                decision: reverse(f"admin:payments_manualadjustment_{decision}", args=[obj.pk])
                for decision in DECISIONS
                if _refusal(obj, request.user, decision) is None
            }
            context["withdraws"] = obj.requested_by_id == request.user.pk
        return super().change_view(request, object_id, form_url, context)

    def approve_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._decision_view(request, object_id, "approve")

    def refuse_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._decision_view(request, object_id, "refuse")

    def _decision_view(self, request: HttpRequest, object_id: str, decision: str) -> HttpResponse:
        """GET shows the confirmation page and changes nothing; POST with ``confirm=yes``
        decides through the service, then returns to the change page."""
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            return self._get_obj_does_not_exist_redirect(  # type: ignore[attr-defined]
                request, self.opts, object_id
            )
        if not self.has_view_permission(request, obj):
            raise PermissionDenied
        refusal = _refusal(obj, request.user, decision)
        if refusal is not None:
            self.message_user(request, refusal, level=messages.ERROR)
            return HttpResponseRedirect(self._change_url(obj))
        reason = request.POST.get("reason", "") if request.method == "POST" else ""
        if request.method == "POST" and request.POST.get("confirm") == "yes":
            try:
                decided = (
                    manual.manual_approve(adjustment_id=obj.pk, approver=request.user, notes=reason)
                    if decision == "approve"
                    else manual.manual_refuse(
                        adjustment_id=obj.pk, approver=request.user, notes=reason
                    )
                )
            except PaymentsError as exc:
                self.message_user(request, exc.message, level=messages.ERROR)
            else:
                message = _decision_message(decided, request.user)
                _log(request, decided, message)
                self.message_user(request, f"{message}.", level=messages.SUCCESS)
                return HttpResponseRedirect(self._change_url(obj))
        balance = UserBalance.objects.filter(user_id=obj.user_id).first()
        return TemplateResponse(
            request,
            "admin/payments/manualadjustment/decision.html",
            {
                **self.admin_site.each_context(request),
                **DECISIONS[decision],
                "opts": self.opts,
                "original": obj,
                "adjustment": obj,
                "balance": balance.balance_usd if balance is not None else None,
                "withdraws": decision == "refuse" and obj.requested_by_id == request.user.pk,
                "reason": reason,
                "change_url": self._change_url(obj),
            },
        )

    def _change_url(self, obj: ManualAdjustment) -> str:
        return reverse("admin:payments_manualadjustment_change", args=[obj.pk])


def _refusal(adjustment: ManualAdjustment, user: Any, decision: str) -> str | None:
    """Why ``user`` may not take ``decision`` on ``adjustment`` now, or None if they may."""
    try:
        manual.manual_check_decision(adjustment=adjustment, actor=user, decision=decision)
    except manual.ManualError as exc:
        return exc.message
    return None


def _describe(adjustment: ManualAdjustment) -> str:
    article = "an" if adjustment.kind == ManualAdjustment.Kind.ADJUSTMENT else "a"
    return f"{article} {adjustment.kind} of {adjustment.amount_usd} USD for {adjustment.user}"


def _decision_message(adjustment: ManualAdjustment, user: Any) -> str:
    said = adjustment.reason
    if adjustment.outcome == ManualAdjustment.Outcome.APPLIED:
        done = f"Approved {_describe(adjustment)} requested by {adjustment.requested_by}"
        done += f" (posting {adjustment.transaction_id}): {said}"
        return f"{done}; note: {adjustment.decision_notes}" if adjustment.decision_notes else done
    if adjustment.requested_by_id == user.pk:
        return f"Withdrew the request of {_describe(adjustment)}: {adjustment.decision_notes}"
    return (
        f"Refused {_describe(adjustment)} requested by {adjustment.requested_by}: "
        f"{adjustment.decision_notes} (it was requested because: {said})"
    )


def _log(request: HttpRequest, adjustment: ManualAdjustment, message: str) -> None:
    """Log on the request, and on the user's balance (if they have one) so the balance's
    History shows every manual step that concerned it."""
    log_action(request, adjustment, message)
    balance = UserBalance.objects.filter(user_id=adjustment.user_id).first()
    if balance is not None:
        log_action(request, balance, f"Manual request {adjustment.pk}: {message}")
