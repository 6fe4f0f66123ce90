"""The ledger: the only writer of Transaction and UserBalance.

Every posting runs in one database transaction that locks the user's balance row
(``SELECT ... FOR UPDATE``), so postings of one user are serialised while other users proceed
in parallel. The posting and the balance cache are written together or not at all; PostgreSQL
triggers (migration 0002) re-check the chain and the cache at commit, whatever the client.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from payments.bulk import update_rows
from payments.errors import ChainBroken, IdempotencyConflict, InsufficientFunds, InvalidAmount
from payments.models import Transaction, UserBalance
from payments.models.transaction import CREDIT_TYPES, DEBIT_TYPES, TransactionType
from payments.money import is_cents

logger = logging.getLogger(__name__)

MAX_AMOUNT = Decimal("1000000000000")  # fits the ledger's 14 digits with room for the sum


def post(
    *,
    user_id: int,
    kind: str,
    amount_usd: Decimal,
    idempotency_key: str,
    description: str = "",
    metadata: dict[str, Any] | None = None,
    payment_id: uuid.UUID | None = None,
    withdrawal_request_id: uuid.UUID | None = None,
    expected_balance_after: Decimal | None = None,
) -> Transaction:
    """Append one posting to the user's ledger, exactly once per idempotency key.

    A replay with the same key and terms returns the existing row; with other terms it raises
    IdempotencyConflict. A debit that would overdraw raises InsufficientFunds and writes nothing.
    ``expected_balance_after``, when given, must be what the posting makes the balance
    (ChainBroken otherwise). It is ``post_many`` of one posting.
    """
    posting = Posting(
        user_id=user_id,
        kind=kind,
        amount_usd=amount_usd,
        idempotency_key=idempotency_key,
        description=description,
        metadata=metadata or {},
        payment_id=payment_id,
        withdrawal_request_id=withdrawal_request_id,
    )
    expected = {} if expected_balance_after is None else {idempotency_key: expected_balance_after}
    return _post([posting], expected_after=expected)[0]


@dataclass(frozen=True)
class Posting:
    """One posting of a batch for ``post_many``; the fields mean what ``post``'s arguments do."""

    user_id: int
    kind: str
    amount_usd: Decimal
    idempotency_key: str
    description: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    payment_id: uuid.UUID | None = None
    withdrawal_request_id: uuid.UUID | None = None


def post_many(postings: Sequence[Posting]) -> list[Transaction]:
    """Append many postings in one database transaction, all or nothing.

    Each user's balance row is locked once (in user id order), the new rows go in with one
    INSERT and the balances change with one UPDATE, so a batch costs a handful of statements
    whatever its size. Replays return the stored rows as ``post`` does; a conflicting replay or
    an overdraft anywhere raises and writes nothing.
    """
    return _post(postings, expected_after={})


def lock_balances(user_ids: set[int]) -> None:
    """Lock these users' balance rows in user order, until the transaction ends."""
    if user_ids:
        list(
            UserBalance._base_manager.select_for_update()
            .filter(user_id__in=user_ids)
            .order_by("user_id")
            .values_list("user_id", flat=True)
        )


def balance_locked(user_id: int) -> Decimal:
    """The user's balance, with their balance row locked until the transaction ends (0.00 if
    they have none): for a caller that decides a posting's amount from the balance."""
    balance = (
        UserBalance._base_manager.select_for_update()
        .filter(user_id=user_id)
        .values_list("balance_usd", flat=True)
        .first()
    )
    return balance if balance is not None else Decimal("0.00")


def record(txn: Transaction) -> Transaction:
    """Post an unsaved Transaction built through the ORM (``Transaction.objects.create``).

    ``balance_after``, when given, must continue the user's chain; the idempotency key defaults
    to a fresh one, so each such call is its own posting. The stored row is copied back into
    ``txn``, as a plain ``save()`` would leave it.
    """
    stored = post(
        user_id=txn.user_id,
        kind=txn.transaction_type,
        amount_usd=txn.amount_usd,
        idempotency_key=txn.idempotency_key or f"manual:{uuid.uuid4()}",
        description=txn.description,
        metadata=txn.metadata,
        payment_id=txn.payment_id,
        withdrawal_request_id=txn.withdrawal_request_id,
        expected_balance_after=txn.balance_after,
    )
    txn.__dict__.update(
        {f.attname: getattr(stored, f.attname) for f in stored._meta.concrete_fields}
    )
    txn._state.adding = False
    txn._state.db = stored._state.db
    return txn


# A posting that loses an insert race (its key, or its payment's one deposit, committed by a
# concurrent transaction of another user) is retried this often; the retry finds it stored.
_RACE_RETRIES = 3


def _post(postings: Sequence[Posting], *, expected_after: dict[str, Decimal]) -> list[Transaction]:
    """The one core of ``post`` and ``post_many``: validate, then write under the users' locks."""
    txns = [_transaction_of(p) for p in postings]
    for txn in txns:
        _validate(txn)
    keys = [txn.idempotency_key for txn in txns]
    if len(set(keys)) != len(keys):
        raise IdempotencyConflict("One batch names the same idempotency key twice.")
    if not txns:
        return []
    for attempt in range(1, _RACE_RETRIES + 1):
        try:
            with transaction.atomic():
                return _post_locked(txns, expected_after)
        except IntegrityError:
            # The savepoint rolled back, so nothing of ours was written; under the users'
            # locks the next attempt sees the committed winner and replays or refuses it.
            if attempt == _RACE_RETRIES:
                raise
            logger.info("ledger: insert race on %s, retrying (attempt %s)", keys[:3], attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def _transaction_of(p: Posting) -> Transaction:
    return Transaction(
        user_id=p.user_id,
        transaction_type=p.kind,
        amount_usd=p.amount_usd,
        idempotency_key=p.idempotency_key,
        description=p.description,
        metadata=p.metadata,
        payment_id=p.payment_id,
        withdrawal_request_id=p.withdrawal_request_id,
    )


def _post_locked(txns: list[Transaction], expected_after: dict[str, Decimal]) -> list[Transaction]:
    now = timezone.now()
    credited = sorted({t.user_id for t in txns if t.amount_usd > 0})
    UserBalance._base_manager.bulk_create(
        [UserBalance(user_id=user_id) for user_id in credited], ignore_conflicts=True
    )
    balances = {
        b.user_id: b
        for b in UserBalance._base_manager.select_for_update()
        .filter(user_id__in={t.user_id for t in txns})
        .order_by("user_id")
    }
    # Under the users' locks: a posting of any of these keys, if any, is committed and visible.
    stored = {
        t.idempotency_key: t
        for t in Transaction.objects.filter(idempotency_key__in=[t.idempotency_key for t in txns])
    }
    _refuse_second_deposits([t for t in txns if t.idempotency_key not in stored])
    fresh: list[Transaction] = []
    for txn in txns:
        if txn.idempotency_key in stored:
            _check_same_terms(stored[txn.idempotency_key], txn)
            continue
        balance = balances.get(txn.user_id)
        current = balance.balance_usd if balance is not None else Decimal("0.00")
        new_balance = current + txn.amount_usd
        if balance is None or new_balance < 0:
            raise InsufficientFunds(
                f"Balance {current} USD does not cover a debit of {-txn.amount_usd} USD.",
                user_id=txn.user_id,
            )
        expected = expected_after.get(txn.idempotency_key)
        if expected is not None and expected != new_balance:
            raise ChainBroken(
                f"balance_after {expected} does not continue the ledger: "
                f"the balance is {current} and this posting makes it {new_balance}.",
                user_id=txn.user_id,
            )
        txn.sequence = balance.transaction_count + 1
        txn.balance_after = new_balance
        _move_balance(balance, txn, now)
        fresh.append(txn)
    # Rows of one user go in sequence order: the chain trigger checks each against the last.
    Transaction._base_manager.bulk_create(fresh)
    _save_balances([balances[user_id] for user_id in sorted({t.user_id for t in fresh})])
    for txn in fresh:
        logger.info(
            "ledger posting user=%s seq=%s type=%s amount=%s key=%s",
            txn.user_id,
            txn.sequence,
            txn.transaction_type,
            txn.amount_usd,
            txn.idempotency_key,
        )
    return [stored.get(t.idempotency_key, t) for t in txns]


def _refuse_second_deposits(txns: list[Transaction]) -> None:
    """A deposit for a payment already credited under another key is a conflict (the database
    refuses a second one anyway; this names the cause)."""
    payment_ids = [
        t.payment_id
        for t in txns
        if t.transaction_type == TransactionType.DEPOSIT and t.payment_id is not None
    ]
    if not payment_ids:
        return
    found = (
        Transaction.objects.filter(
            payment_id__in=payment_ids, transaction_type=TransactionType.DEPOSIT
        )
        .values_list("payment_id", "idempotency_key")
        .first()
    )
    if found is not None:
        raise IdempotencyConflict(f"Payment {found[0]} is already credited by {found[1]}.")


def _validate(txn: Transaction) -> None:
    amount = txn.amount_usd
    if not isinstance(amount, Decimal):
        raise InvalidAmount(f"amount_usd must be a Decimal, not {type(amount).__name__}.")
    if not is_cents(amount) or amount == 0 or abs(amount) > MAX_AMOUNT:
        raise InvalidAmount(f"amount_usd {amount} is not a non-zero amount in whole cents.")
    kind = txn.transaction_type
    if kind not in TransactionType.values:
        raise InvalidAmount(f"Unknown transaction type {kind!r}.")
    if kind in CREDIT_TYPES and amount < 0:
        raise InvalidAmount(f"A {kind} is a credit: amount_usd must be positive.")
    if kind in DEBIT_TYPES and amount > 0:
        raise InvalidAmount(f"A {kind} is a debit: amount_usd must be negative.")
    if not txn.idempotency_key:
        raise InvalidAmount("Every posting needs an idempotency key.")


def _check_same_terms(found: Transaction, txn: Transaction) -> None:
    same = (
        found.user_id == txn.user_id
        and found.transaction_type == txn.transaction_type
        and found.amount_usd == txn.amount_usd
        and found.payment_id == txn.payment_id
        and found.withdrawal_request_id == txn.withdrawal_request_id
    )
    if not same:
        raise IdempotencyConflict(
            f"Idempotency key {txn.idempotency_key!r} was already used for "
            f"{found.transaction_type} {found.amount_usd} USD of user {found.user_id}."
        )


_BALANCE_FIELDS = [
    "balance_usd",
    "transaction_count",
    "last_transaction_at",
    "total_deposited",
    "total_withdrawn",
    "updated_at",
]


def _move_balance(balance: UserBalance, txn: Transaction, now: Any) -> None:
    """Apply one posting to the in-memory balance row (the caller saves it)."""
    balance.balance_usd = txn.balance_after
    balance.transaction_count = txn.sequence
    balance.last_transaction_at = now
    balance.updated_at = now
    if txn.transaction_type == TransactionType.DEPOSIT:
        balance.total_deposited += txn.amount_usd
    elif txn.transaction_type == TransactionType.WITHDRAWAL:
        balance.total_withdrawn -= txn.amount_usd
    elif txn.transaction_type == TransactionType.REFUND and txn.withdrawal_request_id:
        balance.total_withdrawn = max(Decimal("0.00"), balance.total_withdrawn - txn.amount_usd)


def _save_balances(balances: list[UserBalance]) -> None:
    """Write many balance rows in one statement (PostgreSQL) or one by one (elsewhere)."""
    if not balances:
        return
    if connection.vendor != "postgresql":
        for balance in balances:
            UserBalance._base_manager.filter(pk=balance.pk).update(
                **{name: getattr(balance, name) for name in _BALANCE_FIELDS}
            )
        return
    update_rows(
        table="payments_userbalance",
        key=("user_id", "bigint"),
        columns=[
            ("balance_usd", "numeric"),
            ("transaction_count", "bigint"),
            ("last_transaction_at", "timestamptz"),
            ("updated_at", "timestamptz"),
            ("total_deposited", "numeric"),
            ("total_withdrawn", "numeric"),
        ],
        rows=[
            (
                b.user_id,
                b.balance_usd,
                b.transaction_count,
                b.last_transaction_at,
                b.updated_at,
                b.total_deposited,
                b.total_withdrawn,
            )
            for b in balances
        ],
    )
