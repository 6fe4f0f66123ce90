"""The account page: balance, ledger history (newest first, 20 a page), recent deposits and
withdrawals."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from payments.models import Payment, Transaction, WithdrawalRequest
from payments.pages.auth import signed_in_user_id
from payments.pages.formatting import balance_of

HISTORY_PAGE_SIZE = 20
RECENT = 5


@login_required
@require_http_methods(["GET"])
def account(request: HttpRequest) -> HttpResponse:
    user_id = signed_in_user_id(request)
    history = Transaction.objects.filter(user_id=user_id).order_by("-sequence")
    page = Paginator(history, HISTORY_PAGE_SIZE).get_page(request.GET.get("page"))
    deposits = Payment.objects.filter(user_id=user_id).select_related("currency")
    withdrawals = WithdrawalRequest.objects.filter(user_id=user_id).select_related("currency")
    return render(
        request,
        "payments/pages/account.html",
        {
            "balance": balance_of(request.user),
            "page": page,
            "deposits": deposits.order_by("-created_at")[:RECENT],
            "withdrawals": withdrawals.order_by("-created_at")[:RECENT],
        },
    )
