"""How NowPayments' payment statuses map onto ours (DESIGN.md §5)."""

from __future__ import annotations

from payments.errors import UnknownProviderStatus
from payments.models.payment import PaymentStatus

# NowPayments payment status -> our Payment status (DESIGN.md §5).
PAYMENT_STATUS_MAP: dict[str, str] = {
    "waiting": "pending",
    "confirming": "confirming",
    "confirmed": "confirmed",
    "sending": "confirmed",
    "partially_paid": "partially_paid",
    "finished": "completed",
    "failed": "failed",
    "refunded": "refunded",
    "expired": "expired",
    "cancelled": "cancelled",
    "canceled": "cancelled",
    # Another asset arrived (auto-processing off): an operator decides what it is worth.
    "wrong_asset_confirmed": "review",
}


def our_status(provider_status: str) -> str:
    """Our Payment status for a NowPayments payment status (case-insensitive).

    Raises ``UnknownProviderStatus`` for a status not in the map rather than guessing.
    """
    key = (provider_status or "").strip().lower()
    try:
        return PAYMENT_STATUS_MAP[key]
    except KeyError:
        raise UnknownProviderStatus(
            f"NowPayments reported an unknown payment status {provider_status!r}.",
            provider_status=provider_status,
        ) from None


def to_our_status(value: str) -> str:
    """One of our statuses for ``value``: ours as it is, or a NowPayments status name mapped.

    The seed's provider snippet assigns ``status_data['payment_status']`` (``waiting``,
    ``finished``, ...) to ``payment.status``; this is what makes that work for every status.
    """
    if value in PaymentStatus.values:
        return value
    return our_status(value)
