"""URL routes: the admin, the payments app (user API and NowPayments IPN webhook)."""

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from django.views.generic import RedirectView


def no_favicon(request: HttpRequest) -> HttpResponse:
    return HttpResponse(status=204)


urlpatterns = [
    # No user pages yet: the root leads to the admin (not to a 404), and browsers asking for a
    # favicon get an empty answer instead of a "Not Found" warning per page.
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("favicon.ico", no_favicon),
    path("admin/", admin.site.urls),
    path("payments/", include("payments.urls")),
]
