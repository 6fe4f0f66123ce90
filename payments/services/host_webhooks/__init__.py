"""Signed webhooks to the host application: the outbox of WebhookEvent rows and their deliveries.

- ``record``: events are written by the services that make the money change, in its database
  transaction (a change that rolls back leaves no event), once per cause (``dedupe_key``);
  one WebhookDelivery per active endpoint that wants the type, due at once;
- ``delivery``: a worker claims a due delivery, POSTs the exact body signed (``signing``),
  logs the attempt (WebhookAttempt) and retries with exponential backoff until a 2xx or the
  last attempt; the dispatch sweep (workers.webhooks_dispatch) sends what is due, including
  what a dead sender held, so no event is lost when a worker dies: delivery is at least once;
- ``endpoints``: checking and saving the host's endpoints (URL, secret, events).

Events: payment.credited (the deposit is posted), payment.in_review, payment.reversed (a
credited payment refunded, taken back), withdrawal.approved, .completed, .failed, .rejected.
"""

from payments.services.host_webhooks.delivery import (
    REDELIVER_PERMISSION,
    SendOutcome,
    webhook_deliveries_due,
    webhook_delivery_redeliver,
    webhook_delivery_send,
    webhook_retry_delay,
)
from payments.services.host_webhooks.endpoints import (
    webhook_endpoint_check,
    webhook_endpoint_save,
    webhook_secret_generate,
    webhook_secret_hint,
)
from payments.services.host_webhooks.record import (
    ANY_ACTIVE_COLUMN,
    NewEvent,
    webhook_event_record,
    webhook_events_record,
    webhook_payments_record,
    webhook_withdrawal_record,
)
from payments.services.host_webhooks.signing import (
    REPLAY_WINDOW_SECONDS,
    webhook_body,
    webhook_headers,
    webhook_signature,
)

__all__ = [
    "ANY_ACTIVE_COLUMN",
    "REDELIVER_PERMISSION",
    "REPLAY_WINDOW_SECONDS",
    "NewEvent",
    "SendOutcome",
    "webhook_body",
    "webhook_deliveries_due",
    "webhook_delivery_redeliver",
    "webhook_delivery_send",
    "webhook_endpoint_check",
    "webhook_endpoint_save",
    "webhook_event_record",
    "webhook_events_record",
    "webhook_headers",
    "webhook_payments_record",
    "webhook_retry_delay",
    "webhook_secret_generate",
    "webhook_secret_hint",
    "webhook_signature",
    "webhook_withdrawal_record",
]
