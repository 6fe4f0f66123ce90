"""URL routes: the admin, the user API and the NowPayments IPN webhook."""

from django.contrib import admin
from django.urls import path

urlpatterns = [
    path("admin/", admin.site.urls),
]
