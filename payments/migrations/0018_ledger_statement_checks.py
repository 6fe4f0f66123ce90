"""The ledger's checks once per statement, set-based, with plans that do not depend on history.

On PostgreSQL this replaces 0002/0007's row triggers of the ledger (a BEFORE INSERT chain check
per posting and two DEFERRED balance checks per posting and per balance row: 210 runs for a
batch of 200 deposits over 10 users) with statement-level AFTER triggers over transition
tables, each run once per statement whatever its size:

- ``payments_transaction_chain`` (AFTER INSERT): every new posting has its predecessor
  (``sequence - 1``, or none for 1) with ``balance_after = previous + amount_usd`` (with the
  unique (user, sequence) this is the old "previous maximum + 1" rule); a DEPOSIT tied to a
  payment needs it completed; a REFUND tied to a withdrawal needs it rejected, cancelled or
  failed (a missing one is now refused too); and each touched user's balance row equals their
  last posting (balance and count) AT THE END OF THE STATEMENT.
- ``payments_userbalance_matches_ledger`` / ``..._insert_matches_ledger`` (AFTER UPDATE /
  INSERT): every balance row written equals its user's last posting (or zero and no postings).

Stricter than before: the check is at the end of the statement, not at commit, so a posting
and its balance change must be written by ONE statement (the ledger does it with a
data-modifying WITH query, whose AFTER triggers fire at the end of the whole query). A raw
posting without its balance update, or a balance update without its posting, is refused at
once, whoever sends it.

Plans: a trigger function's queries are planned once per connection and kept, so a connection
that started on an empty ledger used to keep sequential scans. These functions pin their
planner settings (no sequential scan, no hash or merge join: nested loops over the statement's
new rows with index probes), so the plan is the same whatever the table held at planning time;
the row-level functions that read the ledger by a parameter (withdrawal hold and guard, manual
guard) get ``plan_cache_mode = force_custom_plan``.

Indexes: the ledger drops two that other indexes cover: ``user_id`` alone (the unique
(user_id, sequence) serves every lookup by user) and the ``varchar_pattern_ops`` copy of the
idempotency key (nothing searches keys by prefix; the key stays unique, now as a named
constraint ``txn_idempotency_key_unique``). SQLite (the embedded demo) gets the model change
only.
"""

from __future__ import annotations

import importlib
from typing import Any

from django.conf import settings
from django.db import migrations, models

guards = importlib.import_module("payments.migrations.0007_state_guards")

# Planner settings the statement-level functions run with (see the docstring).
_PINNED = (
    "SET search_path = pg_catalog, public, pg_temp "
    "SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off"
)

PG_FORWARD = f"""
DROP TRIGGER IF EXISTS payments_transaction_chain ON public.payments_transaction;
DROP TRIGGER IF EXISTS payments_transaction_balance_matches ON public.payments_transaction;
DROP TRIGGER IF EXISTS payments_userbalance_matches_ledger ON public.payments_userbalance;

CREATE OR REPLACE FUNCTION public.payments_ledger_chain() RETURNS trigger
LANGUAGE plpgsql {_PINNED} AS $$
DECLARE
    bad record;
    last_sequence bigint;
BEGIN
    -- Each new posting continues its user's chain: its predecessor exists (new or stored).
    SELECT n.user_id, n.sequence, n.amount_usd, n.balance_after,
           p.sequence AS prev_sequence, p.balance_after AS prev_balance INTO bad
      FROM new_postings n
      LEFT JOIN public.payments_transaction p
        ON p.user_id = n.user_id AND p.sequence = n.sequence - 1
     WHERE CASE WHEN n.sequence = 1 THEN n.balance_after <> n.amount_usd
                ELSE p.sequence IS NULL OR n.balance_after <> p.balance_after + n.amount_usd
           END
     ORDER BY n.user_id, n.sequence
     LIMIT 1;
    IF FOUND THEN
        IF bad.sequence <> 1 AND bad.prev_sequence IS NULL THEN
            SELECT max(t.sequence) INTO last_sequence
              FROM public.payments_transaction t
             WHERE t.user_id = bad.user_id AND t.sequence < bad.sequence;
            RAISE EXCEPTION 'ledger chain broken for user %: sequence % follows %',
                bad.user_id, bad.sequence, coalesce(last_sequence, 0)
                USING ERRCODE = 'check_violation';
        END IF;
        RAISE EXCEPTION 'ledger chain broken for user %: balance_after % is not % + %',
            bad.user_id, bad.balance_after, coalesce(bad.prev_balance, 0), bad.amount_usd
            USING ERRCODE = 'check_violation';
    END IF;

    SELECT n.payment_id, p.status INTO bad
      FROM new_postings n
      LEFT JOIN public.payments_payment p ON p.id = n.payment_id
     WHERE n.transaction_type = 'deposit' AND n.payment_id IS NOT NULL
       AND p.status IS DISTINCT FROM 'completed'
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'deposit for payment % in status %: only completed payments are credited',
            bad.payment_id, bad.status USING ERRCODE = 'check_violation';
    END IF;

    SELECT n.withdrawal_request_id, w.status INTO bad
      FROM new_postings n
      LEFT JOIN public.payments_withdrawalrequest w ON w.id = n.withdrawal_request_id
     WHERE n.transaction_type = 'refund' AND n.withdrawal_request_id IS NOT NULL
       AND (w.status IS NULL OR w.status NOT IN ('rejected', 'cancelled', 'failed'))
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'refund for withdrawal % in status %', bad.withdrawal_request_id,
            bad.status USING ERRCODE = 'check_violation';
    END IF;

    -- The balance of each touched user is its last posting, now (the same statement).
    SELECT u.user_id, b.user_id AS has_row, b.balance_usd, b.transaction_count,
           l.sequence, l.balance_after INTO bad
      FROM (SELECT DISTINCT n.user_id FROM new_postings n) u
      LEFT JOIN public.payments_userbalance b ON b.user_id = u.user_id
      CROSS JOIN LATERAL (
            SELECT t.sequence, t.balance_after FROM public.payments_transaction t
             WHERE t.user_id = u.user_id ORDER BY t.sequence DESC LIMIT 1) l
     WHERE b.user_id IS NULL OR b.balance_usd <> l.balance_after
        OR b.transaction_count <> l.sequence
     LIMIT 1;
    IF FOUND THEN
        IF bad.has_row IS NULL THEN
            RAISE EXCEPTION 'user % has postings but no balance row', bad.user_id
                USING ERRCODE = 'check_violation';
        END IF;
        RAISE EXCEPTION 'balance of user % (% after % postings) differs from its ledger (% after %)',
            bad.user_id, bad.balance_usd, bad.transaction_count, bad.balance_after, bad.sequence
            USING ERRCODE = 'check_violation',
                  HINT = 'A posting and its balance change are written by one statement.';
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER payments_transaction_chain
    AFTER INSERT ON public.payments_transaction
    REFERENCING NEW TABLE AS new_postings
    FOR EACH STATEMENT EXECUTE FUNCTION public.payments_ledger_chain();

CREATE OR REPLACE FUNCTION public.payments_balance_matches_ledger() RETURNS trigger
LANGUAGE plpgsql {_PINNED} AS $$
DECLARE
    bad record;
BEGIN
    SELECT b.user_id, b.balance_usd, b.transaction_count,
           coalesce(l.sequence, 0) AS sequence,
           coalesce(l.balance_after, 0) AS balance_after INTO bad
      FROM new_balances b
      LEFT JOIN LATERAL (
            SELECT t.sequence, t.balance_after FROM public.payments_transaction t
             WHERE t.user_id = b.user_id ORDER BY t.sequence DESC LIMIT 1) l ON true
     WHERE b.balance_usd <> coalesce(l.balance_after, 0)
        OR b.transaction_count <> coalesce(l.sequence, 0)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'balance of user % (% after % postings) differs from its ledger (% after %)',
            bad.user_id, bad.balance_usd, bad.transaction_count, bad.balance_after, bad.sequence
            USING ERRCODE = 'check_violation',
                  HINT = 'A posting and its balance change are written by one statement.';
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER payments_userbalance_matches_ledger
    AFTER UPDATE ON public.payments_userbalance
    REFERENCING NEW TABLE AS new_balances
    FOR EACH STATEMENT EXECUTE FUNCTION public.payments_balance_matches_ledger();
CREATE TRIGGER payments_userbalance_insert_matches_ledger
    AFTER INSERT ON public.payments_userbalance
    REFERENCING NEW TABLE AS new_balances
    FOR EACH STATEMENT EXECUTE FUNCTION public.payments_balance_matches_ledger();

ALTER FUNCTION public.payments_withdrawal_has_hold() SET plan_cache_mode = force_custom_plan;
ALTER FUNCTION public.payments_withdrawal_guard() SET plan_cache_mode = force_custom_plan;
ALTER FUNCTION public.payments_manual_guard() SET plan_cache_mode = force_custom_plan;
"""

# Back to 0007's row triggers and functions.
PG_BACKWARD = (
    """
DROP TRIGGER IF EXISTS payments_transaction_chain ON public.payments_transaction;
DROP TRIGGER IF EXISTS payments_userbalance_matches_ledger ON public.payments_userbalance;
DROP TRIGGER IF EXISTS payments_userbalance_insert_matches_ledger ON public.payments_userbalance;
ALTER FUNCTION public.payments_withdrawal_has_hold() RESET plan_cache_mode;
ALTER FUNCTION public.payments_withdrawal_guard() RESET plan_cache_mode;
ALTER FUNCTION public.payments_manual_guard() RESET plan_cache_mode;
ALTER FUNCTION public.payments_ledger_chain() RESET ALL;
ALTER FUNCTION public.payments_balance_matches_ledger() RESET ALL;
"""
    + guards.LEDGER_FUNCTIONS_QUALIFIED
    + """
CREATE TRIGGER payments_transaction_chain
    BEFORE INSERT ON public.payments_transaction
    FOR EACH ROW EXECUTE FUNCTION public.payments_ledger_chain();
CREATE CONSTRAINT TRIGGER payments_transaction_balance_matches
    AFTER INSERT ON public.payments_transaction
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION public.payments_balance_matches_ledger();
CREATE CONSTRAINT TRIGGER payments_userbalance_matches_ledger
    AFTER INSERT OR UPDATE ON public.payments_userbalance
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION public.payments_balance_matches_ledger();
"""
)


def forward(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(PG_FORWARD, params=None)


def backward(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(PG_BACKWARD, params=None)


class OnPostgresql(migrations.operations.base.Operation):
    """A model change done on PostgreSQL by the SQL given (keeping the existing index, no
    rebuild), elsewhere by the operation itself."""

    reversible = True

    def __init__(self, operation: Any, forward_sql: str, backward_sql: str) -> None:
        self.operation = operation
        self.forward_sql = forward_sql
        self.backward_sql = backward_sql

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        return (
            self.__class__.__qualname__,
            [self.operation, self.forward_sql, self.backward_sql],
            {},
        )

    def state_forwards(self, app_label: str, state: Any) -> None:
        self.operation.state_forwards(app_label, state)

    def database_forwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(self.forward_sql, params=None)
        else:
            self.operation.database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(self.backward_sql, params=None)
        else:
            self.operation.database_backwards(app_label, schema_editor, from_state, to_state)

    def describe(self) -> str:
        return f"{self.operation.describe()} (PostgreSQL: by SQL)"


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0017_webhooks"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        OnPostgresql(
            migrations.AlterField(
                model_name="transaction",
                name="user",
                field=models.ForeignKey(
                    db_index=False,
                    on_delete=models.deletion.PROTECT,
                    related_name="ledger_transactions",
                    to=settings.AUTH_USER_MODEL,
                ),
            ),
            "DROP INDEX IF EXISTS public.payments_transaction_user_id_ca456f41",
            "CREATE INDEX IF NOT EXISTS payments_transaction_user_id_ca456f41 "
            "ON public.payments_transaction (user_id)",
        ),
        OnPostgresql(
            migrations.AlterField(
                model_name="transaction",
                name="idempotency_key",
                field=models.CharField(editable=False, max_length=200),
            ),
            "DROP INDEX IF EXISTS public.payments_transaction_idempotency_key_b68ab6d2_like",
            "CREATE INDEX IF NOT EXISTS payments_transaction_idempotency_key_b68ab6d2_like "
            "ON public.payments_transaction (idempotency_key varchar_pattern_ops)",
        ),
        OnPostgresql(
            migrations.AddConstraint(
                model_name="transaction",
                constraint=models.UniqueConstraint(
                    fields=("idempotency_key",), name="txn_idempotency_key_unique"
                ),
            ),
            "ALTER TABLE public.payments_transaction RENAME CONSTRAINT "
            "payments_transaction_idempotency_key_key TO txn_idempotency_key_unique",
            "ALTER TABLE public.payments_transaction RENAME CONSTRAINT "
            "txn_idempotency_key_unique TO payments_transaction_idempotency_key_key",
        ),
        migrations.RunPython(forward, backward),
    ]
