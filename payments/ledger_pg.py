"""The ledger's statements on PostgreSQL: fixed SQL texts, values bound by the server.

``payments.ledger`` decides; this module only talks to the database. Each statement has one
text whatever the number of postings (the values travel as arrays), is sent with server-side
binding on Django's own connection (so it joins the caller's transaction, and no query string
is composed in Python), and unprepared: safe behind PgBouncer in transaction pooling, and no
generic plan built while the ledger was empty outlives its growth (a prepared statement's does:
tests/payments/test_ledger_checks.py, the warm-connection test). A posting and its balance
change are written by ONE statement, as migration 0018's triggers require.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Sequence
from typing import Any

import psycopg
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection
from django.db.models.base import ModelState

from payments.models import Transaction

# Every concrete column of a posting, in this order wherever rows are read.
COLUMNS = (
    "id",
    "user_id",
    "transaction_type",
    "amount_usd",
    "balance_after",
    "sequence",
    "payment_id",
    "withdrawal_request_id",
    "description",
    "metadata",
    "idempotency_key",
    "created_at",
)
_SELECT = ", ".join(f"t.{c}" for c in COLUMNS)

LOCK_BALANCES = (
    "SELECT user_id, balance_usd, transaction_count, total_deposited, total_withdrawn "
    "FROM payments_userbalance WHERE user_id = ANY(%s::int[]) ORDER BY user_id FOR UPDATE"
)
CREATE_BALANCES = (
    "INSERT INTO payments_userbalance (user_id, balance_usd, total_deposited, total_withdrawn, "
    "transaction_count, created_at, updated_at) "
    "SELECT u, 0, 0, 0, 0, now(), now() FROM unnest(%s::int[]) AS u "
    "ON CONFLICT (user_id) DO NOTHING"
)
# Stored postings of these keys, and deposits of these payments (under any key).
STORED = (
    f"SELECT {_SELECT} FROM payments_transaction t WHERE t.idempotency_key = ANY(%s::text[]) "  # noqa: S608 - column names from code
    "OR (t.transaction_type = 'deposit' AND t.payment_id = ANY(%s::uuid[]))"
)
DEPOSITS_OF = (
    f"SELECT {_SELECT} FROM payments_transaction t "  # noqa: S608 - column names from code
    "WHERE t.transaction_type = 'deposit' AND t.payment_id = ANY(%s::uuid[])"
)
# A posting that conflicts with a stored one on a unique rule other than its key.
CONFLICTING = (
    "SELECT t.idempotency_key FROM payments_transaction t WHERE t.transaction_type = %s AND "
    "(t.payment_id = %s::uuid OR t.withdrawal_request_id = %s::uuid) LIMIT 1"
)
# The postings and the balances in one statement; with ``skip`` (one posting) a stored key or
# another unique rule makes it write nothing at all, else such a conflict is an error.
_WRITE = """
WITH v AS (
    SELECT * FROM unnest(%s::int[], %s::text[], %s::numeric[], %s::numeric[], %s::bigint[],
                         %s::uuid[], %s::uuid[], %s::text[], %s::text[], %s::text[])
        AS v(user_id, kind, amount, balance_after, seq, payment_id, withdrawal_id,
             description, metadata, idempotency_key)
), ins AS (
    INSERT INTO payments_transaction (user_id, transaction_type, amount_usd, balance_after,
        sequence, payment_id, withdrawal_request_id, description, metadata, idempotency_key,
        created_at)
    SELECT user_id, kind, amount, balance_after, seq, payment_id, withdrawal_id, description,
           metadata::jsonb, idempotency_key, %s::timestamptz
      FROM v ORDER BY user_id, seq
    {conflict}
    RETURNING id, idempotency_key
), bal AS (
    UPDATE payments_userbalance AS b
       SET balance_usd = n.balance, transaction_count = n.count, total_deposited = n.deposited,
           total_withdrawn = n.withdrawn, last_transaction_at = %s::timestamptz,
           updated_at = %s::timestamptz
      FROM unnest(%s::int[], %s::numeric[], %s::bigint[], %s::numeric[], %s::numeric[])
        AS n(user_id, balance, count, deposited, withdrawn)
     WHERE b.user_id = n.user_id AND (SELECT count(*) FROM ins) = %s
)
SELECT id, idempotency_key FROM ins
"""
WRITE = _WRITE.format(conflict="")
WRITE_OR_SKIP = _WRITE.format(conflict="ON CONFLICT DO NOTHING")


def run(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Execute one statement on Django's connection, values bound by the server: its rows.

    Errors come out as Django's (IntegrityError, ...), the statement is logged where Django
    logs queries (DEBUG, ``CaptureQueriesContext``), and it passes through the connection's
    execute wrappers like any ORM query (the API's idempotency guard notes writes there: a
    write it could not see would let a retry write twice). A list parameter goes as array
    input text (``array_literal``), for a ``%s::type[]`` placeholder.
    """
    connection.ensure_connection()
    started = time.monotonic()
    found: list[tuple[Any, ...]] = []

    def execute(sql: str, params: Any, many: bool, context: dict[str, Any]) -> None:
        with connection.wrap_database_errors:
            cursor = psycopg.Cursor(connection.connection)
            try:
                cursor.execute(sql, params, prepare=False)
                found.extend(cursor.fetchall() if cursor.description is not None else [])
            finally:
                cursor.close()

    params = [array_literal(v) if isinstance(v, list) else v for v in params]
    executor: Any = execute
    for wrapper in reversed(connection.execute_wrappers):
        executor = functools.partial(wrapper, executor)
    executor(sql, params, False, {"connection": connection, "cursor": None})
    if connection.queries_logged:
        connection.queries_log.append(
            {"sql": sql, "time": f"{time.monotonic() - started:.3f}", "params": "server-bound"}
        )
    return found


def array_literal(values: list[Any]) -> str:
    """A list as PostgreSQL's array input text (``{"1","2",NULL}``), for a ``%s::type[]``.

    psycopg dumps a list element by element in Python, and scans it first to pick the element
    type: the ledger's batch statement spent a fifth of the worker's time there. Every element
    is quoted (valid input for any element type) with ``\\`` and ``"`` escaped, so text holds
    whatever it held; None is NULL.
    """
    return "{" + ",".join(_element(v) for v in values) + "}"


def _element(value: Any) -> str:
    if value is None:
        return "NULL"
    text = str(value)
    if "\\" in text or '"' in text:
        text = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + text + '"'


def metadata_json(metadata: dict[str, Any]) -> str:
    """The JSON the metadata field stores: Django's encoder only for what plain JSON lacks
    (dates, Decimals, UUIDs), as building one per posting costs more than the encoding."""
    try:
        return json.dumps(metadata)
    except TypeError:
        return json.dumps(metadata, cls=DjangoJSONEncoder)


def transaction_of(values: dict[str, Any], alias: str | None = None) -> Transaction:
    """A stored posting as a model instance, from its column values (no ``__init__`` work).
    ``alias``: the connection's, when the caller builds many (reading it costs a lookup)."""
    txn = Transaction.__new__(Transaction)
    txn._state = ModelState()
    txn._state.adding = False
    txn._state.db = alias or connection.alias
    metadata = values["metadata"]
    if isinstance(metadata, str | bytes):
        values = {**values, "metadata": json.loads(metadata)}  # as JSONField reads it
    txn.__dict__.update(values)
    return txn


def row_transaction(row: Sequence[Any], alias: str | None = None) -> Transaction:
    return transaction_of(dict(zip(COLUMNS, row, strict=True)), alias)


def rows_transactions(rows: list[tuple[Any, ...]]) -> list[Transaction]:
    alias = connection.alias
    return [row_transaction(row, alias) for row in rows]
