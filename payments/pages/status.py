"""The payment page's live status: a small JSON endpoint its script polls every 2 s."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET

from payments.models import Payment
from payments.pages import formatting as fmt
from payments.pages.auth import signed_in_user_id


def payment_status_body(payment: Payment) -> dict[str, Any]:
    """What the page shows of a payment that can change without a reload (amounts as strings)."""
    balance = fmt.balance_of(payment.user)
    credited = fmt.credited_usd(payment)
    pending = fmt.registration_pending(payment)
    seconds = None if payment.is_final else fmt.seconds_until(payment.expires_at)
    return {
        "status": payment.status,
        "status_display": payment.get_status_display(),
        "status_color": payment.status_color,
        "is_final": payment.is_final,
        "pay_address": payment.pay_address,
        "pay_amount": _crypto_or_none(payment.pay_amount),
        "pay_currency": payment.currency.token,
        "pay_extra_id": payment.pay_extra_id,
        "extra_id_name": payment.currency.extra_id_name or "Memo",
        "actual_amount": _crypto_or_none(payment.actual_amount),
        "actual_amount_usd": _str_or_none(payment.actual_amount_usd),
        "received_display": fmt.received(payment),
        "credited_usd": _str_or_none(credited),
        "credited_display": fmt.usd(credited),
        "transaction_hash": payment.transaction_hash,
        "explorer_link": payment.get_explorer_link(),
        "qr_code_url": payment.get_qr_code_url(size=300),
        "expires_at": payment.expires_at.isoformat() if payment.expires_at else None,
        "expires_in_seconds": seconds,
        "time_left": fmt.time_left(seconds),
        "balance_usd": str(balance),
        "balance_display": fmt.usd(balance),
        "registration_pending": pending,
        "registration_error": payment.provider_error if pending else "",
        "registration_notice": fmt.registration_notice(payment) if pending else "",
    }


@login_required
@require_GET
def payment_status(request: HttpRequest, payment_id: uuid.UUID) -> JsonResponse:
    """The signed-in user's own payment only: another's is a 404, as on its page."""
    payment = get_object_or_404(
        Payment.objects.select_related("currency", "user"),
        pk=payment_id,
        user_id=signed_in_user_id(request),
    )
    response = JsonResponse(payment_status_body(payment))
    response["Cache-Control"] = "no-store"
    return response


def _crypto_or_none(value: Any) -> str | None:
    return None if value is None else fmt.crypto(value)


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)
