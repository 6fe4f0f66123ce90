"""The operators' admin for the payments models, one module per area; importing registers them."""

from django.conf import settings
from django.contrib import admin

from payments.admin import currencies, dashboard, deposits, ledger, manual, operations, withdrawals

# "View site" leads to the user pages, which do not exist yet: hidden until PAYMENTS_SITE_URL
# says where they are.
admin.site.site_url = getattr(settings, "PAYMENTS_SITE_URL", "") or None

__all__ = [
    "currencies",
    "dashboard",
    "deposits",
    "ledger",
    "manual",
    "operations",
    "withdrawals",
]
