"""The signed-in user's API keys: create one (shown once, on the answer to the create), list
them, revoke one. Creating is rate-limited per user (payments.security, api_key_create)."""

from __future__ import annotations

import logging
import math

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from payments import security
from payments.errors import PaymentsError
from payments.models import ApiKey
from payments.services.api_keys import NAME_MAX_LENGTH, api_key_create, api_key_revoke

logger = logging.getLogger(__name__)

TEMPLATE = "payments/pages/api_keys.html"


class ApiKeyForm(forms.Form):
    name = forms.CharField(
        label="Name",
        max_length=NAME_MAX_LENGTH,
        help_text="What will use the key, e.g. “shop backend”.",
    )


@login_required
@require_http_methods(["GET", "POST"])
def api_keys(request: HttpRequest) -> HttpResponse:
    form = ApiKeyForm()
    raw_key = None
    status = 200
    if request.method == "POST" and request.POST.get("action") == "revoke":
        return _revoke(request)
    if request.method == "POST":
        form = ApiKeyForm(request.POST)
        wait = security.create_rate_wait(request, "api_key_create") if form.is_valid() else None
        if wait is not None:
            form.add_error(
                None, f"You have created many keys just now; try again in {math.ceil(wait)} s."
            )
            status = 429
        elif form.is_valid():
            try:
                _, raw_key = api_key_create(
                    user_id=_user_id(request), name=form.cleaned_data["name"]
                )
            except PaymentsError as exc:
                form.add_error(None, exc.message)
            else:
                form = ApiKeyForm()
        if status == 200 and not form.is_valid() and form.is_bound:
            status = 400
    keys = ApiKey.objects.filter(user_id=_user_id(request)).order_by("revoked_at", "-created_at")
    response = render(
        request, TEMPLATE, {"form": form, "keys": keys, "raw_key": raw_key}, status=status
    )
    if raw_key is not None:
        response["Cache-Control"] = "no-store"  # the key is on this answer only
    return response


def _revoke(request: HttpRequest) -> HttpResponse:
    raw_id = request.POST.get("key_id", "")
    try:
        key_id = int(raw_id) if raw_id.isascii() and raw_id.isdigit() and len(raw_id) < 19 else 0
        api_key = api_key_revoke(api_key_id=key_id, user=request.user)
    except PaymentsError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"The key “{api_key.name}” is revoked: it no longer works.")
    return redirect("api_keys")


def _user_id(request: HttpRequest) -> int:
    """The signed-in user's id (login_required guarantees one)."""
    return int(str(request.user.pk))
