"""The configured NowPayments client of this process: ``get_provider()``."""

from __future__ import annotations

import threading

from django.db import transaction

from payments.config import get_nowpayments_config
from payments.services.providers.nowpayments.provider import NowPaymentsProvider

_local = threading.local()


def refuse_inside_transaction() -> None:
    """Calls to NowPayments wait on the network: never while holding database locks."""
    if transaction.get_connection().in_atomic_block:
        raise RuntimeError("NowPayments must not be called inside a database transaction.")


def get_provider() -> NowPaymentsProvider:
    """One client (and HTTP session) per thread, rebuilt when the settings change."""
    config = get_nowpayments_config()
    cached = getattr(_local, "provider", None)
    if cached is None or cached.config != config:
        if cached is not None:
            cached.close()
        cached = NowPaymentsProvider(config)
        _local.provider = cached
    return cached
