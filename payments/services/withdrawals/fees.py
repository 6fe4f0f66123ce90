"""What a withdrawal costs: the network and service fees taken out of its amount."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from django.conf import settings

from payments.errors import ConfigurationError
from payments.money import is_cents


@dataclass(frozen=True)
class WithdrawalFees:
    network_fee_usd: Decimal
    service_fee_usd: Decimal

    @property
    def total_usd(self) -> Decimal:
        return self.network_fee_usd + self.service_fee_usd


def withdrawal_fees() -> WithdrawalFees:
    """The fees a new withdrawal pays, from PAYMENTS_WITHDRAWAL_*_FEE_USD (USD strings)."""
    return WithdrawalFees(
        network_fee_usd=_setting_usd("PAYMENTS_WITHDRAWAL_NETWORK_FEE_USD"),
        service_fee_usd=_setting_usd("PAYMENTS_WITHDRAWAL_SERVICE_FEE_USD"),
    )


def _setting_usd(name: str) -> Decimal:
    raw = str(getattr(settings, name, "0"))
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ConfigurationError(
            f"{name} must be a USD amount such as 1.50, not {raw!r}."
        ) from None
    if not is_cents(value) or value < 0:
        raise ConfigurationError(f"{name} must be a non-negative amount in whole cents.")
    return value
