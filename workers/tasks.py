"""Celery tasks: each takes ids, calls one payments service, retries only when NowPayments is down.

Queues: ``provider`` (calls to NowPayments for deposits), ``settlement`` (ledger writes),
``payouts`` (sending and following withdrawals), ``default`` (reconciliation, e-mails, webhooks
to the host application). Periodic tasks run under a lease, so a task never overlaps itself
and two beat processes cause one run per tick.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from celery import shared_task

from payments.errors import ProviderUnavailable
from payments.services import (
    currencies,
    deposits,
    events,
    events_drain,
    host_webhooks,
    idempotency,
    notifications,
    reconcile,
    reconcile_provider,
    withdrawals,
)
from workers.leases import run_periodic
from workers.schedules import interval_of

logger = logging.getLogger(__name__)

SETTLE_BATCH = 200
# Retry only the provider's retryable error, with exponential backoff and jitter.
PROVIDER_RETRY: dict[str, Any] = {
    "autoretry_for": (ProviderUnavailable,),
    "retry_backoff": 5,
    "retry_backoff_max": 300,
    "retry_jitter": True,
    "max_retries": 5,
}


def _periodic(
    task_name: str, job: Callable[[], dict[str, Any]], max_runtime: float
) -> dict[str, Any]:
    # 80% of the configured interval: a second beat's copy of the same tick is skipped, the
    # next tick is not, whatever interval an operator sets.
    min_interval = interval_of(task_name) * 0.8
    return run_periodic(task_name, job, min_interval=min_interval, max_runtime=max_runtime)


# --- deposits ------------------------------------------------------------------------------


@shared_task(name="workers.payment_register")
def payment_register_task(*, payment_id: str) -> str | None:
    """Create at NowPayments a payment made through the ORM (the seed's way)."""
    payment = deposits.payment_register(payment_id=uuid.UUID(payment_id))
    return payment.provider_payment_id


@shared_task(name="workers.payments_register_sweep")
def payments_register_sweep_task() -> dict[str, Any]:
    def job() -> dict[str, Any]:
        ids = deposits.payments_awaiting_registration()
        for payment_id in ids:
            payment_register_task.delay(payment_id=str(payment_id))
        return {"enqueued": len(ids)}

    return _periodic("workers.payments_register_sweep", job, max_runtime=120)


@shared_task(name="workers.payments_poll", **PROVIDER_RETRY)
def payments_poll_task() -> dict[str, Any]:
    return _periodic(
        "workers.payments_poll", lambda: deposits.payments_poll().as_dict(), max_runtime=300
    )


@shared_task(name="workers.payment_refresh", **PROVIDER_RETRY)
def payment_refresh_task(*, payment_id: str) -> str:
    return deposits.payment_refresh(payment_id=uuid.UUID(payment_id)).outcome


@shared_task(name="workers.payments_expire", **PROVIDER_RETRY)
def payments_expire_task() -> dict[str, Any]:
    return _periodic("workers.payments_expire", deposits.payments_expire, max_runtime=300)


# --- settlement ----------------------------------------------------------------------------


@shared_task(name="workers.payment_settle")
def payment_settle_task(*, payment_id: str) -> int | None:
    txn = deposits.payment_settle(payment_id=uuid.UUID(payment_id))
    return txn.pk if txn is not None else None


@shared_task(name="workers.payments_settle_batch")
def payments_settle_batch_task(*, payment_ids: list[str]) -> int:
    return deposits.payments_settle_many(payment_ids=[uuid.UUID(p) for p in payment_ids])


@shared_task(name="workers.payments_settle_sweep")
def payments_settle_sweep_task() -> dict[str, Any]:
    """The safety net: apply the stored IPNs a lost drain left, then settle what is unsettled."""

    def job() -> dict[str, Any]:
        drained = _drain_events()
        ids = [str(p) for p in deposits.unsettled_payment_ids()]
        for start in range(0, len(ids), SETTLE_BATCH):
            payments_settle_batch_task.delay(payment_ids=ids[start : start + SETTLE_BATCH])
        return {"unsettled": len(ids), "events": drained}

    return _periodic("workers.payments_settle_sweep", job, max_runtime=120)


@shared_task(name="workers.events_drain")
def events_drain_task() -> dict[str, Any]:
    """Apply the stored IPNs not applied yet, in batches (the webhook asks for a drain per IPN;
    concurrent drains take disjoint batches, and one finding nothing left costs one query)."""
    return _drain_events()


@shared_task(name="workers.event_apply")
def event_apply_task(*, event_id: int) -> str:
    """Apply one stored IPN again: NowPayments redelivered one whose apply had failed."""
    return events.event_apply(event_id=event_id).outcome


def _drain_events() -> dict[str, Any]:
    result = events_drain.events_drain()
    for payment_id in result.missing_hash:
        payment_refresh_task.delay(payment_id=str(payment_id))
    return result.as_dict()


# --- payouts -------------------------------------------------------------------------------


@shared_task(name="workers.withdrawal_payout_send")
def withdrawal_payout_send_task(*, withdrawal_id: str) -> str:
    """Pay out one approved withdrawal through NowPayments (never retried: not idempotent at
    the provider; the payout sweep looks an unanswered one up instead, and sends again one
    whose claim never reached the call)."""
    return withdrawals.withdrawal_payout_send(withdrawal_id=uuid.UUID(withdrawal_id)).status


@shared_task(name="workers.withdrawals_payout_sweep")
def withdrawals_payout_sweep_task() -> dict[str, Any]:
    def job() -> dict[str, Any]:
        if not withdrawals.payouts_enabled():
            return {"enabled": False}
        # Approved ones, and claimed ones whose worker never got to send them.
        sent = withdrawals.approved_withdrawal_ids() + withdrawals.unsent_withdrawal_ids()
        for withdrawal_id in sent:
            withdrawal_payout_send_task.delay(withdrawal_id=str(withdrawal_id))
        return {"enabled": True, "sent": len(sent), **withdrawals.payouts_poll().as_dict()}

    return _periodic("workers.withdrawals_payout_sweep", job, max_runtime=300)


# --- housekeeping --------------------------------------------------------------------------


@shared_task(name="workers.idempotency_expire")
def idempotency_expire_task() -> dict[str, Any]:
    """Forget the API's Idempotency-Key records older than PAYMENTS_IDEMPOTENCY_TTL_HOURS."""

    def job() -> dict[str, Any]:
        return {"deleted": idempotency.idempotency_keys_expire()}

    return _periodic("workers.idempotency_expire", job, max_runtime=300)


@shared_task(name="workers.currencies_sync", **PROVIDER_RETRY)
def currencies_sync_task() -> dict[str, Any]:
    def job() -> dict[str, Any]:
        result = currencies.currencies_sync()
        return {"summary": result.summary()}

    return _periodic("workers.currencies_sync", job, max_runtime=300)


@shared_task(name="workers.ledger_reconcile")
def ledger_reconcile_task() -> dict[str, Any]:
    return _periodic("workers.ledger_reconcile", reconcile.ledger_reconcile, max_runtime=1800)


@shared_task(name="workers.provider_reconcile", **PROVIDER_RETRY)
def provider_reconcile_task() -> dict[str, Any]:
    """Check settled payments and paid-out withdrawals against NowPayments' own records."""
    return _periodic(
        "workers.provider_reconcile", reconcile_provider.provider_reconcile, max_runtime=300
    )


# --- notifications -------------------------------------------------------------------------


@shared_task(name="workers.notifications_sweep")
def notifications_sweep_task() -> dict[str, Any]:
    """Record the operators' new events as notifications, and send each one by its own task."""

    def job() -> dict[str, Any]:
        result = notifications.notifications_sweep()
        for notification_id in result.to_send:
            notification_send_task.delay(notification_id=notification_id)
        return result.as_dict()

    return _periodic("workers.notifications_sweep", job, max_runtime=120)


@shared_task(
    name="workers.notification_send",
    autoretry_for=notifications.SMTP_ERRORS,
    retry_backoff=30,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=5,
)
def notification_send_task(*, notification_id: int) -> str:
    """E-mail one notification once; SMTP and network errors are retried with backoff (the
    sweep sends a row still unsent again later)."""
    return notifications.notification_send(notification_id=notification_id).value


# --- webhooks to the host application ------------------------------------------------------

WEBHOOK_DISPATCH_BATCH = 500
# A send task not started within this long is dropped (the next dispatch sends the delivery
# again), so a backed-up queue never piles up copies of the same delivery.
WEBHOOK_SEND_EXPIRES = 60


@shared_task(name="workers.webhooks_dispatch")
def webhooks_dispatch_task() -> dict[str, Any]:
    """Send every due delivery by its own task: new ones, retries whose backoff is over, and
    those a dead sender held (its claim expired), so no event is lost when a worker dies."""

    def job() -> dict[str, Any]:
        ids = host_webhooks.webhook_deliveries_due(limit=WEBHOOK_DISPATCH_BATCH)
        for delivery_id in ids:
            webhook_send_task.apply_async(
                kwargs={"delivery_id": delivery_id}, expires=WEBHOOK_SEND_EXPIRES
            )
        return {"enqueued": len(ids)}

    return _periodic("workers.webhooks_dispatch", job, max_runtime=60)


@shared_task(name="workers.webhook_send")
def webhook_send_task(*, delivery_id: int) -> str:
    """POST one delivery once (never retried here: its backoff lives in the row)."""
    return host_webhooks.webhook_delivery_send(delivery_id=delivery_id).value
