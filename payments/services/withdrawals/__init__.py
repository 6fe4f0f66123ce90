"""The WithdrawalRequest aggregate: ``lifecycle`` is the only writer of its rows (provider fields
included) and the one home of its state machine; ``payouts`` drives NowPayments payouts through
the lifecycle only; ``fees`` prices a withdrawal.
"""

from payments.services.withdrawals.fees import WithdrawalFees, withdrawal_fees
from payments.services.withdrawals.lifecycle import (
    APPROVE_PERMISSION,
    withdrawal_approve,
    withdrawal_cancel,
    withdrawal_complete,
    withdrawal_create,
    withdrawal_fail,
    withdrawal_reject,
    withdrawal_start_processing,
)
from payments.services.withdrawals.payouts import (
    PayoutPollResult,
    approved_withdrawal_ids,
    payouts_enabled,
    payouts_poll,
    withdrawal_payout_send,
)

__all__ = [
    "APPROVE_PERMISSION",
    "PayoutPollResult",
    "WithdrawalFees",
    "approved_withdrawal_ids",
    "payouts_enabled",
    "payouts_poll",
    "withdrawal_approve",
    "withdrawal_cancel",
    "withdrawal_complete",
    "withdrawal_create",
    "withdrawal_fail",
    "withdrawal_fees",
    "withdrawal_payout_send",
    "withdrawal_reject",
    "withdrawal_start_processing",
]
