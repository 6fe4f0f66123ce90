"""The NowPayments IPN endpoint: verify, commit the raw event, then have it applied; answer fast.

The order matters (dj-stripe's model): nothing is stored before the signature is verified; the
verified event is committed on its own before it is applied, so an error while applying can
never lose it; applying is recorded on the event and safe to repeat.

``PAYMENTS_IPN_APPLY`` says who applies it. ``worker`` (the default): the view stores the event
and asks a worker to drain the stored events (``payments.services.events_drain``: batches,
``FOR UPDATE SKIP LOCKED``); the settle sweep on beat drains whatever a lost task left, and a
redelivery of an event whose apply failed is applied again by a worker. ``inline``: the view
applies the event itself before answering (one payment per request; no worker needed for it).

Answers: 401 for a missing or bad signature, 400 for a body that is not a JSON object (it has
no canonical form, so no signature can cover it), 200 for every verified IPN we have stored:
``received`` (worker) or what applying it did (inline), a domain error included (retrying the
same body would fail the same way; the error is recorded on the event). Inline, an unexpected
exception while applying is recorded on the stored event and re-raised, so Django answers 500
through its ordinary error handling and NowPayments delivers the IPN again; the redelivery, or
``manage.py reprocess_events``, applies the stored event exactly once.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from payments.errors import InvalidEventBody
from payments.models import Payment
from payments.models.event import EventOutcome
from payments.models.payment import PaymentStatus
from payments.services.events import (
    KIND_PAYMENT,
    KIND_PAYOUT,
    UNFINISHED_OUTCOMES,
    event_apply,
    event_dedupe_key,
    event_parse,
    event_receive,
)
from payments.services.events_drain import drain_wanted
from payments.services.providers.nowpayments.signature import verified_canonical_body

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "HTTP_X_NOWPAYMENTS_SIG"
MAX_BODY_BYTES = 64 * 1024
# A drain request not started within this long is dropped: a later one, or the settle sweep on
# beat, drains the events it was for.
DRAIN_EXPIRES = 60
# Statuses in which no transaction to the pay address exists yet (or ever will).
_NO_MONEY_YET = (
    PaymentStatus.PENDING,
    PaymentStatus.EXPIRED,
    PaymentStatus.CANCELLED,
    PaymentStatus.FAILED,
)


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"code": code, "message": message}, status=status)


@csrf_exempt
@require_POST
@transaction.non_atomic_requests  # the event must commit on its own, before it is applied
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
    try:
        payload = event_parse(body=body)
    except InvalidEventBody as exc:
        logger.warning("IPN with an unreadable body from %s refused", _peer(request))
        return _error(400, exc.code, exc.message)
    canonical = verified_canonical_body(payload, signature, secret)
    if canonical is None:
        logger.warning("IPN with a bad signature from %s refused", _peer(request))
        return _error(401, "invalid_signature", "The IPN signature does not match its body.")

    kind, object_id, status = _describe(payload)
    try:
        stored = event_receive(
            kind=kind,
            object_id=object_id,
            status=status,
            body=body,
            signature=signature,
            dedupe_key=event_dedupe_key(payload=payload, canonical=canonical),
        )
    except InvalidEventBody as exc:
        return _error(400, exc.code, exc.message)
    # Committed. Have it applied: a first delivery, or a redelivery of one not yet applied (an
    # earlier attempt failed or is still running: the event's row lock makes it wait, then
    # see it done).
    if settings.PAYMENTS_IPN_APPLY != "inline":
        return _hand_to_workers(stored.event_id, stored.created, stored.outcome)
    result = event_apply(event_id=stored.event_id)
    if result.repeated:
        return JsonResponse({"status": "duplicate"})
    if result.outcome == EventOutcome.ERROR:
        return JsonResponse({"status": "error", "code": result.code})
    if kind == KIND_PAYMENT:
        _fetch_missing_hash(object_id)
    return JsonResponse({"status": "ok", "outcome": result.outcome})


def _hand_to_workers(event_id: int, created: bool, outcome: str) -> JsonResponse:
    """Ask a worker to apply the stored event: a drain for a received one (unless one is pending
    already), a task of its own for a redelivery of one whose apply failed (NowPayments' retry,
    as inline). The event is committed: should the broker be unreachable, the IPN is still
    acknowledged, and the settle sweep applies it once the workers run again."""
    from workers.tasks import event_apply_task, events_drain_task

    if outcome not in UNFINISHED_OUTCOMES:
        return JsonResponse({"status": "duplicate"})
    try:
        if outcome == EventOutcome.ERROR:
            event_apply_task.apply_async(kwargs={"event_id": event_id}, retry=False)
        elif drain_wanted():
            events_drain_task.apply_async(expires=DRAIN_EXPIRES, retry=False)
    except Exception:  # noqa: BLE001 - stored and committed: the sweep applies it
        logger.warning("IPN event id=%s stored; no worker could be asked to apply it", event_id)
    return JsonResponse({"status": "received" if created else "duplicate"})


def _fetch_missing_hash(provider_payment_id: str) -> None:
    """NowPayments' IPN carries no payin_hash: once money is seen on a payment that has no
    transaction hash yet, a worker reads its status, which has one (the explorer link)."""
    from workers.tasks import payment_refresh_task

    payment_id = (
        Payment.objects.filter(provider_payment_id=provider_payment_id, transaction_hash="")
        .exclude(status__in=_NO_MONEY_YET)
        .values_list("pk", flat=True)
        .first()
    )
    if payment_id is not None:
        payment_refresh_task.delay(payment_id=str(payment_id))


def _describe(payload: dict[str, Any]) -> tuple[str, str, str]:
    """(kind, provider object id, provider status) of a verified IPN."""
    if "payment_id" in payload:
        return KIND_PAYMENT, str(payload["payment_id"]), str(payload.get("payment_status", ""))
    return KIND_PAYOUT, str(payload.get("id", "")), str(payload.get("status", ""))


def _peer(request: HttpRequest) -> str:
    return str(request.META.get("REMOTE_ADDR", "?"))
