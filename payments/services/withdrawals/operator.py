"""An operator's "mark completed" and "mark failed": on NowPayments' word where a payout exists,
with a transaction hash in the network's format where none does (manual payouts)."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from payments.errors import InvalidTransition
from payments.models import WithdrawalRequest
from payments.services.providers.nowpayments.gateway import refuse_inside_transaction
from payments.services.providers.nowpayments.types import PayoutWithdrawal
from payments.services.withdrawals import lifecycle
from payments.services.withdrawals.hashes import hash_format_problem
from payments.services.withdrawals.payouts import PAYOUT_FAILED, payout_find

logger = logging.getLogger(__name__)

_FORCE_HINT = "If NowPayments is wrong, request a forced override (a second operator approves)."


def withdrawal_mark_completed(
    *, withdrawal_id: uuid.UUID, admin_user: Any, transaction_hash: str = ""
) -> WithdrawalRequest:
    """Complete a withdrawal: with its payout's hash once NowPayments reports it FINISHED (a
    typed hash is ignored then); without a payout, with a typed hash in the network's format."""
    withdrawal = WithdrawalRequest.objects.select_related("currency").get(pk=withdrawal_id)
    if lifecycle.payout_may_exist(withdrawal):
        item = _provider_item(withdrawal)
        status = item.status.upper()
        if status != "FINISHED" or not item.hash:
            raise InvalidTransition(
                f"NowPayments reports payout {item.id} as {status}, not finished with a hash: "
                f"the withdrawal completes when it is. {_FORCE_HINT}"
            )
        return lifecycle.withdrawal_complete(
            withdrawal_id=withdrawal.pk,
            transaction_hash=item.hash,
            admin_user=admin_user,
            confirmation=lifecycle.Confirmation.PROVIDER,
        )
    typed = transaction_hash.strip()
    if not typed:
        raise InvalidTransition("A completed withdrawal needs its blockchain transaction hash.")
    currency = withdrawal.currency
    network = currency.network or currency.token or currency.code
    problem = hash_format_problem(network=network, transaction_hash=typed)
    if problem is not None:
        raise InvalidTransition(problem)
    return lifecycle.withdrawal_complete(
        withdrawal_id=withdrawal.pk, transaction_hash=typed, admin_user=admin_user
    )


def withdrawal_mark_failed(
    *, withdrawal_id: uuid.UUID, admin_user: Any, reason: str = ""
) -> WithdrawalRequest:
    """Fail a withdrawal (refunding the hold): where a payout exists, only if NowPayments
    reports that payout FAILED, REJECTED or CANCELLED."""
    withdrawal = WithdrawalRequest.objects.get(pk=withdrawal_id)
    note = reason.strip() or f"marked failed by {admin_user}"
    if not lifecycle.payout_may_exist(withdrawal):
        return lifecycle.withdrawal_fail(withdrawal_id=withdrawal.pk, reason=note)
    item = _provider_item(withdrawal)
    status = item.status.upper()
    if status not in PAYOUT_FAILED:
        raise InvalidTransition(
            f"NowPayments reports payout {item.id} as {status}: it may still be paid, so the "
            f"withdrawal is not failed. {_FORCE_HINT}"
        )
    logger.info("withdrawal %s failed by user=%s on payout %s", withdrawal.pk, admin_user, status)
    return lifecycle.withdrawal_fail(
        withdrawal_id=withdrawal.pk,
        reason=f"NowPayments payout {item.id} {status.lower()}: "
        f"{item.error or 'no reason given'} ({note})",
        confirmation=lifecycle.Confirmation.PROVIDER,
    )


def _provider_item(withdrawal: WithdrawalRequest) -> PayoutWithdrawal:
    refuse_inside_transaction()  # NowPayments is asked with no database lock held
    found = payout_find(withdrawal)
    if found.item is None:
        raise InvalidTransition(
            f"NowPayments shows no payout for withdrawal {withdrawal.internal_withdrawal_id} "
            f"(batch {withdrawal.provider_batch_id or '?'}, item "
            f"{withdrawal.provider_payout_id or '?'}). {_FORCE_HINT}"
        )
    return found.item
