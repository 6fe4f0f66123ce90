"""URL routes: the admin, the payments app (user API and NowPayments IPN webhook)."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("payments/", include("payments.urls")),
]
