"""Throttling of failed sign-ins, shared by the user pages' login form and the API's auth."""

from __future__ import annotations

from django.http import HttpRequest


def auth_failures_exceeded(request: HttpRequest, username: str | None) -> bool:
    """Whether sign-ins from this client (or for this username) are locked out for now."""
    return False


def auth_failure_record(request: HttpRequest, username: str | None) -> None:
    """Count one failed sign-in of this client and this username."""
