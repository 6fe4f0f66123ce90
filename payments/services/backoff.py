"""Per-item backoff: when an item whose provider call keeps failing is tried next.

A payout or a coin's terms that NowPayments keeps refusing (or never answers) is retried
later, on its own row, while the sweep goes on with the others: after the n-th consecutive
failure, ``PAYMENTS_ITEM_RETRY_SECONDS`` (60 by default) doubled n-1 times, at most
``PAYMENTS_ITEM_RETRY_MAX_SECONDS`` (an hour).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings

from payments.errors import PaymentsError

DEFAULT_BASE_SECONDS = 60.0
DEFAULT_MAX_SECONDS = 3600.0
ERROR_MAX_LENGTH = 500


def retry_delay(failures: int) -> timedelta:
    """How long an item that has failed ``failures`` times in a row is left alone."""
    base = float(getattr(settings, "PAYMENTS_ITEM_RETRY_SECONDS", DEFAULT_BASE_SECONDS))
    ceiling = float(getattr(settings, "PAYMENTS_ITEM_RETRY_MAX_SECONDS", DEFAULT_MAX_SECONDS))
    exponent = min(max(failures, 1) - 1, 30)
    return timedelta(seconds=min(base * 2**exponent, ceiling))


def retry_at(failures: int, *, now: datetime) -> datetime:
    return now + retry_delay(failures)


def describe(exc: BaseException) -> str:
    """``code: message`` of an error, short enough for a ``*_last_error`` column."""
    if isinstance(exc, PaymentsError):
        text = f"{exc.code}: {exc.message}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return text[:ERROR_MAX_LENGTH]
