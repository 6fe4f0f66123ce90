"""A host project's URLconf: the seed's two views and the payments app (its QR endpoint), none
of the user pages' names."""

from django.urls import include, path

from tests.host_project.hostsite import views as seed_views

urlpatterns = [
    path("deposit/", seed_views.create_deposit, name="create_deposit"),
    path("deposit/<uuid:payment_id>/", seed_views.payment_detail, name="payment_detail"),
    path("payments/", include("payments.urls")),
]
