"""The settlement routine: credit completed payments exactly once, in batches or one by one."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import NamedTuple, Protocol

from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, OuterRef

from payments import ledger, ledger_pg
from payments.errors import IdempotencyConflict, PaymentsError
from payments.models import Payment, SettlementDue, Transaction
from payments.models.payment import PaymentStatus
from payments.models.transaction import TransactionType
from payments.models.webhook import WebhookEventType
from payments.services.host_webhooks import ANY_ACTIVE_COLUMN, webhook_payments_record

logger = logging.getLogger(__name__)


def unsettled_payment_ids(*, limit: int = 50_000) -> list[uuid.UUID]:
    """Completed payments that have no DEPOSIT posting yet, grouped by user.

    Grouped so that a batch of them touches few balance rows, and concurrent batches rarely
    wait on each other's locks.
    """
    deposit = Transaction.objects.filter(
        payment_id=OuterRef("pk"), transaction_type=TransactionType.DEPOSIT
    )
    payments = Payment.objects.filter(status=PaymentStatus.COMPLETED)
    if connection.vendor == "postgresql":
        # The database keeps the payments due (SettlementDue): read those, the oldest first,
        # then only them by primary key, whatever the planner thinks of the tables' sizes.
        due = SettlementDue.objects.order_by("due_since").values_list("payment_id", flat=True)
        payments = payments.filter(pk__in=list(due[:limit]))
    return list(
        payments.filter(~Exists(deposit))
        .order_by("user_id", "completed_at")
        .values_list("pk", flat=True)[:limit]
    )


def payments_settle_many(*, payment_ids: Iterable[uuid.UUID]) -> int:
    """Credit every completed payment among ``payment_ids`` that has no deposit yet.

    One database transaction for the batch: the payments are locked in id order and settled
    by ``settle_locked``. Should the batch fail as a whole (one payment the ledger refuses),
    each payment is settled on its own instead, so one poisoned payment never blocks the
    others. Returns how many payments have their deposit afterwards.
    """
    ids = sorted(set(payment_ids))
    try:
        with transaction.atomic():
            payments: list[Settleable]
            if connection.vendor == "postgresql":
                rows = ledger_pg.run(_LOCK_MANY, [ids])
                payments = [LockedPayment._make(row) for row in rows]
            else:
                payments = list(
                    Payment._base_manager.select_for_update()
                    .filter(pk__in=ids, status=PaymentStatus.COMPLETED)
                    .order_by("pk")
                    .only(*_SETTLE_FIELDS)
                )
            return len(settle_locked(payments))
    except (IntegrityError, PaymentsError):
        logger.warning("settlement batch of %s fell back to one by one", len(ids))
    settled = 0
    for payment_id in ids:
        try:
            settled += payment_settle(payment_id=payment_id) is not None
        except (IntegrityError, PaymentsError):
            logger.exception("payment %s could not be settled", payment_id)
    return settled


class Settleable(Protocol):
    """What settlement reads of a payment (a Payment, or a row locked for settling)."""

    @property
    def pk(self) -> uuid.UUID: ...
    @property
    def status(self) -> str: ...
    @property
    def user_id(self) -> int: ...
    @property
    def credited_amount_usd(self) -> Decimal: ...
    @property
    def internal_payment_id(self) -> str: ...
    @property
    def provider_payment_id(self) -> str | None: ...


class LockedPayment(NamedTuple):
    """A payment row locked for settling: the fields ``deposit_posting`` reads, no model
    (a tuple: building a model, or a frozen dataclass, per row costs more than its SQL)."""

    pk: uuid.UUID
    status: str
    user_id: int
    amount_usd: Decimal
    credited_usd: Decimal | None
    internal_payment_id: str
    provider_payment_id: str | None

    @property
    def credited_amount_usd(self) -> Decimal:
        return self.credited_usd if self.credited_usd is not None else self.amount_usd


_LOCKED_COLUMNS = (
    "SELECT id, status, user_id, amount_usd, credited_usd, internal_payment_id, "
    "provider_payment_id FROM payments_payment"
)
_LOCK_ONE = f"{_LOCKED_COLUMNS} WHERE id = %s FOR UPDATE"
# A payment and its user's balance row, locked by one statement (payment first, as
# everywhere): the ledger then posts without a lock statement of its own. The last column says
# whether any webhook endpoint is active, which the credit's outbox write would ask next.
# The locks select by key alone; settle_locked credits only completed payments. A status
# condition here let the planner, with statistics in which 'completed' looked rare, read the
# (status, created_at) index: every completed payment, for one row.
_LOCK_ONE_WITH_BALANCE = (
    "SELECT p.id, p.status, p.user_id, p.amount_usd, p.credited_usd, p.internal_payment_id, "  # noqa: S608 - column names from code
    f"p.provider_payment_id, {ledger.balance_columns('b')}, {ANY_ACTIVE_COLUMN} "
    "FROM payments_payment p JOIN payments_userbalance b ON b.user_id = p.user_id "
    "WHERE p.id = %s FOR UPDATE OF p, b"
)
_LOCKED_WIDTH = len(LockedPayment._fields)
_LOCK_MANY = f"{_LOCKED_COLUMNS} WHERE id = ANY(%s::uuid[]) ORDER BY id FOR UPDATE"


@transaction.atomic
def payment_settle(*, payment_id: uuid.UUID) -> Transaction | None:
    """Credit a completed payment exactly once; any other status credits nothing."""
    payment: Settleable
    balances: dict[int, ledger.Balance] = {}
    endpoints_active: bool | None = None
    if connection.vendor == "postgresql":
        rows = ledger_pg.run(_LOCK_ONE_WITH_BALANCE, [payment_id])
        if rows:
            *columns, endpoints_active = rows[0]
            payment = LockedPayment._make(columns[:_LOCKED_WIDTH])
            balances[payment.user_id] = ledger.balance_of(columns[_LOCKED_WIDTH:])
        else:  # unknown, or the user's first credit (no balance row yet)
            rows = ledger_pg.run(_LOCK_ONE, [payment_id])
            if not rows:
                raise Payment.DoesNotExist(f"Payment {payment_id} does not exist.")
            payment = LockedPayment._make(rows[0])
    else:
        payment = Payment._base_manager.select_for_update().only(*_SETTLE_FIELDS).get(pk=payment_id)
    deposits = settle_locked([payment], balances=balances, endpoints_active=endpoints_active)
    return deposits[0] if deposits else None


def settle_locked(
    payments: Sequence[Settleable],
    *,
    only_new: bool = False,
    balances: Mapping[int, ledger.Balance] | None = None,
    endpoints_active: bool | None = None,
) -> list[Transaction]:
    """The one settlement routine: post each completed payment's DEPOSIT, exactly once.

    The caller holds the payments' row locks (and, in ``balances``, any balance rows it has
    locked too: see ``ledger.post_batch``). Returns the deposit of every completed payment
    among them (already stored or posted now), or with ``only_new`` just those posted now.
    ``endpoints_active``: whether a statement of the caller's, in this transaction, found an
    active webhook endpoint (None: not asked; the outbox asks).
    """
    completed = [p for p in payments if p.status == PaymentStatus.COMPLETED]
    if not completed:
        return []
    if len(completed) == 1:
        # One payment: the ledger's replay is the lookup (no statement of its own).
        try:
            posted = ledger.post_batch([deposit_posting(completed[0])], locked=balances)
        except IdempotencyConflict:
            stored = _deposits_of([completed[0].pk])
            if not stored:
                raise
            return [] if only_new else list(stored.values())
        fresh = posted.fresh
        _record_credits(fresh, endpoints_active)
        return fresh if only_new else posted.rows
    credited = _deposits_of([p.pk for p in completed])
    fresh = ledger.post_many([deposit_posting(p) for p in completed if p.pk not in credited])
    _record_credits(fresh, endpoints_active)
    if only_new:
        return fresh
    posted_now = {t.payment_id: t for t in fresh}
    return [credited.get(p.pk) or posted_now[p.pk] for p in completed]


def _deposits_of(payment_ids: list[uuid.UUID]) -> dict[uuid.UUID | None, Transaction]:
    return {t.payment_id: t for t in ledger.deposits_of(payment_ids)}


def _record_credits(fresh: list[Transaction], endpoints_active: bool | None) -> None:
    """The host hears of each new credit from the outbox, in this same transaction."""
    if fresh:
        webhook_payments_record(
            event_type=WebhookEventType.PAYMENT_CREDITED,
            extras={t.payment_id: _credited(t) for t in fresh if t.payment_id is not None},
            endpoints_active=endpoints_active,
        )


def _credited(deposit: Transaction) -> dict[str, str | int]:
    """What a payment.credited event adds to the payment's fields: the deposit posting."""
    return {"credited_usd": str(deposit.amount_usd), "transaction_id": deposit.pk}


# Everything deposit_posting reads: a field left out is loaded again for every payment.
_SETTLE_FIELDS = (
    "pk",
    "status",
    "user_id",
    "amount_usd",
    "credited_usd",
    "internal_payment_id",
    "provider_payment_id",
)


def deposit_posting(payment: Settleable) -> ledger.Posting:
    """The one DEPOSIT posting a completed payment gets."""
    return ledger.Posting(
        user_id=payment.user_id,
        kind=TransactionType.DEPOSIT,
        amount_usd=payment.credited_amount_usd,
        idempotency_key=f"payment:{payment.pk}:deposit",
        description=f"Payment completed - {payment.internal_payment_id}",
        metadata={"provider_payment_id": payment.provider_payment_id or ""},
        payment_id=payment.pk,
    )
