"""A root URLconf that mounts the seed's two views where ours are, the rest as in the project."""

from django.urls import include, path

from tests.host_project.hostsite import views as seed_views

urlpatterns = [
    path("deposit/", seed_views.create_deposit, name="create_deposit"),
    path("deposits/<uuid:payment_id>/", seed_views.payment_detail, name="payment_detail"),
    path("payments/", include("payments.urls")),
    path("", include("payments.pages.urls")),
]
