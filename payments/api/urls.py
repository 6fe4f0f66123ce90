"""Routes of the user API."""

from django.urls import include, path
from rest_framework.routers import DefaultRouter

from payments.api import views

router = DefaultRouter()
router.register("currencies", views.CurrencyViewSet, basename="currency")
router.register("payments", views.PaymentViewSet, basename="payment")
router.register("transactions", views.TransactionViewSet, basename="transaction")
router.register("withdrawals", views.WithdrawalViewSet, basename="withdrawal")

urlpatterns = [
    path("balance/", views.BalanceView.as_view(), name="balance"),
    path("", include(router.urls)),
]
