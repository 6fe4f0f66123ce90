"""Runs the seed's views in the host project and prints what a user would see, as JSON."""

import json
import os
import sys
from decimal import Decimal

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hostsite.settings")
django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402

import payments  # noqa: E402
from payments.models import Currency  # noqa: E402

call_command("migrate", verbosity=0)
Currency.objects.create(
    code="BTC", name="Bitcoin", token="BTC", network="BTC", min_amount_usd=Decimal("1.00")
)
user = get_user_model().objects.create_user("host-user", password="host-pass-123")
client = Client()
client.force_login(user)
form = client.get("/deposit/")
created = client.post("/deposit/", {"amount": "25.00", "currency": "BTC"})
detail = client.get(created["Location"])
page = detail.content.decode()
payment = user.payments.get()
qr = client.get(payment.get_qr_code_url(size=300))
api = client.get("/api/payments/")
json.dump(
    {
        "payments_file": payments.__file__,
        "form_status": form.status_code,
        "form_has_currency": "BTC" in form.content.decode(),
        "created_status": created.status_code,
        "detail_status": detail.status_code,
        "pay_address": payment.pay_address,
        "address_on_page": bool(payment.pay_address) and payment.pay_address in page,
        "qr_data": payment.qr_data,
        "qr_status": qr.status_code,
        "qr_type": qr.get("Content-Type"),
        "api_status": api.status_code,
        "api_body": api.json(),
    },
    sys.stdout,
)
