"""The host project's routes: its own copies of the seed's views, and the payments app."""

from django.contrib import admin
from django.urls import include, path
from rest_framework.routers import DefaultRouter

from hostsite import views

router = DefaultRouter()
router.register("payments", views.PaymentViewSet, basename="payment")

urlpatterns = [
    path("admin/", admin.site.urls),
    path("deposit/", views.create_deposit, name="create_deposit"),
    path("deposit/<uuid:payment_id>/", views.payment_detail, name="payment_detail"),
    path("payments/", include("payments.urls")),
    path("api/", include(router.urls)),
]
