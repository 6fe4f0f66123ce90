"""The deposit form and the payment page, in the shape of the seed's ``create_deposit`` and
``payment_detail`` views (same templates, same context), with the input checked first.

The seed's own versions (``Payment.objects.create(...)`` then ``redirect('payment_detail',
...)``) render these templates too; ours create the deposit at NowPayments at once through
``payment_create``, so the page opens with its address, and refuse bad input with a form error.
"""

from __future__ import annotations

import logging
import math
import uuid

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from payments.errors import PaymentsError, ProviderError, ProviderUnavailable
from payments.models import Currency, Payment
from payments.pages.auth import signed_in_user_id
from payments.pages.forms import DepositForm, form_errors
from payments.security import create_rate_wait
from payments.services.deposits import payment_create

logger = logging.getLogger(__name__)

PROVIDER_DOWN = (
    "NowPayments could not be reached just now, so no deposit was created. "
    "Please try again in a moment."
)
PROVIDER_REFUSED = (
    "NowPayments refused this deposit, so none was created. Try another amount or currency."
)


@login_required
@require_http_methods(["GET", "POST"])
def create_deposit(request: HttpRequest) -> HttpResponse:
    """Create a cryptocurrency deposit payment."""
    currencies = list(Currency.objects.available())
    context: dict[str, object] = {"currencies": currencies}
    if request.method == "POST":
        form = DepositForm(request.POST, currencies=currencies)
        created = _create(request, form) if form.is_valid() else form_errors(form)
        if isinstance(created, Payment):
            return redirect("payment_detail", payment_id=created.id)
        context.update(
            errors=created,
            amount=request.POST.get("amount", ""),
            selected_currency=request.POST.get("currency", ""),
        )
    return render(request, "create_deposit.html", context)


def _create(request: HttpRequest, form: DepositForm) -> Payment | list[str]:
    """The deposit created at NowPayments, or why not (as sentences for the form)."""
    wait = create_rate_wait(request, "deposit_create")
    if wait is not None:
        return [f"Too many deposits in a short time; try again in {math.ceil(wait)} s."]
    try:
        return payment_create(
            user_id=signed_in_user_id(request),
            amount_usd=form.cleaned_data["amount"],
            currency_code=form.cleaned_data["currency"],
            description=f"Deposit by {request.user.get_username()}",
        )
    except ProviderUnavailable:
        return [PROVIDER_DOWN]
    except ProviderError as exc:
        logger.warning("deposit form: NowPayments refused a deposit: %s", exc.code)
        return [PROVIDER_REFUSED]
    except PaymentsError as exc:
        return [exc.message]


@login_required
@require_http_methods(["GET"])
def payment_detail(request: HttpRequest, payment_id: uuid.UUID) -> HttpResponse:
    """Display payment details with QR code (the signed-in user's own payments only)."""
    payment = get_object_or_404(
        Payment.objects.select_related("currency"),
        id=payment_id,
        user_id=signed_in_user_id(request),
    )
    return render(
        request,
        "payment_detail.html",
        {
            "payment": payment,
            "qr_code_url": payment.get_qr_code_url(size=300),
            "explorer_link": payment.get_explorer_link(),
            "status_color": payment.status_color,
        },
    )
