"""The WithdrawalRequest aggregate: ``lifecycle`` is the only writer of its rows (provider fields
included) and the one home of its state machine; ``payouts`` drives NowPayments payouts through
the lifecycle only; ``operator`` is an operator's mark completed / failed (on the provider's
word where a payout exists); ``overrides`` the forced overrides two operators agree on;
``hashes`` the transaction hash formats; ``fees`` prices a withdrawal (fees, minimum, memo rule)
and quotes it before it is requested.
"""

from payments.errors import ExtraIdRequired, FeesExceedAmount
from payments.services.withdrawals.fees import (
    WithdrawalFees,
    WithdrawalQuote,
    withdrawal_fees,
    withdrawal_quote,
)
from payments.services.withdrawals.lifecycle import (
    APPROVE_PERMISSION,
    Confirmation,
    payout_may_exist,
    withdrawal_add_note,
    withdrawal_approve,
    withdrawal_cancel,
    withdrawal_complete,
    withdrawal_create,
    withdrawal_fail,
    withdrawal_mark_sending,
    withdrawal_reclaim_unsent,
    withdrawal_reject,
    withdrawal_start_processing,
    withdrawal_unmark_sending,
)
from payments.services.withdrawals.operator import (
    withdrawal_mark_completed,
    withdrawal_mark_failed,
)
from payments.services.withdrawals.overrides import (
    OVERRIDE_PERMISSION,
    pending_overrides,
    withdrawal_override_approve,
    withdrawal_override_refuse,
    withdrawal_override_request,
)
from payments.services.withdrawals.payouts import (
    PayoutPollResult,
    approved_withdrawal_ids,
    payout_find,
    payouts_enabled,
    payouts_poll,
    unsent_withdrawal_ids,
    withdrawal_payout_send,
)

__all__ = [
    "APPROVE_PERMISSION",
    "OVERRIDE_PERMISSION",
    "Confirmation",
    "ExtraIdRequired",
    "FeesExceedAmount",
    "PayoutPollResult",
    "WithdrawalFees",
    "WithdrawalQuote",
    "approved_withdrawal_ids",
    "payout_find",
    "payout_may_exist",
    "payouts_enabled",
    "payouts_poll",
    "pending_overrides",
    "unsent_withdrawal_ids",
    "withdrawal_add_note",
    "withdrawal_approve",
    "withdrawal_cancel",
    "withdrawal_complete",
    "withdrawal_create",
    "withdrawal_fail",
    "withdrawal_fees",
    "withdrawal_mark_completed",
    "withdrawal_mark_failed",
    "withdrawal_mark_sending",
    "withdrawal_override_approve",
    "withdrawal_override_refuse",
    "withdrawal_override_request",
    "withdrawal_payout_send",
    "withdrawal_quote",
    "withdrawal_reclaim_unsent",
    "withdrawal_reject",
    "withdrawal_start_processing",
    "withdrawal_unmark_sending",
]
