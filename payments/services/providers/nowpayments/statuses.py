"""NowPayments payment and payout statuses, and how payment statuses map onto ours."""

from __future__ import annotations

from payments.errors import ProviderError


class UnknownProviderStatus(ProviderError):
    """NowPayments reported a status this client does not know; it refuses to guess."""

    code = "unknown_provider_status"

    def __init__(self, message: str = "", *, provider_status: str = "", **context: object) -> None:
        super().__init__(message, **context)
        self.provider_status = provider_status


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
}

# Statuses after which NowPayments does not move a payment on by itself. partially_paid is
# included because only a merchant's manual action moves it (spec §3.1).
FINAL_PAYMENT_STATUSES = frozenset(
    {"finished", "partially_paid", "failed", "refunded", "expired", "cancelled", "canceled"}
)

# Payout (withdrawal) statuses, upper-case as the API sends them.
FINAL_PAYOUT_STATUSES = frozenset({"FINISHED", "REJECTED", "CANCELLED", "FAILED"})


def map_payment_status(provider_status: str) -> str:
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
