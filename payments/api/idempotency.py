"""Idempotency-Key on the API's POSTs: a replay gets the first response and has no second effect."""

from __future__ import annotations


class IdempotentMixin:
    """Placeholder until the Idempotency-Key handling lands (issue 10)."""
