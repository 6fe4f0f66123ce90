"""The five models of the payments app (plus the IPN event log and reconciliation reports)."""

from payments.models.api_access import ApiKey, IdempotencyRecord
from payments.models.balance import UserBalance
from payments.models.currency import Currency
from payments.models.event import ProviderEvent
from payments.models.manual import ManualAdjustment
from payments.models.notification import Notification
from payments.models.ops import LedgerDrift, PeriodicRun
from payments.models.payment import Payment
from payments.models.receivable import Receivable
from payments.models.resolution import PaymentResolution
from payments.models.settlement import SettlementDue
from payments.models.transaction import Transaction
from payments.models.webhook import (
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from payments.models.withdrawal import WithdrawalRequest

__all__ = [
    "ApiKey",
    "Currency",
    "IdempotencyRecord",
    "LedgerDrift",
    "ManualAdjustment",
    "Notification",
    "Payment",
    "PaymentResolution",
    "PeriodicRun",
    "ProviderEvent",
    "Receivable",
    "SettlementDue",
    "Transaction",
    "UserBalance",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookEvent",
    "WithdrawalRequest",
]
