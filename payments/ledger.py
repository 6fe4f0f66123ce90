"""The ledger: the only writer of Transaction and UserBalance.

Every posting runs in one database transaction that locks the user's balance row
(``SELECT ... FOR UPDATE``), so postings of one user are serialised while other users proceed
in parallel. The postings and the balance cache are written together or not at all: on
PostgreSQL by ONE statement (``payments.ledger_pg``), which migration 0018's triggers check at
its end (chain, links, balance = last posting), whatever the client.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from payments import ledger_pg as pg
from payments.errors import ChainBroken, IdempotencyConflict, InsufficientFunds, InvalidAmount
from payments.models import Transaction, UserBalance
from payments.models.transaction import CREDIT_TYPES, DEBIT_TYPES, TransactionType
from payments.money import is_cents

logger = logging.getLogger(__name__)

MAX_AMOUNT = Decimal("1000000000000")  # fits the ledger's 14 digits with room for the sum
ZERO = Decimal("0.00")
_KINDS = frozenset(TransactionType.values)  # Django rebuilds ``.values`` at every read


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
    return _post([posting], expected_after=expected).rows[0]


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


@dataclass(frozen=True)
class Posted:
    """What ``post_batch`` did: ``rows`` (one per posting, stored before or written now, in
    order) and ``fresh`` (those written now)."""

    rows: list[Transaction]
    fresh: list[Transaction]


def post_many(postings: Sequence[Posting]) -> list[Transaction]:
    """Append many postings in one database transaction, all or nothing.

    Each user's balance row is locked once (in user id order), and the new rows and the
    balances are written by one statement, so a batch costs a handful of statements whatever
    its size. Replays return the stored rows as ``post`` does; a conflicting replay or an
    overdraft anywhere raises and writes nothing.
    """
    return _post(postings, expected_after={}).rows


def post_batch(
    postings: Sequence[Posting], *, locked: Mapping[int, Balance] | None = None
) -> Posted:
    """``post_many``, also saying which postings were written now (not replays).

    ``locked``: balance rows the caller has already locked ``FOR UPDATE`` in this transaction
    and read with ``balance_columns`` (``balance_of``), and not posted to since. For a single
    posting on PostgreSQL the ledger then skips its own lock of that user, one statement less
    (a batch locks as always); the database's chain and balance triggers still refuse a write
    that does not continue what is stored.
    """
    return _post(postings, expected_after={}, locked=locked)


# The columns of a balance row the ledger plans from, for a caller that locks it (``locked``).
BALANCE_COLUMNS = ("balance_usd", "transaction_count", "total_deposited", "total_withdrawn")


def balance_columns(alias: str) -> str:
    """``BALANCE_COLUMNS`` as a select list under the table alias ``alias``."""
    return ", ".join(f"{alias}.{column}" for column in BALANCE_COLUMNS)


def balance_of(values: Sequence[Any]) -> Balance:
    """A locked balance row from the values ``balance_columns`` selected."""
    balance, count, deposited, withdrawn = values
    return Balance(balance, count, deposited, withdrawn)


def deposits_of(payment_ids: Sequence[uuid.UUID]) -> list[Transaction]:
    """The DEPOSIT postings of these payments (at most one each)."""
    if connection.vendor == "postgresql":
        rows = pg.run(pg.DEPOSITS_OF, [list(payment_ids)])
        return pg.rows_transactions(rows)
    return list(
        Transaction.objects.filter(
            payment_id__in=payment_ids, transaction_type=TransactionType.DEPOSIT
        )
    )


def lock_balances(user_ids: set[int]) -> None:
    """Lock these users' balance rows in user order, until the transaction ends."""
    if not user_ids:
        return
    if connection.vendor == "postgresql":
        pg.run(pg.LOCK_BALANCES, [sorted(user_ids)])
        return
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
    return balance if balance is not None else ZERO


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


# A batch that loses an insert race (a key, or a payment's one deposit, committed by a
# concurrent transaction of another user) is retried this often; the retry finds it stored.
_RACE_RETRIES = 3


def _post(
    postings: Sequence[Posting],
    *,
    expected_after: dict[str, Decimal],
    locked: Mapping[int, Balance] | None = None,
) -> Posted:
    """The one core of ``post`` and ``post_many``: validate, then write under the users' locks."""
    for p in postings:
        _validate(p)
    keys = [p.idempotency_key for p in postings]
    if len(set(keys)) != len(keys):
        raise IdempotencyConflict("One batch names the same idempotency key twice.")
    if not postings:
        return Posted([], [])
    if connection.vendor == "postgresql" and len(postings) == 1:
        # No savepoint: a conflict makes the one statement write nothing, and is read after.
        with transaction.atomic(savepoint=False):
            posted = _post_one_pg(postings[0], expected_after, locked or {})
        _log(posted.fresh)
        return posted
    write = _post_many_pg if connection.vendor == "postgresql" else _post_orm
    for attempt in range(1, _RACE_RETRIES + 1):
        try:
            with transaction.atomic():
                posted = write(postings, expected_after)
            _log(posted.fresh)
            return posted
        except IntegrityError:
            # The savepoint rolled back, so nothing of ours was written; under the users'
            # locks the next attempt sees the committed winner and replays or refuses it.
            if attempt == _RACE_RETRIES:
                raise
            logger.info("ledger: insert race on %s, retrying (attempt %s)", keys[:3], attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def _log(fresh: list[Transaction]) -> None:
    """One line per posting for a single one; a batch gets one line (per posting at DEBUG):
    the ledger is the record, and a line per row cost a tenth of a settlement batch's time."""
    if len(fresh) == 1 or logger.isEnabledFor(logging.DEBUG):
        level = logging.INFO if len(fresh) == 1 else logging.DEBUG
        for txn in fresh:
            logger.log(
                level,
                "ledger posting user=%s seq=%s type=%s amount=%s key=%s",
                txn.user_id,
                txn.sequence,
                txn.transaction_type,
                txn.amount_usd,
                txn.idempotency_key,
            )
    if len(fresh) > 1:
        logger.info(
            "ledger batch: %s postings for %s users, %s USD in total, keys %s .. %s",
            len(fresh),
            len({t.user_id for t in fresh}),
            sum((t.amount_usd for t in fresh), ZERO),
            fresh[0].idempotency_key,
            fresh[-1].idempotency_key,
        )


@dataclass
class Balance:
    """A locked balance row as the postings of this call move it."""

    balance: Decimal
    count: int
    deposited: Decimal
    withdrawn: Decimal


@dataclass(frozen=True)
class _Planned:
    posting: Posting
    sequence: int
    balance_after: Decimal


def _plan(
    postings: Sequence[Posting], balances: dict[int, Balance], expected_after: dict[str, Decimal]
) -> list[_Planned]:
    """Place each new posting on its user's chain (in order), moving ``balances``; raise on an
    overdraft or an ``expected_after`` off the chain."""
    planned = []
    for p in postings:
        balance = balances.get(p.user_id)
        current = balance.balance if balance is not None else ZERO
        new_balance = current + p.amount_usd
        if balance is None or new_balance < 0:
            raise InsufficientFunds(
                f"Balance {current} USD does not cover a debit of {-p.amount_usd} USD.",
                user_id=p.user_id,
            )
        expected = expected_after.get(p.idempotency_key)
        if expected is not None and expected != new_balance:
            raise ChainBroken(
                f"balance_after {expected} does not continue the ledger: "
                f"the balance is {current} and this posting makes it {new_balance}.",
                user_id=p.user_id,
            )
        balance.balance = new_balance
        balance.count += 1
        if p.kind == TransactionType.DEPOSIT:
            balance.deposited += p.amount_usd
        elif p.kind == TransactionType.WITHDRAWAL:
            balance.withdrawn -= p.amount_usd
        elif p.kind == TransactionType.REFUND and p.withdrawal_request_id:
            balance.withdrawn = max(ZERO, balance.withdrawn - p.amount_usd)
        planned.append(_Planned(p, balance.count, new_balance))
    return planned


# --- PostgreSQL -------------------------------------------------------------------------------


def _lock_pg(user_ids: list[int], credited: set[int]) -> dict[int, Balance]:
    rows = pg.run(pg.LOCK_BALANCES, [user_ids])
    missing = sorted(credited - {row[0] for row in rows})
    if missing:  # a first credit: its balance row starts empty
        pg.run(pg.CREATE_BALANCES, [missing])
        rows += pg.run(pg.LOCK_BALANCES, [missing])
    return {u: Balance(b, n, d, w) for u, b, n, d, w in rows}


def _stored_pg(keys: list[str], deposit_payments: list[uuid.UUID]) -> list[Transaction]:
    return pg.rows_transactions(pg.run(pg.STORED, [keys, deposit_payments]))


def _post_one_pg(
    p: Posting, expected_after: dict[str, Decimal], locked: Mapping[int, Balance]
) -> Posted:
    """Lock (unless the caller has), then one statement that writes the posting and the
    balance, or nothing when the key (or another unique rule) is taken: then, and only then,
    the stored row is read."""
    mine = locked.get(p.user_id)
    if mine is not None:
        balances = {p.user_id: dataclasses.replace(mine)}  # planning moves it: the caller's stays
    else:
        balances = _lock_pg([p.user_id], {p.user_id} if p.amount_usd > 0 else set())
    try:
        planned = _plan([p], balances, expected_after)
    except (InsufficientFunds, ChainBroken):
        replayed = _replayed_pg(p)
        if replayed is None:
            raise
        return Posted([replayed], [])
    fresh = _write_pg(planned, balances, skip=True)
    if fresh:
        return Posted(fresh, fresh)
    replayed = _replayed_pg(p)
    if replayed is not None:
        return Posted([replayed], [])
    raise _conflict(p)


def _replayed_pg(p: Posting) -> Transaction | None:
    """The stored posting of ``p``'s key (checked to have its terms), if any."""
    found = [
        t for t in _stored_pg([p.idempotency_key], []) if t.idempotency_key == p.idempotency_key
    ]
    if not found:
        return None
    _check_same_terms(found[0], p)
    return found[0]


def _conflict(p: Posting) -> IdempotencyConflict:
    """Why a posting whose key is free was refused: its payment or withdrawal has its one."""
    rows = pg.run(pg.CONFLICTING, [p.kind, p.payment_id, p.withdrawal_request_id])
    if rows:
        subject = p.payment_id or p.withdrawal_request_id
        if p.kind == TransactionType.DEPOSIT:
            return IdempotencyConflict(f"Payment {subject} is already credited by {rows[0][0]}.")
        return IdempotencyConflict(f"{subject} already has its {p.kind} ({rows[0][0]}).")
    return IdempotencyConflict(
        f"Posting {p.idempotency_key!r} conflicts with a concurrent posting of user {p.user_id}."
    )


def _post_many_pg(postings: Sequence[Posting], expected_after: dict[str, Decimal]) -> Posted:
    users = sorted({p.user_id for p in postings})
    credited = sorted({p.user_id for p in postings if p.amount_usd > 0})
    if credited:  # before any lock, as every batch does: no lock-order inversion
        pg.run(pg.CREATE_BALANCES, [credited])
    balances = _lock_pg(users, set())
    # Under the users' locks: a posting of any of these keys, if any, is committed and visible.
    keys = [p.idempotency_key for p in postings]
    deposits = [
        p.payment_id for p in postings if p.kind == TransactionType.DEPOSIT and p.payment_id
    ]
    found = _stored_pg(keys, deposits)
    stored = {t.idempotency_key: t for t in found if t.idempotency_key in set(keys)}
    credited_by = {t.payment_id: t.idempotency_key for t in found}
    new = []
    for p in postings:
        if p.idempotency_key in stored:
            _check_same_terms(stored[p.idempotency_key], p)
            continue
        if p.kind == TransactionType.DEPOSIT and p.payment_id in credited_by:
            raise IdempotencyConflict(
                f"Payment {p.payment_id} is already credited by {credited_by[p.payment_id]}."
            )
        new.append(p)
    fresh = _write_pg(_plan(new, balances, expected_after), balances, skip=False) if new else []
    by_key = {t.idempotency_key: t for t in fresh}
    return Posted([stored.get(k) or by_key[k] for k in keys], fresh)


def _write_pg(
    planned: list[_Planned], balances: dict[int, Balance], *, skip: bool
) -> list[Transaction]:
    """The one statement: the postings and their users' balances (nothing with ``skip`` when
    the posting conflicts). Returns the postings written."""
    now = timezone.now()
    ps = [x.posting for x in planned]
    users = sorted({p.user_id for p in ps})
    params: list[Any] = [
        [p.user_id for p in ps],
        [p.kind for p in ps],
        [p.amount_usd for p in ps],
        [x.balance_after for x in planned],
        [x.sequence for x in planned],
        [None if p.payment_id is None else str(p.payment_id) for p in ps],
        [None if p.withdrawal_request_id is None else str(p.withdrawal_request_id) for p in ps],
        [p.description for p in ps],
        [pg.metadata_json(p.metadata) for p in ps],
        [p.idempotency_key for p in ps],
        now,
        now,
        now,
        users,
        [balances[u].balance for u in users],
        [balances[u].count for u in users],
        [balances[u].deposited for u in users],
        [balances[u].withdrawn for u in users],
        len(ps),
    ]
    ids = {key: pk for pk, key in pg.run(pg.WRITE_OR_SKIP if skip else pg.WRITE, params)}
    if not ids:
        return []
    alias = connection.alias
    return [
        pg.transaction_of(
            {
                "id": ids[x.posting.idempotency_key],
                "user_id": x.posting.user_id,
                "transaction_type": x.posting.kind,
                "amount_usd": x.posting.amount_usd,
                "balance_after": x.balance_after,
                "sequence": x.sequence,
                "payment_id": x.posting.payment_id,
                "withdrawal_request_id": x.posting.withdrawal_request_id,
                "description": x.posting.description,
                "metadata": x.posting.metadata,
                "idempotency_key": x.posting.idempotency_key,
                "created_at": now,
            },
            alias,
        )
        for x in planned
    ]


# --- elsewhere (SQLite, the embedded demo): the ORM ---------------------------------------------


def _post_orm(postings: Sequence[Posting], expected_after: dict[str, Decimal]) -> Posted:
    credited = sorted({p.user_id for p in postings if p.amount_usd > 0})
    UserBalance._base_manager.bulk_create(
        [UserBalance(user_id=user_id) for user_id in credited], ignore_conflicts=True
    )
    rows = {
        b.user_id: b
        for b in UserBalance._base_manager.select_for_update()
        .filter(user_id__in={p.user_id for p in postings})
        .order_by("user_id")
    }
    balances = {
        u: Balance(b.balance_usd, b.transaction_count, b.total_deposited, b.total_withdrawn)
        for u, b in rows.items()
    }
    keys = [p.idempotency_key for p in postings]
    stored = {t.idempotency_key: t for t in Transaction.objects.filter(idempotency_key__in=keys)}
    new = []
    for p in postings:
        if p.idempotency_key in stored:
            _check_same_terms(stored[p.idempotency_key], p)
        else:
            new.append(p)
    deposits = [p.payment_id for p in new if p.kind == TransactionType.DEPOSIT and p.payment_id]
    taken = (
        Transaction.objects.filter(
            payment_id__in=deposits, transaction_type=TransactionType.DEPOSIT
        )
        .values_list("payment_id", "idempotency_key")
        .first()
    )
    if taken is not None:
        raise IdempotencyConflict(f"Payment {taken[0]} is already credited by {taken[1]}.")
    planned = _plan(new, balances, expected_after)
    now = timezone.now()
    fresh = [
        Transaction(
            user_id=x.posting.user_id,
            transaction_type=x.posting.kind,
            amount_usd=x.posting.amount_usd,
            balance_after=x.balance_after,
            sequence=x.sequence,
            idempotency_key=x.posting.idempotency_key,
            description=x.posting.description,
            metadata=x.posting.metadata,
            payment_id=x.posting.payment_id,
            withdrawal_request_id=x.posting.withdrawal_request_id,
        )
        for x in planned
    ]
    Transaction._base_manager.bulk_create(fresh)
    for user_id in sorted({p.user_id for p in new}):
        b = balances[user_id]
        UserBalance._base_manager.filter(user_id=user_id).update(
            balance_usd=b.balance,
            transaction_count=b.count,
            total_deposited=b.deposited,
            total_withdrawn=b.withdrawn,
            last_transaction_at=now,
            updated_at=now,
        )
    by_key = {t.idempotency_key: t for t in fresh}
    return Posted([stored.get(k) or by_key[k] for k in keys], fresh)


# --- rules ------------------------------------------------------------------------------------


def _validate(p: Posting) -> None:
    amount = p.amount_usd
    if not isinstance(amount, Decimal):
        raise InvalidAmount(f"amount_usd must be a Decimal, not {type(amount).__name__}.")
    if not is_cents(amount) or amount == 0 or abs(amount) > MAX_AMOUNT:
        raise InvalidAmount(f"amount_usd {amount} is not a non-zero amount in whole cents.")
    kind = p.kind
    if kind not in _KINDS:
        raise InvalidAmount(f"Unknown transaction type {kind!r}.")
    if kind in CREDIT_TYPES and amount < 0:
        raise InvalidAmount(f"A {kind} is a credit: amount_usd must be positive.")
    if kind in DEBIT_TYPES and amount > 0:
        raise InvalidAmount(f"A {kind} is a debit: amount_usd must be negative.")
    if not p.idempotency_key:
        raise InvalidAmount("Every posting needs an idempotency key.")


def _check_same_terms(found: Transaction, p: Posting) -> None:
    same = (
        found.user_id == p.user_id
        and found.transaction_type == p.kind
        and found.amount_usd == p.amount_usd
        and found.payment_id == p.payment_id
        and found.withdrawal_request_id == p.withdrawal_request_id
    )
    if not same:
        raise IdempotencyConflict(
            f"Idempotency key {p.idempotency_key!r} was already used for "
            f"{found.transaction_type} {found.amount_usd} USD of user {found.user_id}."
        )
