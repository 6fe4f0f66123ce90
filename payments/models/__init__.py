"""The five models of the payments app (plus the IPN event log and reconciliation reports)."""

from payments.models.balance import UserBalance
from payments.models.currency import Currency
from payments.models.event import ProviderEvent
from payments.models.ops import LedgerDrift, PeriodicRun
from payments.models.payment import Payment
from payments.models.transaction import Transaction
from payments.models.withdrawal import WithdrawalRequest

__all__ = [
    "Currency",
    "LedgerDrift",
    "Payment",
    "PeriodicRun",
    "ProviderEvent",
    "Transaction",
    "UserBalance",
    "WithdrawalRequest",
]
