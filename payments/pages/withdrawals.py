"""Withdrawals: a form, its fee quote, the confirmation; the request's page and its cancel.

Step 1 (``action=review``) checks the form and quotes it (``withdrawal_quote``); step 2 shows
the fees and what the user receives, with a one-time token kept in the session; ``confirm``
quotes again and requests the withdrawal only for the figures the user saw, once.
"""

from __future__ import annotations

import math
import secrets
import uuid
from decimal import Decimal
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from payments.errors import InsufficientFunds, PaymentsError
from payments.models import Currency, WithdrawalRequest
from payments.money import format_usd
from payments.pages.auth import signed_in_user_id
from payments.pages.formatting import balance_of
from payments.pages.forms import WithdrawalForm, form_errors
from payments.security import create_rate_wait
from payments.services import withdrawals as service
from payments.services.withdrawals import WithdrawalQuote
from payments.services.withdrawals.fees import withdrawal_extra_id_check

FORM_TEMPLATE = "payments/pages/withdrawal_form.html"
QUOTE_TEMPLATE = "payments/pages/withdrawal_quote.html"
_QUOTE_KEY = "payments_withdrawal_quote"  # the session key of the one-time quote token


@login_required
@require_http_methods(["GET", "POST"])
def create_withdrawal(request: HttpRequest) -> HttpResponse:
    currencies = list(Currency.objects.filter(is_active=True))
    if request.method != "POST":
        return _show_form(request, WithdrawalForm(currencies=currencies))
    form = WithdrawalForm(request.POST, currencies=currencies)
    action = request.POST.get("action", "review")
    if action == "back" or not form.is_valid():
        return _show_form(request, form, errors=[] if action == "back" else form_errors(form))
    data = form.cleaned_data
    currency = next(c for c in currencies if c.code == data["currency"])
    try:
        quote = service.withdrawal_quote(currency_code=currency.code, amount_usd=data["amount_usd"])
        withdrawal_extra_id_check(currency=currency, wallet_extra_id=data["wallet_extra_id"])
        _check_balance(request, data["amount_usd"])
    except PaymentsError as exc:
        return _show_form(request, form, errors=[exc.message])
    if action != "confirm":
        return _show_quote(request, form, quote)
    if request.session.get(_QUOTE_KEY) != request.POST.get("quote_token"):
        return _show_quote(
            request, form, quote, notice="This quote was already used or has expired; check it."
        )
    if _figures(quote) != _posted_figures(request):
        return _show_quote(request, form, quote, notice="The fees have changed; check them.")
    wait = create_rate_wait(request, "withdrawal_create")
    if wait is not None:
        errors = [f"Too many withdrawals in a short time; try again in {math.ceil(wait)} s."]
        return _show_form(request, form, errors=errors)
    request.session.pop(_QUOTE_KEY, None)
    try:
        withdrawal = service.withdrawal_create(
            user_id=signed_in_user_id(request),
            amount_usd=quote.amount_usd,
            currency_id=currency.pk,
            wallet_address=data["wallet_address"],
            wallet_extra_id=data["wallet_extra_id"],
            network_fee_usd=quote.network_fee_usd,
            service_fee_usd=quote.service_fee_usd,
        )
    except PaymentsError as exc:
        return _show_form(request, form, errors=[exc.message])
    messages.success(
        request,
        f"Withdrawal {withdrawal.internal_withdrawal_id} requested: "
        f"{format_usd(withdrawal.amount_usd)} is held from your balance until it is paid out.",
    )
    return redirect("withdrawal_detail", withdrawal_id=withdrawal.pk)


@login_required
@require_http_methods(["GET"])
def withdrawal_detail(request: HttpRequest, withdrawal_id: uuid.UUID) -> HttpResponse:
    withdrawal = _own_withdrawal(request, withdrawal_id)
    return render(
        request,
        "payments/pages/withdrawal_detail.html",
        {"withdrawal": withdrawal, "balance": balance_of(request.user)},
    )


@login_required
@require_POST
def withdrawal_cancel(request: HttpRequest, withdrawal_id: uuid.UUID) -> HttpResponse:
    withdrawal = _own_withdrawal(request, withdrawal_id)
    try:
        withdrawal = service.withdrawal_cancel(withdrawal_id=withdrawal.pk, user=request.user)
    except PaymentsError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request,
            f"Withdrawal {withdrawal.internal_withdrawal_id} cancelled: "
            f"{format_usd(withdrawal.amount_usd)} is back on your balance.",
        )
    return redirect("withdrawal_detail", withdrawal_id=withdrawal.pk)


def _own_withdrawal(request: HttpRequest, withdrawal_id: uuid.UUID) -> WithdrawalRequest:
    """The signed-in user's own request; anyone else's (staff included) is a 404 here."""
    return get_object_or_404(
        WithdrawalRequest.objects.select_related("currency"),
        pk=withdrawal_id,
        user_id=signed_in_user_id(request),
    )


def _check_balance(request: HttpRequest, amount_usd: Decimal) -> None:
    balance = balance_of(request.user)
    if amount_usd > balance:
        raise InsufficientFunds(
            f"Your balance is {format_usd(balance)}: it does not cover {format_usd(amount_usd)}."
        )


def _figures(quote: WithdrawalQuote) -> tuple[str, str, str]:
    return (str(quote.amount_usd), str(quote.total_fee_usd), str(quote.final_amount_usd))


def _posted_figures(request: HttpRequest) -> tuple[str, str, str]:
    post = request.POST
    return (post.get("quoted_amount", ""), post.get("quoted_fee", ""), post.get("quoted_final", ""))


def _show_form(request: HttpRequest, form: WithdrawalForm, errors: list[str] | None = None) -> Any:
    return render(
        request,
        FORM_TEMPLATE,
        {"form": form, "errors": errors or [], "balance": balance_of(request.user)},
    )


def _show_quote(
    request: HttpRequest, form: WithdrawalForm, quote: WithdrawalQuote, notice: str = ""
) -> HttpResponse:
    token = secrets.token_urlsafe(16)
    request.session[_QUOTE_KEY] = token
    return render(
        request,
        QUOTE_TEMPLATE,
        {
            "form": form,
            "quote": quote,
            "quote_token": token,
            "notice": notice,
            "balance": balance_of(request.user),
        },
    )
