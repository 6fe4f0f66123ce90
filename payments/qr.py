"""QR codes of payments, drawn here (segno) and served to their owner: no address leaves us."""

from __future__ import annotations

import hashlib
import io
import re
import uuid
from functools import lru_cache

import segno
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404
from django.utils.cache import get_conditional_response, patch_cache_control
from django.views.decorators.http import require_safe

from payments.errors import InvalidQrSize
from payments.models import Payment
from payments.models.payment import QR_DEFAULT_SIZE, QR_MAX_SIZE, QR_MIN_SIZE

CONTENT_TYPES = {"png": "image/png", "svg": "image/svg+xml"}
# A payment's address and amount do not change once it has them: browsers may keep the image.
MAX_AGE = 3600
QUIET_ZONE = 4  # modules of white around the code, as the standard asks
_SIZE = re.compile(r"[0-9]{1,4}")


@lru_cache(maxsize=256)
def render_qr(data: str, *, size: int, fmt: str) -> bytes:
    """The QR code of ``data`` at most ``size`` pixels square (PNG: whole pixels per module;
    SVG: exactly ``size``), with the standard quiet zone."""
    code = segno.make(data, error="m", micro=False)
    modules = code.symbol_size(scale=1, border=QUIET_ZONE)[0]
    out = io.BytesIO()
    if fmt == "svg":
        code.save(
            out,
            kind="svg",
            scale=size / modules,
            border=QUIET_ZONE,
            xmldecl=False,
            title="Payment QR code",
        )
    else:
        code.save(out, kind="png", scale=max(1, size // modules), border=QUIET_ZONE)
    return out.getvalue()


def _size(request: HttpRequest) -> int:
    raw = request.GET.get("size")
    if raw is None:
        return QR_DEFAULT_SIZE
    if not _SIZE.fullmatch(raw) or not QR_MIN_SIZE <= int(raw) <= QR_MAX_SIZE:
        raise InvalidQrSize(
            f"size must be a whole number of pixels from {QR_MIN_SIZE} to {QR_MAX_SIZE}."
        )
    return int(raw)


@require_safe
@login_required
def payment_qr(request: HttpRequest, payment_id: uuid.UUID, fmt: str) -> HttpResponse:
    """``GET qr/<id>.png|svg?size=N``: the payment's QR code, for its owner (and staff who may
    view payments); anyone else gets 404, as for a payment that does not exist."""
    if fmt not in CONTENT_TYPES:
        raise Http404("No such image format.")
    try:
        size = _size(request)
    except InvalidQrSize as exc:
        return JsonResponse(exc.as_dict(), status=exc.status_code)
    payment = get_object_or_404(Payment.objects.select_related("currency"), pk=payment_id)
    if payment.user_id != request.user.pk and not request.user.has_perm("payments.view_payment"):
        raise Http404("No such payment.")
    data = payment.qr_data
    if data is None:
        raise Http404("This payment has no address yet.")
    digest = hashlib.sha256(f"{fmt}\n{size}\n{data}".encode()).hexdigest()[:32]
    etag = f'"{digest}"'
    response = get_conditional_response(request, etag=etag)
    if response is None:
        response = HttpResponse(
            render_qr(data, size=size, fmt=fmt), content_type=CONTENT_TYPES[fmt]
        )
    response["ETag"] = etag
    response["X-Content-Type-Options"] = "nosniff"
    patch_cache_control(response, private=True, max_age=MAX_AGE)
    return response
