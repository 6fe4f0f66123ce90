"""Routes of the payments app: the IPN webhook, the user API and payments' QR codes."""

from django.urls import include, path

from payments import qr, webhooks

app_name = "payments"

urlpatterns = [
    path("webhooks/nowpayments/", webhooks.nowpayments_ipn, name="nowpayments-ipn"),
    path("api/", include("payments.api.urls")),
    path("qr/<uuid:payment_id>.<str:fmt>", qr.payment_qr, name="payment-qr"),
]
