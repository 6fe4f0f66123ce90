"""The sandbox's in-memory records: payments, invoices, payout batches, withdrawals, IPNs."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

# Payment statuses (spec 3.1) and the normal path through them.
WAITING = "waiting"
CONFIRMING = "confirming"
CONFIRMED = "confirmed"
SENDING = "sending"
FINISHED = "finished"
PARTIALLY_PAID = "partially_paid"
FAILED = "failed"
EXPIRED = "expired"
REFUNDED = "refunded"
CANCELLED = "cancelled"
# GUESS (not in the spec's status table): a deposit in another asset than ``pay_currency``
# arrived and was confirmed; it waits for the merchant ("wrong-asset deposits need manual
# handling unless auto-processing is enabled", spec 3.1 notes). Not final: the merchant
# processes it (-> finished in the deposited asset), refunds or cancels it.
WRONG_ASSET_CONFIRMED = "wrong_asset_confirmed"
PAYMENT_PATH = (WAITING, CONFIRMING, CONFIRMED, SENDING, FINISHED)
PAYMENT_STATUSES = (
    *PAYMENT_PATH,
    PARTIALLY_PAID,
    FAILED,
    EXPIRED,
    REFUNDED,
    CANCELLED,
    WRONG_ASSET_CONFIRMED,
)
PAYMENT_FINAL = frozenset({FINISHED, PARTIALLY_PAID, FAILED, EXPIRED, REFUNDED, CANCELLED})
PAYMENT_IN_FLIGHT = frozenset({CONFIRMING, CONFIRMED, SENDING})

# Payout (withdrawal) statuses, upper case as the API writes them (spec 3.2).
PAYOUT_PATH = ("CREATING", "WAITING", "PROCESSING", "SENDING", "FINISHED")
PAYOUT_STATUSES = (*PAYOUT_PATH, "FAILED", "REJECTED", "CANCELLED")
PAYOUT_FINAL = frozenset({"FINISHED", "REJECTED", "CANCELLED"})
PAYOUT_RELEASED = frozenset({"FAILED", "REJECTED", "CANCELLED"})  # not debited from the balance


@dataclass
class Payment:
    id: int
    status: str
    price_amount: Decimal
    price_currency: str
    pay_amount: Decimal
    pay_currency: str
    pay_address: str
    outcome_currency: str
    created_at: float
    updated_at: float
    valid_until: float
    expiration_estimate_date: float
    purchase_id: int
    actually_paid: Decimal = Decimal(0)
    order_id: str | None = None
    order_description: str | None = None
    ipn_callback_url: str | None = None
    invoice_id: int | None = None
    payin_extra_id: str | None = None
    payout_address: str | None = None
    payout_extra_id: str | None = None
    is_fixed_rate: bool = False
    is_fee_paid_by_user: bool = False
    case: str | None = None
    payin_hash: str | None = None
    payout_hash: str | None = None
    parent_payment_id: int | None = None
    origin_type: str | None = None
    redeposit_status: str | None = None  # final status a re-deposit child plays out to
    children: list[int] = field(default_factory=list)
    wrong_asset_currency: str | None = None  # a deposit in another asset (control wrong-asset)
    wrong_asset_amount: Decimal | None = None
    autoplay: bool = False  # status steps happen on the sandbox clock
    schedule_token: int = 0  # bumps whenever the pending automatic step is cancelled
    status_cache: tuple[int, str] | None = None  # (quirk generation, serialised status body)
    outcome_cache: Decimal | None = None

    def touch(self, at: float) -> None:
        """Record a change: bump updated_at and drop the cached derived values."""
        self.updated_at = at
        self.status_cache = None
        self.outcome_cache = None


@dataclass
class Invoice:
    id: int
    token_id: str
    price_amount: Decimal
    price_currency: str
    pay_currency: str | None
    order_id: str | None
    order_description: str | None
    ipn_callback_url: str | None
    success_url: str | None
    cancel_url: str | None
    partially_paid_url: str | None
    is_fixed_rate: bool
    is_fee_paid_by_user: bool
    created_at: float


@dataclass
class Withdrawal:
    id: int
    batch_id: int
    address: str
    currency: str
    amount: Decimal
    status: str
    created_at: float
    extra_id: str | None = None
    ipn_callback_url: str | None = None
    unique_external_id: str | None = None
    payout_description: str | None = None
    fiat_amount: Decimal | None = None
    fiat_currency: str | None = None
    hash: str | None = None
    error: str | None = None
    fee: Decimal | None = None
    requested_at: float | None = None
    updated_at: float | None = None


@dataclass
class Batch:
    id: int
    withdrawals: list[int]
    created_at: float
    verified: bool = False
    verify_attempts: int = 0


@dataclass
class IpnDelivery:
    id: int
    kind: str  # "payment" or "payout"
    object_id: int
    status: str
    url: str
    body: str
    signature: str
    payload: dict[str, Any]
    created_at: float
    attempts: int = 0
    responses: list[int | str] = field(default_factory=list)
    delivered: bool = False
    next_attempt_at: float | None = None

    def as_log(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "object_id": self.object_id,
            "status": self.status,
            "url": self.url,
            "body": self.body,
            "signature": self.signature,
            "attempts": self.attempts,
            "responses": list(self.responses),
            "delivered": self.delivered,
            "pending": self.next_attempt_at is not None,
        }
