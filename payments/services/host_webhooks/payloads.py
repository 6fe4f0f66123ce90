"""What an event tells the host of a payment or a withdrawal: ids, amounts as strings, status."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from payments.models import Payment, WithdrawalRequest

_PAYMENT_FIELDS = (
    "id",
    "internal_payment_id",
    "provider_payment_id",
    "user_id",
    "status",
    "currency__code",
    "amount_usd",
    "pay_amount",
    "actual_amount",
    "actual_amount_usd",
    "credited_usd",
    "transaction_hash",
    "review_reason",
    "created_at",
    "completed_at",
    "status_changed_at",
)
_WITHDRAWAL_FIELDS = (
    "id",
    "internal_withdrawal_id",
    "user_id",
    "status",
    "currency__code",
    "amount_usd",
    "network_fee_usd",
    "service_fee_usd",
    "wallet_address",
    "wallet_extra_id",
    "transaction_hash",
    "rejection_reason",
    "failure_reason",
    "provider_payout_id",
    "created_at",
    "approved_at",
    "completed_at",
    "rejected_at",
    "failed_at",
)


def amount(value: Decimal | None) -> str | None:
    """A Decimal as the host reads it: a plain string without trailing zeros beyond the cents
    ("25.00", "0.0125"), never a float; None stays None."""
    if value is None:
        return None
    text = format(value, "f")
    if "." in text:
        whole, _, fraction = text.partition(".")
        fraction = fraction.rstrip("0").ljust(2, "0")
        text = f"{whole}.{fraction}"
    return text


def _moment(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def payments_data(*, payment_ids: list[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
    """The event fields of each payment, read in one query as the caller's transaction sees
    them (after its change)."""
    rows = Payment._base_manager.filter(pk__in=payment_ids).values(*_PAYMENT_FIELDS)
    return {row["id"]: _payment(row) for row in rows}


def _payment(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "payment_id": str(row["id"]),
        "internal_payment_id": row["internal_payment_id"],
        "provider_payment_id": row["provider_payment_id"] or None,
        "user_id": row["user_id"],
        "status": row["status"],
        "currency": row["currency__code"],
        "amount_usd": amount(row["amount_usd"]),
        "pay_amount": amount(row["pay_amount"]),
        "actual_amount": amount(row["actual_amount"]),
        "actual_amount_usd": amount(row["actual_amount_usd"]),
        "credited_usd": amount(row["credited_usd"]),
        "transaction_hash": row["transaction_hash"] or None,
        "review_reason": row["review_reason"] or None,
        "created_at": _moment(row["created_at"]),
        "completed_at": _moment(row["completed_at"]),
        "status_changed_at": _moment(row["status_changed_at"]),
    }


def withdrawal_data(*, withdrawal_id: uuid.UUID) -> dict[str, Any]:
    """The event fields of a withdrawal, as the caller's transaction sees it."""
    row = WithdrawalRequest._base_manager.filter(pk=withdrawal_id).values(*_WITHDRAWAL_FIELDS)[0]
    fees = row["network_fee_usd"] + row["service_fee_usd"]
    reason = row["rejection_reason"] if row["status"] == "rejected" else row["failure_reason"]
    return {
        "withdrawal_id": str(row["id"]),
        "internal_withdrawal_id": row["internal_withdrawal_id"],
        "user_id": row["user_id"],
        "status": row["status"],
        "currency": row["currency__code"],
        "amount_usd": amount(row["amount_usd"]),
        "network_fee_usd": amount(row["network_fee_usd"]),
        "service_fee_usd": amount(row["service_fee_usd"]),
        "final_amount_usd": amount(row["amount_usd"] - fees),
        "wallet_address": row["wallet_address"],
        "wallet_extra_id": row["wallet_extra_id"] or None,
        "transaction_hash": row["transaction_hash"] or None,
        "provider_payout_id": row["provider_payout_id"] or None,
        "reason": reason or None,
        "created_at": _moment(row["created_at"]),
        "approved_at": _moment(row["approved_at"]),
        "completed_at": _moment(row["completed_at"]),
        "rejected_at": _moment(row["rejected_at"]),
        "failed_at": _moment(row["failed_at"]),
    }
