"""The NowPayments IPN endpoint: verify, store, apply, answer fast."""

from __future__ import annotations

import hashlib
import json
import logging
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from payments.errors import PaymentsError
from payments.models import ProviderEvent
from payments.models.event import EventOutcome
from payments.services.deposits import payment_apply_report
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

    # One database transaction: the event is stored together with what it did, or not at all
    # (then NowPayments retries). A duplicate delivery finds the stored event and stops there.
    with transaction.atomic():
        event_id = _store(kind, object_id, status, body, signature)
        if event_id is None:
            return JsonResponse({"status": "duplicate"})
        if kind != "payment":
            outcome = EventOutcome.IGNORED
            _finish(event_id, outcome, "payout IPNs are applied by the payout poller")
            return JsonResponse({"status": "ok", "outcome": outcome})
        try:
            report = ProviderPayment.from_dict(payload)
            result = payment_apply_report(report=report, source="ipn")
        except PaymentsError as exc:
            # Recorded and acknowledged: a retry of the same body would fail the same way.
            _finish(event_id, EventOutcome.ERROR, f"{exc.code}: {exc.message}")
            logger.warning("IPN %s for payment %s not applied: %s", event_id, object_id, exc.code)
            return JsonResponse({"status": "error", "code": exc.code})
        _finish(event_id, result.outcome, "", payment_id=result.payment_id)
    return JsonResponse({"status": "ok", "outcome": result.outcome})


def _store(kind: str, object_id: str, status: str, body: bytes, signature: str) -> int | None:
    """Insert the event unless its body was seen before; return its id, or None if a duplicate."""
    dedupe_key = hashlib.sha256(body).hexdigest()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO payments_providerevent (provider, kind, dedupe_key, provider_object_id, "
            "provider_status, body, signature, outcome, detail, deliveries, received_at) "
            "VALUES ('nowpayments', %s, %s, %s, %s, %s, %s, %s, '', 1, %s) "
            "ON CONFLICT (dedupe_key) DO NOTHING RETURNING id",
            [
                kind,
                dedupe_key,
                object_id[:64],
                status[:32],
                body.decode("utf-8", errors="replace"),
                signature[:256],
                EventOutcome.RECEIVED,
                timezone.now(),
            ],
        )
        row = cursor.fetchone()
    if row is None:
        ProviderEvent.objects.filter(dedupe_key=dedupe_key).update(deliveries=F("deliveries") + 1)
        return None
    return int(row[0])


def _finish(event_id: int, outcome: str, detail: str, payment_id: object = None) -> None:
    ProviderEvent.objects.filter(pk=event_id).update(
        outcome=outcome, detail=detail[:500], processed_at=timezone.now(), payment_id=payment_id
    )


def _peer(request: HttpRequest) -> str:
    return str(request.META.get("REMOTE_ADDR", "?"))
