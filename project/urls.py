"""URL routes: the user pages at the root, the admin, the payments app (user API and
NowPayments IPN webhook)."""

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import include, path


def no_favicon(request: HttpRequest) -> HttpResponse:
    return HttpResponse(status=204)


urlpatterns = [
    # Browsers asking for a favicon get an empty answer instead of a "Not Found" warning per page.
    path("favicon.ico", no_favicon),
    path("admin/", admin.site.urls),
    path("payments/", include("payments.urls")),
    # The end users' pages (sign in, account, deposits, withdrawals), without a namespace.
    path("", include("payments.pages.urls")),
]
