"""Signing in and out of the user pages, with the failed sign-in throttle of payments.security."""

from __future__ import annotations

import logging
from typing import Any

from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView, LogoutView
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

from payments.security import auth_failure_record, auth_failures_exceeded

logger = logging.getLogger(__name__)

TOO_MANY_FAILURES = "Too many failed sign-ins; try again in a few minutes."


class SignInForm(AuthenticationForm):
    """Django's sign-in form, refused outright while the client or username is locked out."""

    error_messages = {**AuthenticationForm.error_messages, "throttled": TOO_MANY_FAILURES}

    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username")
        if auth_failures_exceeded(self.request, username):  # type: ignore[arg-type]
            logger.warning("sign-in refused: too many failures")
            raise forms.ValidationError(self.error_messages["throttled"], code="throttled")
        try:
            return super().clean()
        except forms.ValidationError:
            auth_failure_record(self.request, username)  # type: ignore[arg-type]
            raise


class SignInView(LoginView):
    template_name = "payments/pages/login.html"
    form_class = SignInForm
    redirect_authenticated_user = True


class SignOutView(LogoutView):
    """POST only (Django's own rule); then back to the sign-in page (LOGOUT_REDIRECT_URL)."""


def signed_in_user_id(request: HttpRequest) -> int:
    """The signed-in user's id (every page but the sign-in page requires one)."""
    user_id = request.user.pk
    if user_id is None:
        raise PermissionDenied("Sign in first.")
    return int(user_id)
