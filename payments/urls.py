"""Routes of the payments app: the IPN webhook and the user API."""

from django.urls import include, path

from payments import webhooks

app_name = "payments"

urlpatterns = [
    path("webhooks/nowpayments/", webhooks.nowpayments_ipn, name="nowpayments-ipn"),
    path("api/", include("payments.api.urls")),
]
