"""Which queue each task runs on: named here once, read by the Celery app and the schedules.

provider: calls to NowPayments for deposits; settlement: ledger writes, stored IPNs applied
included; payouts: sending and following withdrawals; default: reconciliation, operator
e-mails and webhooks to the host application. Each queue can have workers of its own, on
hosts of their own (README, "Across several hosts").
"""

from __future__ import annotations

PROVIDER = "provider"
SETTLEMENT = "settlement"
PAYOUTS = "payouts"
DEFAULT = "default"

TASK_QUEUES: dict[str, str] = {
    "workers.payment_register": PROVIDER,
    "workers.payments_register_sweep": PROVIDER,
    "workers.payments_poll": PROVIDER,
    "workers.payment_refresh": PROVIDER,
    "workers.payments_expire": PROVIDER,
    "workers.currencies_sync": PROVIDER,
    "workers.payment_settle": SETTLEMENT,
    "workers.payments_settle_batch": SETTLEMENT,
    "workers.payments_settle_sweep": SETTLEMENT,
    "workers.events_drain": SETTLEMENT,
    "workers.event_apply": SETTLEMENT,
    "workers.withdrawal_payout_send": PAYOUTS,
    "workers.withdrawals_payout_sweep": PAYOUTS,
    "workers.ledger_reconcile": DEFAULT,
    "workers.provider_reconcile": DEFAULT,
    "workers.notifications_sweep": DEFAULT,
    "workers.notification_send": DEFAULT,
    "workers.webhooks_dispatch": DEFAULT,
    "workers.webhook_send": DEFAULT,
    "workers.idempotency_expire": DEFAULT,
}


def queue_of(task_name: str) -> str:
    return TASK_QUEUES.get(task_name, DEFAULT)


def task_routes() -> dict[str, dict[str, str]]:
    return {name: {"queue": queue} for name, queue in TASK_QUEUES.items()}
