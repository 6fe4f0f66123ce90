"""Routes of the user API, its OpenAPI schema and documentation pages; any other path under
it is a JSON 404."""

from django.urls import path, re_path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from payments.api import views, withdrawals
from payments.api.errors import not_found
from payments.api.schema import RedocView

router = SimpleRouter()
router.register("currencies", views.CurrencyViewSet, basename="currency")
router.register("payments", views.PaymentViewSet, basename="payment")
router.register("transactions", views.TransactionViewSet, basename="transaction")
router.register("withdrawals", withdrawals.WithdrawalViewSet, basename="withdrawal")

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="payments:api-docs", permanent=False)),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="payments:api-schema"), name="api-docs"),
    path("redoc/", RedocView.as_view(url_name="payments:api-schema"), name="api-redoc"),
    path("balance/", views.BalanceView.as_view(), name="balance"),
    *router.urls,
    re_path(r"^(?P<path>.*)$", not_found),
]
