"""The seed document's ``create_deposit`` and ``payment_detail`` views, as a host project copies
them (``django_cfg.apps.payments`` replaced by ``payments``), run against our templates."""

from decimal import Decimal

from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render

from payments.models import Currency, Payment


@login_required
def create_deposit(request):
    """Create cryptocurrency deposit payment"""
    if request.method == "POST":
        amount = Decimal(request.POST["amount"])
        currency_code = request.POST["currency"]
        # Create payment directly using ORM
        payment = Payment.objects.create(
            user=request.user,
            amount_usd=amount,
            currency=Currency.objects.get(code=currency_code),
            description=f"Deposit by {request.user.username}",
        )
        return redirect("payment_detail", payment_id=payment.id)
    currencies = Currency.objects.filter(is_active=True)
    return render(request, "create_deposit.html", {"currencies": currencies})


@login_required
def payment_detail(request, payment_id):
    """Display payment details with QR code"""
    payment = Payment.objects.get(id=payment_id, user=request.user)
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
