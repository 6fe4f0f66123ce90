"""The NowPayments IPN endpoint: verify, store, apply, answer fast."""

from __future__ import annotations

import hashlib
import json
import logging
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from payments.errors import PaymentsError
from payments.models import ProviderEvent
from payments.models.event import EventOutcome
from payments.services.payments import payment_apply_report
from payments.services.providers.nowpayments.signature import verify_ipn
from payments.services.providers.nowpayments.types import ProviderPayment

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "HTTP_X_NOWPAYMENTS_SIG"
MAX_BODY_BYTES = 64 * 1024


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"code": code, "message": message}, status=status)


@csrf_exempt
@require_POST
def nowpayments_ipn(request: HttpRequest) -> JsonResponse:
    secret = settings.NOWPAYMENTS_IPN_SECRET
    if not secret:
        logger.error("IPN received but NOWPAYMENTS_IPN_SECRET is not set; refused")
        return _error(503, "ipn_not_configured", "IPN verification is not configured.")
    body = request.body
    if len(body) > MAX_BODY_BYTES:
        return _error(413, "body_too_large", "The IPN body is larger than any NowPayments IPN.")
    signature = request.META.get(SIGNATURE_HEADER, "")
    if not signature:
        logger.warning("IPN without x-nowpayments-sig from %s refused", _peer(request))
        return _error(401, "missing_signature", "The x-nowpayments-sig header is missing.")
    if not verify_ipn(body, signature, secret):
        logger.warning("IPN with a bad signature from %s refused", _peer(request))
        return _error(401, "invalid_signature", "The IPN signature does not match its body.")

    payload = json.loads(body, parse_float=Decimal)
    if not isinstance(payload, dict):
        return _error(400, "invalid_body", "The IPN body is not a JSON object.")
    if "payment_id" not in payload:
        kind, object_id, status = (
            "payout",
            str(payload.get("id", "")),
            str(payload.get("status", "")),
        )
    else:
        kind = "payment"
        object_id, status = str(payload["payment_id"]), str(payload.get("payment_status", ""))

    event, created = _store(kind, object_id, status, body, signature)
    if not created:
        return JsonResponse({"status": "duplicate", "outcome": event.outcome})
    if kind != "payment":
        _finish(event, EventOutcome.IGNORED, "payout IPNs are applied by the payout poller")
        return JsonResponse({"status": "ok", "outcome": event.outcome})
    try:
        report = ProviderPayment.from_dict(payload)
        result = payment_apply_report(report=report, source="ipn")
    except PaymentsError as exc:
        _finish(event, EventOutcome.ERROR, f"{exc.code}: {exc.message}")
        logger.warning("IPN %s for payment %s not applied: %s", event.pk, object_id, exc.code)
        # Acknowledge: a retry of the same body would fail the same way.
        return JsonResponse({"status": "error", "code": exc.code})
    except Exception:
        # Let NowPayments retry later; forget this delivery so the retry is processed.
        ProviderEvent.objects.filter(pk=event.pk).delete()
        raise
    _finish(event, result.outcome, "", payment_id=result.payment_id)
    return JsonResponse({"status": "ok", "outcome": result.outcome})


def _store(
    kind: str, object_id: str, status: str, body: bytes, signature: str
) -> tuple[ProviderEvent, bool]:
    dedupe_key = hashlib.sha256(body).hexdigest()
    try:
        with transaction.atomic():
            event = ProviderEvent.objects.create(
                kind=kind,
                dedupe_key=dedupe_key,
                provider_object_id=object_id[:64],
                provider_status=status[:32],
                body=body.decode("utf-8", errors="replace"),
                signature=signature[:256],
            )
        return event, True
    except IntegrityError:
        ProviderEvent.objects.filter(dedupe_key=dedupe_key).update(deliveries=F("deliveries") + 1)
        return ProviderEvent.objects.get(dedupe_key=dedupe_key), False


def _finish(event: ProviderEvent, outcome: str, detail: str, payment_id: object = None) -> None:
    event.outcome = outcome
    event.detail = detail[:500]
    event.processed_at = timezone.now()
    event.payment_id = payment_id  # type: ignore[assignment]
    event.save(update_fields=["outcome", "detail", "processed_at", "payment"])


def _peer(request: HttpRequest) -> str:
    return str(request.META.get("REMOTE_ADDR", "?"))
