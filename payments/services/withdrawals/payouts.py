"""Payouts: send approved withdrawals through NowPayments and follow them to the end.

A withdrawal is claimed (approved -> processing) under its row lock before the payout is
created, so two workers never send it twice. NowPayments is called outside any database
transaction. A payout NowPayments refused is failed (and the hold refunded); one whose creation
got no answer is never refunded automatically: it is looked up by its external id, and left to
an operator if it cannot be found.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import asdict, dataclass
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.utils import timezone

from payments.errors import InvalidTransition, ProviderError, ProviderRejected
from payments.models import WithdrawalRequest
from payments.models.ops import DriftKind
from payments.models.withdrawal import WithdrawalStatus
from payments.services.findings import finding_record
from payments.services.providers.nowpayments.gateway import get_provider, refuse_inside_transaction
from payments.services.providers.nowpayments.provider import NowPaymentsProvider
from payments.services.providers.nowpayments.types import PayoutRequest, PayoutWithdrawal
from payments.services.withdrawals import lifecycle as withdrawals

logger = logging.getLogger(__name__)

# A processing withdrawal whose payout cannot be found after this long goes to an operator.
LOST_PAYOUT_AFTER = timedelta(hours=1)
_FAILED = {"FAILED", "REJECTED", "CANCELLED"}


@dataclass
class PayoutPollResult:
    checked: int = 0
    completed: int = 0
    failed: int = 0
    verified: int = 0
    adopted: int = 0
    errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def payouts_enabled() -> bool:
    return bool(getattr(settings, "PAYMENTS_PAYOUTS_ENABLED", False))


def withdrawal_payout_send(*, withdrawal_id: uuid.UUID) -> WithdrawalRequest:
    """Create and verify the NowPayments payout of an approved withdrawal."""
    refuse_inside_transaction()
    withdrawal = WithdrawalRequest.objects.select_related("currency").get(pk=withdrawal_id)
    if withdrawal.status != WithdrawalStatus.APPROVED:
        return withdrawal
    provider = get_provider()
    # Priced before the claim: if this fails, the withdrawal simply stays approved.
    estimate = provider.get_estimate(
        withdrawal.final_amount_usd, "usd", withdrawal.currency.provider_code
    )
    try:
        withdrawal = withdrawals.withdrawal_start_processing(withdrawal_id=withdrawal_id)
    except InvalidTransition:
        return WithdrawalRequest.objects.get(pk=withdrawal_id)  # another worker claimed it
    request = PayoutRequest(
        address=withdrawal.wallet_address,
        currency=withdrawal.currency.provider_code,
        amount=estimate.estimated_amount,
        extra_id=withdrawal.wallet_extra_id or None,
        unique_external_id=withdrawal.internal_withdrawal_id,
    )
    try:
        batch = provider.create_payout(
            [request], payout_description=f"Withdrawal {withdrawal.internal_withdrawal_id}"
        )
    except ProviderRejected as exc:
        logger.warning("payout of withdrawal %s refused: %s", withdrawal.pk, exc.provider_code)
        return withdrawals.withdrawal_fail(
            withdrawal_id=withdrawal.pk, reason=f"NowPayments refused the payout: {exc.message}"
        )
    except ProviderError as exc:
        _note(withdrawal.pk, f"payout creation unanswered ({exc.code}); looking it up")
        raise
    item = batch.withdrawals[0] if batch.withdrawals else None
    _record(withdrawal.pk, batch_id=batch.id, item=item, crypto_amount=estimate.estimated_amount)
    _verify(batch.id, withdrawal.pk)
    logger.info("payout of withdrawal %s created: batch %s", withdrawal.pk, batch.id)
    return WithdrawalRequest.objects.get(pk=withdrawal.pk)


def payouts_poll(*, limit: int = 200) -> PayoutPollResult:
    """Follow every processing withdrawal's payout to completed or failed."""
    result = PayoutPollResult()
    provider = get_provider()
    processing = list(
        WithdrawalRequest.objects.filter(status=WithdrawalStatus.PROCESSING).order_by(
            "processing_at"
        )[:limit]
    )
    for withdrawal in processing:
        result.checked += 1
        try:
            item = _find_payout(provider, withdrawal, result)
        except ProviderError as exc:
            result.errors += 1
            logger.warning("payout of withdrawal %s not read: %s", withdrawal.pk, exc.code)
            continue
        if item is None:
            _maybe_lost(withdrawal)
            continue
        status = item.status.upper()
        if status == "FINISHED" and item.hash:
            withdrawals.withdrawal_complete(withdrawal_id=withdrawal.pk, transaction_hash=item.hash)
            result.completed += 1
        elif status in _FAILED:
            withdrawals.withdrawal_fail(
                withdrawal_id=withdrawal.pk,
                reason=f"NowPayments payout {status.lower()}: {item.error or 'no reason given'}",
            )
            result.failed += 1
        elif status == "CREATING":
            result.verified += int(_verify(withdrawal.provider_batch_id, withdrawal.pk))
    return result


def approved_withdrawal_ids(*, limit: int = 100) -> list[uuid.UUID]:
    return list(
        WithdrawalRequest.objects.filter(status=WithdrawalStatus.APPROVED)
        .order_by("approved_at")
        .values_list("pk", flat=True)[:limit]
    )


def _find_payout(
    provider: NowPaymentsProvider, withdrawal: WithdrawalRequest, result: PayoutPollResult
) -> PayoutWithdrawal | None:
    if withdrawal.provider_batch_id:
        items = provider.get_payout(withdrawal.provider_batch_id)
    else:
        # Creation got no answer: find it by the external id we sent, if it exists.
        since = (withdrawal.processing_at or timezone.now()) - timedelta(days=1)
        items = provider.list_payouts(date_from=since.date().isoformat(), limit=500)
    for item in items:
        if item.unique_external_id == withdrawal.internal_withdrawal_id or (
            withdrawal.provider_payout_id and item.id == withdrawal.provider_payout_id
        ):
            if not withdrawal.provider_batch_id:
                _record(withdrawal.pk, batch_id=item.batch_withdrawal_id or "", item=item)
                result.adopted += 1
            return item
    return None


def _verify(batch_id: str, withdrawal_id: uuid.UUID) -> bool:
    try:
        get_provider().verify_payout(batch_id)
    except ProviderError as exc:
        _note(withdrawal_id, f"2FA verification of batch {batch_id} failed ({exc.code})")
        return False
    return True


def _record(
    withdrawal_id: uuid.UUID,
    *,
    batch_id: str,
    item: PayoutWithdrawal | None,
    crypto_amount: Decimal | None = None,
) -> None:
    data: dict[str, object] = {"batch_id": batch_id}
    if item is not None:
        data["withdrawal"] = dict(item.raw)
    if crypto_amount is not None:
        data["crypto_amount"] = str(crypto_amount)
    withdrawals.withdrawal_record_payout(
        withdrawal_id=withdrawal_id,
        batch_id=batch_id,
        payout_id=item.id if item is not None else "",
        data=data,
    )


def _note(withdrawal_id: uuid.UUID, message: str) -> None:
    withdrawals.withdrawal_note_payout_problem(withdrawal_id=withdrawal_id, message=message)


def _maybe_lost(withdrawal: WithdrawalRequest) -> None:
    started = withdrawal.processing_at or withdrawal.updated_at
    if started > timezone.now() - LOST_PAYOUT_AFTER:
        return
    finding_record(
        kind=DriftKind.LOST_PAYOUT,
        subject=f"payout:{withdrawal.pk}",
        user_id=withdrawal.user_id,
        expected="a NowPayments payout",
        actual="none found",
        detail=f"Withdrawal {withdrawal.internal_withdrawal_id} has been processing since "
        f"{started:%Y-%m-%d %H:%M} UTC and NowPayments shows no payout for it. Check the "
        "dashboard before failing (refunding) or completing it by hand.",
    )
