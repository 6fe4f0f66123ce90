"""The seed document's example views and DRF code, as a host project writes them."""

from decimal import Decimal

from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from rest_framework import serializers, viewsets

from payments.models import Currency, Payment, UserBalance


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


class PaymentSerializer(serializers.ModelSerializer):
    currency_name = serializers.CharField(source="currency.display_name", read_only=True)
    status_display = serializers.CharField(source="get_status_display", read_only=True)

    class Meta:
        model = Payment
        fields = [
            "id",
            "internal_payment_id",
            "amount_usd",
            "currency",
            "currency_name",
            "status",
            "status_display",
            "pay_address",
            "transaction_hash",
            "created_at",
            "completed_at",
        ]
        read_only_fields = ["internal_payment_id", "pay_address", "transaction_hash"]


class BalanceSerializer(serializers.ModelSerializer):
    class Meta:
        model = UserBalance
        fields = ["balance_usd", "total_deposited", "total_withdrawn", "last_transaction_at"]
        read_only_fields = ["__all__"]


class PaymentViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = PaymentSerializer

    def get_queryset(self):
        return Payment.objects.filter(user=self.request.user)
