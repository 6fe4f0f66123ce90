"""NowPayments integration: the HTTP client, its config and its typed results (no ORM here)."""

from payments.services.providers.nowpayments.config import NowPaymentsConfig
from payments.services.providers.nowpayments.provider import NowPaymentsProvider
from payments.services.providers.nowpayments.types import (
    ApiStatus,
    Balance,
    Estimate,
    FullCurrency,
    Invoice,
    MinAmount,
    PaymentFee,
    PaymentPage,
    PayoutBatch,
    PayoutFee,
    PayoutMinAmount,
    PayoutRequest,
    PayoutWithdrawal,
    ProviderPayment,
    parse_withdrawals,
)

__all__ = [
    "ApiStatus",
    "Balance",
    "Estimate",
    "FullCurrency",
    "Invoice",
    "MinAmount",
    "NowPaymentsConfig",
    "NowPaymentsProvider",
    "PaymentFee",
    "PaymentPage",
    "PayoutBatch",
    "PayoutFee",
    "PayoutMinAmount",
    "PayoutRequest",
    "PayoutWithdrawal",
    "ProviderPayment",
    "parse_withdrawals",
]
