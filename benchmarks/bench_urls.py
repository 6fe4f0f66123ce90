"""The product's URLs plus one trivial view: the floor under the IPN endpoint (ipn_load.py)."""

from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from project.urls import urlpatterns as product_urlpatterns

TRIVIAL_PATH = "bench/trivial/"


@csrf_exempt
@require_POST
def trivial(request: HttpRequest) -> JsonResponse:
    """Read the body and answer a small JSON object: no database, no signature."""
    return JsonResponse({"status": "ok", "bytes": len(request.body)})


urlpatterns = [path(TRIVIAL_PATH, trivial), *product_urlpatterns]
