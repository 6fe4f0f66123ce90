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
    """
    txn = Transaction(
        user_id=user_id,
        transaction_type=kind,
        amount_usd=amount_usd,
        idempotency_key=idempotency_key,
        description=description,
        metadata=metadata or {},
        payment_id=payment_id,
        withdrawal_request_id=withdrawal_request_id,
    )
    return _insert(txn, expected_balance_after=expected_balance_after)


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
    txns = [
        Transaction(
            user_id=p.user_id,
            transaction_type=p.kind,
            amount_usd=p.amount_usd,
            idempotency_key=p.idempotency_key,
            description=p.description,
            metadata=p.metadata,
            payment_id=p.payment_id,
            withdrawal_request_id=p.withdrawal_request_id,
        )
        for p in postings
    ]
    for txn in txns:
        _validate(txn)
    keys = [txn.idempotency_key for txn in txns]
    if len(set(keys)) != len(keys):
        raise IdempotencyConflict("One batch names the same idempotency key twice.")
    if not txns:
        return []
    now = timezone.now()
    with transaction.atomic():
        credited = sorted({t.user_id for t in txns if t.amount_usd > 0})
        UserBalance.objects.bulk_create(
            [UserBalance(user_id=user_id) for user_id in credited], ignore_conflicts=True
        )
        balances = {
            b.user_id: b
            for b in UserBalance.objects.select_for_update()
            .filter(user_id__in={t.user_id for t in txns})
            .order_by("user_id")
        }
        stored = {
            t.idempotency_key: t for t in Transaction.objects.filter(idempotency_key__in=keys)
        }
        fresh: list[Transaction] = []
        for txn in txns:
            if txn.idempotency_key in stored:
                _check_same_terms(stored[txn.idempotency_key], txn)
                continue
            balance = balances.get(txn.user_id)
            current = balance.balance_usd if balance is not None else Decimal("0.00")
            if balance is None or current + txn.amount_usd < 0:
                raise InsufficientFunds(
                    f"Balance {current} USD does not cover a debit of {-txn.amount_usd} USD.",
                    user_id=txn.user_id,
                )
            txn.sequence = balance.transaction_count + 1
            txn.balance_after = current + txn.amount_usd
            _move_balance(balance, txn, now)
            fresh.append(txn)
        # Rows of one user go in sequence order: the chain trigger checks each against the last.
        Transaction._base_manager.bulk_create(fresh)
        _save_balances([balances[user_id] for user_id in sorted({t.user_id for t in fresh})])
    logger.info("ledger batch: %s posted, %s replayed", len(fresh), len(txns) - len(fresh))
    return [stored.get(t.idempotency_key, t) for t in txns]


def record(txn: Transaction) -> Transaction:
    """Post an unsaved Transaction built through the ORM (``Transaction.objects.create``).

    ``balance_after``, when given, must continue the user's chain; the idempotency key defaults
    to a fresh one, so each such call is its own posting.
    """
    if not txn.idempotency_key:
        txn.idempotency_key = f"manual:{uuid.uuid4()}"
    expected = txn.balance_after
    txn.balance_after = None  # type: ignore[assignment]
    return _insert(txn, expected_balance_after=expected)


def _insert(txn: Transaction, *, expected_balance_after: Decimal | None) -> Transaction:
    _validate(txn)
    try:
        with transaction.atomic():
            balance = _lock_balance(txn.user_id, create=txn.amount_usd > 0)
            # Under the user's lock: a posting of this key, if any, is committed and visible.
            existing = _existing(txn, by_payment=False)
            if existing is not None:
                return existing
            current = balance.balance_usd if balance is not None else Decimal("0.00")
            new_balance = current + txn.amount_usd
            if balance is None or new_balance < 0:
                raise InsufficientFunds(
                    f"Balance {current} USD does not cover a debit of {-txn.amount_usd} USD.",
                    user_id=txn.user_id,
                )
            if expected_balance_after is not None and expected_balance_after != new_balance:
                raise ChainBroken(
                    f"balance_after {expected_balance_after} does not continue the ledger: "
                    f"the balance is {current} and this posting makes it {new_balance}.",
                    user_id=txn.user_id,
                )
            now = timezone.now()
            txn.sequence = balance.transaction_count + 1
            txn.balance_after = new_balance
            txn._ledger_write = True  # type: ignore[attr-defined]
            txn.save(force_insert=True)
            _apply_to_balance(balance, txn, now)
    except IntegrityError:
        # The key (or the payment's one deposit) was taken by a concurrent posting of
        # another user; the savepoint rolled back, so nothing of ours was written.
        existing = _existing(txn)
        if existing is None:
            raise
        return existing
    logger.info(
        "ledger posting user=%s seq=%s type=%s amount=%s key=%s",
        txn.user_id,
        txn.sequence,
        txn.transaction_type,
        txn.amount_usd,
        txn.idempotency_key,
    )
    return txn


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


def _existing(txn: Transaction, *, by_payment: bool = True) -> Transaction | None:
    """The posting already made under this key (checked against the new terms), if any.

    With ``by_payment``, a deposit for the same payment under another key is a conflict too
    (the database refuses a second one anyway; this names the cause).
    """
    found = Transaction.objects.filter(idempotency_key=txn.idempotency_key).first()
    if found is None:
        if (
            by_payment
            and txn.transaction_type == TransactionType.DEPOSIT
            and txn.payment_id is not None
        ):
            found = Transaction.objects.filter(
                payment_id=txn.payment_id, transaction_type=TransactionType.DEPOSIT
            ).first()
            if found is not None:
                raise IdempotencyConflict(
                    f"Payment {txn.payment_id} is already credited by {found.idempotency_key}."
                )
        return None
    _check_same_terms(found, txn)
    # Hand the stored row back through the caller's object, as a fresh insert would.
    txn.__dict__.update({f.attname: getattr(found, f.attname) for f in found._meta.concrete_fields})
    txn._state.adding = False
    txn._state.db = found._state.db
    return txn


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


def _lock_balance(user_id: int, *, create: bool) -> UserBalance | None:
    locked = UserBalance.objects.select_for_update()
    balance = locked.filter(user_id=user_id).first()
    if balance is None and create:
        UserBalance.objects.bulk_create([UserBalance(user_id=user_id)], ignore_conflicts=True)
        balance = locked.get(user_id=user_id)
    return balance


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
            balance._ledger_write = True  # type: ignore[attr-defined]
            balance.save(update_fields=_BALANCE_FIELDS)
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


def _apply_to_balance(balance: UserBalance, txn: Transaction, now: Any) -> None:
    _move_balance(balance, txn, now)
    balance._ledger_write = True  # type: ignore[attr-defined]
    balance.save(update_fields=_BALANCE_FIELDS)
