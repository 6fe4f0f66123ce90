"""The operators' admin for the payments models, one module per area; importing registers them."""

from django.conf import settings
from django.contrib import admin

from payments.admin import (
    api_keys,
    currencies,
    dashboard,
    deposits,
    ledger,
    manual,
    operations,
    webhooks,
    withdrawals,
)

# "View site" leads to the user pages (PAYMENTS_SITE_URL, "/" by default; empty hides it).
admin.site.site_url = getattr(settings, "PAYMENTS_SITE_URL", "") or None

__all__ = [
    "api_keys",
    "currencies",
    "dashboard",
    "deposits",
    "ledger",
    "manual",
    "operations",
    "webhooks",
    "withdrawals",
]
