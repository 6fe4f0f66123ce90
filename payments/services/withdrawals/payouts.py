"""Payouts: send approved withdrawals through NowPayments and follow them to the end.

A withdrawal is claimed (approved -> processing) under its row lock before the payout is
created, so two workers never send it twice, and marked "unsent" until the commit just before
the call. A claim whose worker died (or lost the database) before that commit is claimed again
and sent by the sweep after ``PAYMENTS_PAYOUT_UNSENT_RETRY_SECONDS``; the earlier claimer, if it
was only slow, then fails its commit and sends nothing. NowPayments is called outside any
database transaction.

A payout NowPayments refused is failed (and the hold refunded). One NowPayments provably did
nothing for (the login the call needed failed, or it answered 401) is unsent again and sent by
the sweep after its back-off. One whose creation got no answer is never refunded
automatically: it is looked up by its external id (every page of the payouts list), and left
to an operator if it cannot be found. A payout reported failed is refunded only if
NowPayments still reports it failed after the settling time
(``PAYMENTS_PAYOUT_FAILED_SETTLE_SECONDS``): the spec warns a failed payout may still be paid.

One payout whose calls keep failing (NowPayments refusing or not answering for it, a missing
2FA secret) never holds up the others: each failure is counted on its own row and backs it off
(``payout_attempts``, ``payout_retry_at``, ``payout_last_error``, shown in the admin), and the
sweeps skip it until then and go on with the rest.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection
from django.db.models import Q
from django.utils import timezone

from payments.errors import InvalidTransition, PaymentsError, ProviderError, ProviderRejected
from payments.logs import CycleWarnings, RepeatLimiter
from payments.models import WithdrawalRequest
from payments.models.ops import DriftKind
from payments.models.withdrawal import WithdrawalStatus
from payments.services import backoff
from payments.services.findings import finding_record
from payments.services.providers.nowpayments.gateway import get_provider, refuse_inside_transaction
from payments.services.providers.nowpayments.types import PayoutRequest, PayoutWithdrawal
from payments.services.withdrawals import lifecycle as withdrawals

logger = logging.getLogger(__name__)
# The same payout unread on every sweep is logged once an hour (payments/logs.py).
REPEATS = RepeatLimiter()

# A processing withdrawal whose payout cannot be found after this long goes to an operator.
LOST_PAYOUT_AFTER = timedelta(hours=1)
# Payout statuses that mean it was not paid (spec 3.2; FAILED may still be processed later).
PAYOUT_FAILED = frozenset({"FAILED", "REJECTED", "CANCELLED"})
# The unanswered creation's payout is searched for in at most this many pages of the list.
PAYOUT_LIST_PAGE_SIZE = 500
PAYOUT_LIST_MAX_PAGES = 20


@dataclass
class PayoutPollResult:
    checked: int = 0
    completed: int = 0
    failed: int = 0
    verified: int = 0
    adopted: int = 0
    settling: int = 0  # reported failed, waiting out the settling time before the refund
    errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def payouts_enabled() -> bool:
    return bool(getattr(settings, "PAYMENTS_PAYOUTS_ENABLED", False))


def withdrawal_payout_send(*, withdrawal_id: uuid.UUID) -> WithdrawalRequest:
    """Create and verify the NowPayments payout of an approved withdrawal, or of a processing
    one whose claim was never sent (``unsent_withdrawal_ids``)."""
    refuse_inside_transaction()
    withdrawal = WithdrawalRequest.objects.select_related("currency").get(pk=withdrawal_id)
    processing = withdrawal.status == WithdrawalStatus.PROCESSING
    stranded = processing and withdrawals.is_unsent(withdrawal)
    if (withdrawal.status != WithdrawalStatus.APPROVED and not stranded) or _backed_off(withdrawal):
        return withdrawal
    # Priced, logged in to NowPayments and the request built before the claim: if one of these
    # fails, the withdrawal stays as it is, backed off. Between the mark and the payout call
    # nothing may touch the database (not even a lazy foreign key): a connection lost there
    # would leave a marked payout that was never sent, only looked up until an operator acts.
    step = "pricing the payout"
    try:
        provider = get_provider()
        estimate = provider.get_estimate(
            withdrawal.final_amount_usd, "usd", withdrawal.currency.provider_code
        )
        step = "logging in to NowPayments"
        provider.log_in()
    except PaymentsError as exc:
        _attempt_failed(withdrawal.pk, f"{step}: {backoff.describe(exc)}")
        return WithdrawalRequest.objects.get(pk=withdrawal.pk)
    request = PayoutRequest(
        address=withdrawal.wallet_address,
        currency=withdrawal.currency.provider_code,
        amount=estimate.estimated_amount,
        extra_id=withdrawal.wallet_extra_id or None,
        unique_external_id=withdrawal.internal_withdrawal_id,
    )
    token = uuid.uuid4().hex
    claimed = _claim(withdrawal_id, token, again=stranded) and _mark_sending(withdrawal_id, token)
    if not claimed:
        return WithdrawalRequest.objects.get(pk=withdrawal_id)  # another worker has it
    # The request's fields are frozen by the database (0007_state_guards): those read before
    # the claim are the claimed row's.
    withdrawal = claimed
    try:
        batch = provider.create_payout(
            [request], payout_description=f"Withdrawal {withdrawal.internal_withdrawal_id}"
        )
    except ProviderError as exc:
        if exc.no_effect:  # its login failed, or NowPayments refused ours: nothing was created
            withdrawals.withdrawal_unmark_sending(withdrawal_id=withdrawal.pk, claim=token)
            _attempt_failed(withdrawal.pk, f"sending the payout: {backoff.describe(exc)}")
            return WithdrawalRequest.objects.get(pk=withdrawal.pk)
        if isinstance(exc, ProviderRejected):
            logger.warning("payout of withdrawal %s refused: %s", withdrawal.pk, exc.provider_code)
            return withdrawals.withdrawal_fail(
                withdrawal_id=withdrawal.pk,
                reason=f"NowPayments refused the payout: {exc.message}",
                confirmation=withdrawals.Confirmation.PROVIDER,  # no payout was made
            )
        _note(withdrawal.pk, f"payout creation unanswered ({exc.code}); looking it up")
        raise
    item = _match(list(batch.withdrawals), withdrawal)  # by our external id: not yet its id
    if item is None and len(batch.withdrawals) == 1:
        item = batch.withdrawals[0]
    _record(withdrawal.pk, batch_id=batch.id, item=item, crypto_amount=estimate.estimated_amount)
    if _verify(batch.id, withdrawal.pk):
        _attempt_worked(withdrawal)
    logger.info("payout of withdrawal %s created: batch %s", withdrawal.pk, batch.id)
    return WithdrawalRequest.objects.get(pk=withdrawal.pk)


def unsent_withdrawal_ids(*, limit: int = 100) -> list[uuid.UUID]:
    """Processing withdrawals whose claim never reached the payout call and is older than
    ``PAYMENTS_PAYOUT_UNSENT_RETRY_SECONDS``: the claiming worker died, or lost its database,
    in between. NowPayments cannot have their payout, so they are sent again."""
    cutoff = timezone.now() - _unsent_retry()
    candidates = WithdrawalRequest.objects.filter(
        _due(),
        status=WithdrawalStatus.PROCESSING,
        provider_batch_id="",
        provider_payout_id="",
        provider_data__has_key=withdrawals.UNSENT,
    ).order_by("processing_at")
    return [
        row.pk
        for row in candidates.only("pk", "provider_data")[:limit]
        if datetime.fromisoformat(row.provider_data.get("claimed_at") or "2000-01-01T00:00+00:00")
        <= cutoff
    ]


def _unsent_retry() -> timedelta:
    return timedelta(seconds=float(getattr(settings, "PAYMENTS_PAYOUT_UNSENT_RETRY_SECONDS", 60)))


def _claim(withdrawal_id: uuid.UUID, token: str, *, again: bool) -> WithdrawalRequest | None:
    """Claim a withdrawal for this worker under ``token``: an approved one (approved ->
    processing), or ``again`` a processing one whose claim was never sent. None if another
    worker has it.

    PostgreSQL may end the connection while the claim commits (a restart, a failover,
    ``pg_terminate_backend``) and the claim may have held all the same. So the claim writes a
    token of its own, and on a lost answer it is read back on a fresh connection: our token
    means the claim is ours, so this worker goes on; an approved row means it rolled back (the
    error stands: the next sweep sends it again). If even that read fails, the claim stays
    unsent and the sweep sends it again after ``PAYMENTS_PAYOUT_UNSENT_RETRY_SECONDS``.
    """

    def claim() -> WithdrawalRequest | None:
        if again:
            return withdrawals.withdrawal_reclaim_unsent(
                withdrawal_id=withdrawal_id,
                claim=token,
                claimed_before=timezone.now() - _unsent_retry(),
            )
        try:
            return withdrawals.withdrawal_start_processing(withdrawal_id=withdrawal_id, claim=token)
        except InvalidTransition:
            return None

    def held(withdrawal: WithdrawalRequest) -> bool:
        if withdrawal.status == WithdrawalStatus.APPROVED:
            raise ClaimRolledBack
        return withdrawal.status == WithdrawalStatus.PROCESSING and withdrawals.is_unsent(
            withdrawal
        )

    return _answered(claim, withdrawal_id, token, held=held, step="claim")


def _mark_sending(withdrawal_id: uuid.UUID, token: str) -> WithdrawalRequest | None:
    """Mark our claim as being sent, the last write before NowPayments is called; None if the
    claim is no longer ours (it was taken over as unsent while this worker stalled)."""

    def mark() -> WithdrawalRequest | None:
        return withdrawals.withdrawal_mark_sending(withdrawal_id=withdrawal_id, claim=token)

    def held(withdrawal: WithdrawalRequest) -> bool:
        return not withdrawals.is_unsent(withdrawal)

    return _answered(mark, withdrawal_id, token, held=held, step="mark before sending")


def _read_back(withdrawal_id: uuid.UUID, step: str) -> WithdrawalRequest:
    """The withdrawal read on a fresh connection, tried again while PostgreSQL cannot answer
    (restarting, ending connections) for up to ``PAYMENTS_PAYOUT_READ_BACK_SECONDS``.

    Giving up is costly after a lost mark: the mark may have held, so nobody sends that payout
    again, and it waits to be found at NowPayments and then for an operator, although this
    worker knows it never called NowPayments. So the read is not given up at the first error.
    """
    deadline = time.monotonic() + float(getattr(settings, "PAYMENTS_PAYOUT_READ_BACK_SECONDS", 30))
    wait = 0.1
    while True:
        connection.close()
        try:
            return WithdrawalRequest.objects.select_related("currency").get(pk=withdrawal_id)
        except (OperationalError, InterfaceError):
            if time.monotonic() + wait > deadline:
                logger.error(
                    "withdrawal %s: the %s's commit got no answer and the withdrawal cannot be"
                    " read back; if it was marked as sending, it is only looked up from now on",
                    withdrawal_id,
                    step,
                )
                raise
        time.sleep(wait)
        wait = min(wait * 2, 5.0)


class ClaimRolledBack(Exception):
    """The claim whose commit got no answer did not hold."""


def _answered(
    write: Callable[[], WithdrawalRequest | None],
    withdrawal_id: uuid.UUID,
    token: str,
    *,
    held: Callable[[WithdrawalRequest], bool],
    step: str,
) -> WithdrawalRequest | None:
    """``write()``; if its commit got no answer, the row read back on a fresh connection: ours
    (our token, and ``held``) or None."""
    try:
        return write()
    except (OperationalError, InterfaceError) as lost:
        if connection.in_atomic_block:
            raise
        withdrawal = _read_back(withdrawal_id, step)
        try:
            ours = held(withdrawal) and (withdrawal.provider_data or {}).get("claim") == token
        except ClaimRolledBack:
            raise lost from None
        if not ours:
            return None
        logger.warning(
            "withdrawal %s: the %s's commit got no answer but it held; going on",
            withdrawal.pk,
            step,
        )
        return withdrawal


def payouts_poll(*, limit: int = 200) -> PayoutPollResult:
    """Follow every processing withdrawal's payout to completed or failed, on NowPayments'
    word: FINISHED completes it with the payout's hash; FAILED, REJECTED or CANCELLED fails
    it (refunds the hold) only if NowPayments still says so after the settling time."""
    result = PayoutPollResult()
    # A payout whose reading failed is not read again before its wait is over; one whose
    # verification failed is still read (it may have been verified in the dashboard and paid)
    # but not verified again before then.
    unreadable = Q(payout_retry_at__gt=timezone.now(), payout_last_error__startswith=READING)
    processing = list(
        WithdrawalRequest.objects.filter(status=WithdrawalStatus.PROCESSING)
        .exclude(unreadable)
        .exclude(provider_data__has_key=withdrawals.UNSENT)  # never sent: the sweep sends it
        .order_by("processing_at")[:limit]
    )
    unread = CycleWarnings(
        logger, REPEATS, "payout not read", "payout of withdrawal %s not read: %s"
    )
    for withdrawal in processing:
        result.checked += 1
        try:
            found = payout_find(withdrawal)
        except PaymentsError as exc:
            result.errors += 1
            unread.refused(str(withdrawal.pk), exc.code)
            _attempt_failed(withdrawal.pk, f"{READING}: {backoff.describe(exc)}")
            continue
        unread.recovered(str(withdrawal.pk))
        result.adopted += int(found.adopted)
        if found.item is None:
            if found.searched_all:
                _maybe_lost(withdrawal)
            _attempt_worked(withdrawal)
            continue
        try:
            worked = _follow(withdrawal, found.item, result)
        except InvalidTransition as exc:  # an operator or another poller moved it meanwhile
            logger.info("payout of withdrawal %s not applied: %s", withdrawal.pk, exc.message)
            continue
        except PaymentsError as exc:  # this one payout only: the others go on
            result.errors += 1
            _attempt_failed(withdrawal.pk, f"applying the payout: {backoff.describe(exc)}")
            continue
        if worked is True:
            _attempt_worked(withdrawal)
    unread.flush()
    return result


# How the failure of a payout's reading starts in ``payout_last_error``.
READING = "reading the payout"


def _due() -> Q:
    """Withdrawals not backed off after failed payout calls (or whose wait is over)."""
    return Q(payout_retry_at__isnull=True) | Q(payout_retry_at__lte=timezone.now())


def _backed_off(withdrawal: WithdrawalRequest) -> bool:
    return withdrawal.payout_retry_at is not None and withdrawal.payout_retry_at > timezone.now()


def _attempt_failed(withdrawal_id: uuid.UUID, error: str) -> None:
    withdrawals.withdrawal_note_payout_attempt(withdrawal_id=withdrawal_id, error=error)


def _attempt_worked(withdrawal: WithdrawalRequest) -> None:
    if withdrawal.payout_attempts:
        withdrawals.withdrawal_clear_payout_attempts(withdrawal_id=withdrawal.pk)


@dataclass(frozen=True)
class PayoutFound:
    """What NowPayments holds for a withdrawal: its payout item, if found, and whether every
    place it could be was searched (a bounded search that ran out proves nothing)."""

    item: PayoutWithdrawal | None
    searched_all: bool = True
    adopted: bool = False


def payout_find(withdrawal: WithdrawalRequest) -> PayoutFound:
    """The payout item of ``withdrawal`` at NowPayments (called outside any transaction).

    Known ids: the batch is read and its item matched by item id (by our external id for a
    request that predates storing the item id); the item id is asked directly if that fails.
    No ids (creation unanswered): the payouts list is paged through, matching our external id,
    and a payout found there is recorded (adopted).
    """
    refuse_inside_transaction()
    provider = get_provider()
    batch_id, item_id = withdrawal.provider_batch_id, withdrawal.provider_payout_id
    if batch_id or item_id:
        item = None
        if batch_id:
            try:
                item = _match(provider.get_payout(batch_id), withdrawal)
            except ProviderRejected:
                if not item_id:
                    raise
        if item is None and item_id:
            item = _match(provider.get_payout(item_id), withdrawal)
        if item is not None and not item_id:
            _record(withdrawal.pk, batch_id=batch_id, item=item)
        return PayoutFound(item)
    since = (withdrawal.processing_at or timezone.now()) - timedelta(days=1)
    for page in range(PAYOUT_LIST_MAX_PAGES):
        items = provider.list_payouts(
            date_from=since.date().isoformat(),
            order_by="id",
            order="asc",
            limit=PAYOUT_LIST_PAGE_SIZE,
            page=page,
        )
        item = _match(items, withdrawal)
        if item is not None:
            _record(withdrawal.pk, batch_id=item.batch_withdrawal_id or "", item=item)
            return PayoutFound(item, adopted=True)
        if len(items) < PAYOUT_LIST_PAGE_SIZE:
            return PayoutFound(None)
    hit = REPEATS.hit("payout not in the list", str(withdrawal.pk))
    logger.log(
        logging.WARNING if hit.log else logging.DEBUG,
        "payout of withdrawal %s not in the first %s pages of payouts; not called lost",
        withdrawal.pk,
        PAYOUT_LIST_MAX_PAGES,
    )
    return PayoutFound(None, searched_all=False)


def approved_withdrawal_ids(*, limit: int = 100) -> list[uuid.UUID]:
    """Approved withdrawals to send now, oldest approval first; one backed off after failed
    calls waits for its ``payout_retry_at`` without holding up the ones behind it."""
    return list(
        WithdrawalRequest.objects.filter(_due(), status=WithdrawalStatus.APPROVED)
        .order_by("approved_at")
        .values_list("pk", flat=True)[:limit]
    )


def _match(items: list[PayoutWithdrawal], withdrawal: WithdrawalRequest) -> PayoutWithdrawal | None:
    """Our item among ``items``: by item id when we know it (never by the batch id), else by
    the external id we sent."""
    for item in items:
        if withdrawal.provider_payout_id:
            if item.id == withdrawal.provider_payout_id:
                return item
        elif item.unique_external_id == withdrawal.internal_withdrawal_id:
            return item
    return None


def _follow(
    withdrawal: WithdrawalRequest, item: PayoutWithdrawal, result: PayoutPollResult
) -> bool | None:
    """Apply what NowPayments says of the payout; False if a call for it failed (noted), None
    if the verification it waits for is backed off."""
    status = item.status.upper()
    if status in PAYOUT_FAILED:
        _follow_failure(withdrawal, item, result)
        return True
    if (withdrawal.provider_data or {}).get("failed_seen_at"):
        withdrawals.withdrawal_forget_payout_failure(withdrawal_id=withdrawal.pk)
    if status == "FINISHED" and item.hash:
        withdrawals.withdrawal_complete(
            withdrawal_id=withdrawal.pk,
            transaction_hash=item.hash,
            confirmation=withdrawals.Confirmation.PROVIDER,
        )
        result.completed += 1
    elif status == "CREATING":
        if _backed_off(withdrawal):
            return None
        # An adopted payout's batch id is the item's (``withdrawal`` was read before it).
        batch_id = withdrawal.provider_batch_id or item.batch_withdrawal_id or ""
        verified = _verify(batch_id, withdrawal.pk)
        result.verified += int(verified)
        return verified
    return True


def _follow_failure(
    withdrawal: WithdrawalRequest, item: PayoutWithdrawal, result: PayoutPollResult
) -> None:
    """A failed payout may still be processed (spec 3.2): refund only on a second look."""
    status = item.status.upper()
    seen = withdrawals.withdrawal_note_payout_failure(
        withdrawal_id=withdrawal.pk, status=status, error=item.error or ""
    )
    if seen is None:
        return
    first_seen, first_time = seen
    settle = timedelta(
        seconds=float(getattr(settings, "PAYMENTS_PAYOUT_FAILED_SETTLE_SECONDS", 1800))
    )
    if first_time or timezone.now() - first_seen < settle:
        result.settling += 1
        return
    withdrawals.withdrawal_fail(
        withdrawal_id=withdrawal.pk,
        reason=f"NowPayments payout {item.id} {status.lower()} (still, since "
        f"{first_seen:%Y-%m-%d %H:%M} UTC): {item.error or 'no reason given'}",
        confirmation=withdrawals.Confirmation.PROVIDER,
    )
    result.failed += 1


def _verify(batch_id: str, withdrawal_id: uuid.UUID) -> bool:
    """Confirm the batch with 2FA; a failure (NowPayments refusing or silent, or no 2FA secret
    configured) is noted on this withdrawal and backs it off, and raises nothing."""
    try:
        get_provider().verify_payout(batch_id)
    except PaymentsError as exc:
        _note(withdrawal_id, f"2FA verification of batch {batch_id} failed ({exc.code})")
        _attempt_failed(withdrawal_id, f"verifying batch {batch_id}: {backoff.describe(exc)}")
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
        data["payout_id"] = item.id
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
