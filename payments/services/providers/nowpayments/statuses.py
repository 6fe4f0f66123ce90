"""NowPayments' own payment and payout status vocabulary (how ours follow it: deposits)."""

from __future__ import annotations

# Every payment status the API documents (spec §3.1); "canceled" is seen spelt both ways.
KNOWN_PAYMENT_STATUSES = frozenset(
    {
        "waiting",
        "confirming",
        "confirmed",
        "sending",
        "partially_paid",
        "finished",
        "failed",
        "refunded",
        "expired",
        "cancelled",
        "canceled",
        "wrong_asset_confirmed",
    }
)

# Statuses after which NowPayments does not move a payment on by itself. partially_paid is
# included because only a merchant's manual action moves it (spec §3.1).
FINAL_PAYMENT_STATUSES = frozenset(
    {"finished", "partially_paid", "failed", "refunded", "expired", "cancelled", "canceled"}
)

# Payout (withdrawal) statuses, upper-case as the API sends them.
FINAL_PAYOUT_STATUSES = frozenset({"FINISHED", "REJECTED", "CANCELLED", "FAILED"})
