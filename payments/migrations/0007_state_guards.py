"""Database-enforced state of withdrawals, payments and balances (PostgreSQL only).

The owner services (payments.services.withdrawals.lifecycle, payments.services.deposits) are the
first line; these triggers are the second, so that no client (a bug, raw SQL, an injected
statement run as the application role) can break the state machines of DESIGN.md section 5:

- payments_withdrawalrequest: a new row is 'pending'; only WITHDRAWAL_TRANSITIONS are admitted;
  WITHDRAWAL_FROZEN_COLUMNS never change; by commit every new row has its hold posting
  (deferred constraint trigger); it never becomes completed once its hold was refunded; no
  DELETE, no TRUNCATE.
- payments_payment: only PAYMENT_TRANSITIONS are admitted (this replaces 0002's
  payments_payment_final_status); PAYMENT_FROZEN_COLUMNS never change; no DELETE, no TRUNCATE.
- payments_userbalance: no DELETE, no TRUNCATE.
- The maintenance switch ``SET LOCAL payments.allow_truncate = on`` (Django's test flush,
  benchmark resets) is honoured only for the table's owner (or a member of it) and superusers,
  on payments_transaction (0002's function is replaced) and on the tables above. The
  application role (``manage.py db_roles``) owns nothing, so for it TRUNCATE stays refused.

No session can shadow what the triggers read: pg_temp is searched first for relations unless
named, so a temporary table called payments_transaction used to fool 0002's chain check. Every
new trigger function pins ``search_path = pg_catalog, public, pg_temp`` and names its tables
``public.``; 0002's chain and balance functions, which run on every posting, are re-created
with ``public.`` tables only (a pinned search_path costs each call a microsecond or two). The
application role can create objects in pg_temp alone, never searched for functions/operators.

The transition tables are data: a later migration extends them and re-renders the functions,
e.g. (a ``review`` status, completed -> refunded)::

    guards = importlib.import_module("payments.migrations.0007_state_guards")
    table = {**guards.PAYMENT_TRANSITIONS, "completed": ("refunded",), ...}
    schema_editor.execute(guards.payment_guard_function_sql(table), params=None)

SQLite (the embedded demo) gets nothing new.
"""

import re

from django.db import migrations

# old status -> the statuses it may move to. Same status is no transition and always allowed.
WITHDRAWAL_TRANSITIONS = {
    "pending": ("approved", "cancelled", "rejected"),
    "approved": ("processing", "rejected", "completed"),
    "processing": ("completed", "failed"),
    "completed": (),
    "rejected": (),
    "cancelled": (),
    "failed": (),
}
WITHDRAWAL_FROZEN_COLUMNS = (
    "id",
    "user_id",
    "amount_usd",
    "currency_id",
    "wallet_address",
    "wallet_extra_id",
    "network_fee_usd",
    "service_fee_usd",
    "internal_withdrawal_id",
    "created_at",
)

# Forward only.
PAYMENT_TRANSITIONS = {
    "pending": (
        "confirming", "confirmed", "partially_paid", "completed",
        "failed", "expired", "refunded", "cancelled",
    ),
    "confirming": (
        "confirmed", "partially_paid", "completed", "failed", "expired", "refunded", "cancelled",
    ),
    "confirmed": ("partially_paid", "completed", "failed", "expired", "refunded", "cancelled"),
    "partially_paid": ("completed", "failed", "expired", "refunded", "cancelled"),
    "completed": (),
    "failed": (),
    "expired": (),
    "refunded": (),
    "cancelled": (),
}
PAYMENT_FROZEN_COLUMNS = ("id", "user_id", "amount_usd", "currency_id", "internal_payment_id", "created_at")

PINNED_SEARCH_PATH = "SET search_path = pg_catalog, public, pg_temp"

_WORD = re.compile(r"^[a-z_][a-z0-9_]*$")


def _word(value):
    """A status or column name, checked before it is written into SQL."""
    if not _WORD.match(value):
        raise ValueError(f"{value!r} is not a plain lower-case name")
    return value


def _transition_allowed_sql(transitions):
    """A boolean SQL expression: may OLD.status become NEW.status (they differ)?"""
    whens = []
    for old, targets in transitions.items():
        if targets:
            listed = ", ".join(f"'{_word(t)}'" for t in targets)
            whens.append(f"            WHEN '{_word(old)}' THEN NEW.status IN ({listed})")
        else:
            whens.append(f"            WHEN '{_word(old)}' THEN false")
    return "CASE OLD.status\n" + "\n".join(whens) + "\n            ELSE false\n        END"


def _changed_column_sql(columns):
    """A text SQL expression: the first frozen column whose value changed, else NULL."""
    whens = "\n".join(
        f"            WHEN NEW.{_word(c)} IS DISTINCT FROM OLD.{_word(c)} THEN '{c}'"
        for c in columns
    )
    return "CASE\n" + whens + "\n        END"


def _final_statuses_sql(transitions):
    """The statuses nothing leaves, as an SQL list ('x', 'y'), or ('') if none."""
    finals = [f"'{_word(old)}'" for old, targets in transitions.items() if not targets]
    return "(" + (", ".join(finals) or "''") + ")"


def _update_of(columns):
    return ", ".join(_word(c) for c in ("status", *columns))


# The switch counts only for the owner of the table (or a member of the owner role) and for
# superusers; ``pg_has_role(..., 'MEMBER')`` is true for superusers as well.
_SWITCH_HONOURED = """
    pg_catalog.current_setting('payments.allow_truncate', true) = 'on'
    AND (SELECT r.rolsuper OR pg_catalog.pg_has_role(r.oid, c.relowner, 'MEMBER')
           FROM pg_catalog.pg_roles r, pg_catalog.pg_class c
          WHERE r.rolname = current_user AND c.oid = TG_RELID)
"""


def withdrawal_guard_function_sql(transitions=WITHDRAWAL_TRANSITIONS,
                                  frozen=WITHDRAWAL_FROZEN_COLUMNS):
    return f"""
CREATE OR REPLACE FUNCTION public.payments_withdrawal_guard() RETURNS trigger
LANGUAGE plpgsql {PINNED_SEARCH_PATH} AS $$
DECLARE
    changed text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.status IS DISTINCT FROM 'pending' THEN
            RAISE EXCEPTION 'withdrawal % must be created pending, not %: it is reviewed first',
                NEW.internal_withdrawal_id, NEW.status USING ERRCODE = 'check_violation';
        END IF;
        RETURN NEW;
    END IF;
    changed := {_changed_column_sql(frozen)};
    IF changed IS NOT NULL THEN
        RAISE EXCEPTION 'withdrawal % cannot change its % after it is requested',
            OLD.internal_withdrawal_id, changed USING ERRCODE = 'check_violation',
            HINT = 'Cancel or reject it and request a new one.';
    END IF;
    IF NEW.status IS DISTINCT FROM OLD.status THEN
        IF OLD.status IN {_final_statuses_sql(transitions)} THEN
            RAISE EXCEPTION 'withdrawal % is %, a final status; it cannot become %',
                OLD.internal_withdrawal_id, OLD.status, NEW.status
                USING ERRCODE = 'check_violation';
        END IF;
        IF NOT ({_transition_allowed_sql(transitions)}) THEN
            RAISE EXCEPTION 'withdrawal % cannot move from % to %',
                OLD.internal_withdrawal_id, OLD.status, NEW.status
                USING ERRCODE = 'check_violation';
        END IF;
        IF NEW.status = 'completed' AND EXISTS (
            SELECT 1 FROM public.payments_transaction t
             WHERE t.withdrawal_request_id = NEW.id AND t.transaction_type = 'refund'
        ) THEN
            RAISE EXCEPTION 'withdrawal % cannot be completed: its hold was already refunded',
                OLD.internal_withdrawal_id USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    RETURN NEW;
END;
$$;
"""


def payment_guard_function_sql(transitions=PAYMENT_TRANSITIONS, frozen=PAYMENT_FROZEN_COLUMNS):
    return f"""
CREATE OR REPLACE FUNCTION public.payments_payment_guard() RETURNS trigger
LANGUAGE plpgsql {PINNED_SEARCH_PATH} AS $$
DECLARE
    changed text;
BEGIN
    changed := {_changed_column_sql(frozen)};
    IF changed IS NOT NULL THEN
        RAISE EXCEPTION 'payment % cannot change its % after it is created',
            OLD.internal_payment_id, changed USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.status IS DISTINCT FROM OLD.status THEN
        IF OLD.status IN {_final_statuses_sql(transitions)} THEN
            RAISE EXCEPTION 'payment % is %, a final status; it cannot become %',
                OLD.internal_payment_id, OLD.status, NEW.status USING ERRCODE = 'check_violation';
        END IF;
        IF NOT ({_transition_allowed_sql(transitions)}) THEN
            RAISE EXCEPTION 'payment % cannot move from % to %: a payment only moves forward',
                OLD.internal_payment_id, OLD.status, NEW.status USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    RETURN NEW;
END;
$$;
"""


def guard_triggers_sql(withdrawal_frozen=WITHDRAWAL_FROZEN_COLUMNS,
                       payment_frozen=PAYMENT_FROZEN_COLUMNS):
    """(Re)create the guard triggers; they fire on UPDATEs that set a status or frozen column."""
    return f"""
DROP TRIGGER IF EXISTS payments_withdrawalrequest_guard ON public.payments_withdrawalrequest;
CREATE TRIGGER payments_withdrawalrequest_guard
    BEFORE INSERT OR UPDATE OF {_update_of(withdrawal_frozen)}
    ON public.payments_withdrawalrequest
    FOR EACH ROW EXECUTE FUNCTION public.payments_withdrawal_guard();

DROP TRIGGER IF EXISTS payments_payment_guard ON public.payments_payment;
CREATE TRIGGER payments_payment_guard
    BEFORE UPDATE OF {_update_of(payment_frozen)} ON public.payments_payment
    FOR EACH ROW EXECUTE FUNCTION public.payments_payment_guard();
"""


LEDGER_FUNCTIONS_QUALIFIED = r"""
-- 0002's chain and balance checks, with their tables named public.*: a temporary table named
-- like a ledger table (pg_temp is searched first for relations) must not fool them. Qualified
-- rather than given a pinned search_path, which would cost every posting a few microseconds.
CREATE OR REPLACE FUNCTION public.payments_ledger_chain() RETURNS trigger AS $$
DECLARE
    prev_sequence bigint := 0;
    prev_balance numeric := 0;
    linked_status varchar;
BEGIN
    SELECT t.sequence, t.balance_after INTO prev_sequence, prev_balance
      FROM public.payments_transaction t
     WHERE t.user_id = NEW.user_id
     ORDER BY t.sequence DESC
     LIMIT 1;
    IF NOT FOUND THEN
        prev_sequence := 0;
        prev_balance := 0;
    END IF;
    IF NEW.sequence <> prev_sequence + 1 THEN
        RAISE EXCEPTION 'ledger chain broken for user %: sequence % follows %',
            NEW.user_id, NEW.sequence, prev_sequence USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.balance_after <> prev_balance + NEW.amount_usd THEN
        RAISE EXCEPTION 'ledger chain broken for user %: balance_after % is not % + %',
            NEW.user_id, NEW.balance_after, prev_balance, NEW.amount_usd
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.transaction_type = 'deposit' AND NEW.payment_id IS NOT NULL THEN
        SELECT p.status INTO linked_status FROM public.payments_payment p WHERE p.id = NEW.payment_id;
        IF linked_status IS DISTINCT FROM 'completed' THEN
            RAISE EXCEPTION 'deposit for payment % in status %: only completed payments are credited',
                NEW.payment_id, linked_status USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    IF NEW.transaction_type = 'refund' AND NEW.withdrawal_request_id IS NOT NULL THEN
        SELECT w.status INTO linked_status
          FROM public.payments_withdrawalrequest w WHERE w.id = NEW.withdrawal_request_id;
        IF linked_status NOT IN ('rejected', 'cancelled', 'failed') THEN
            RAISE EXCEPTION 'refund for withdrawal % in status %', NEW.withdrawal_request_id,
                linked_status USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION public.payments_balance_matches_ledger() RETURNS trigger AS $$
DECLARE
    cached_balance numeric;
    cached_count bigint;
    last_sequence bigint := 0;
    last_balance numeric := 0;
BEGIN
    SELECT b.balance_usd, b.transaction_count INTO cached_balance, cached_count
      FROM public.payments_userbalance b WHERE b.user_id = NEW.user_id;
    SELECT t.sequence, t.balance_after INTO last_sequence, last_balance
      FROM public.payments_transaction t
     WHERE t.user_id = NEW.user_id
     ORDER BY t.sequence DESC
     LIMIT 1;
    IF NOT FOUND THEN
        last_sequence := 0;
        last_balance := 0;
    END IF;
    IF cached_balance IS NULL THEN
        IF last_sequence > 0 THEN
            RAISE EXCEPTION 'user % has postings but no balance row', NEW.user_id
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN NULL;
    END IF;
    IF cached_balance <> last_balance OR cached_count <> last_sequence THEN
        RAISE EXCEPTION 'balance of user % (% after % postings) differs from its ledger (% after %)',
            NEW.user_id, cached_balance, cached_count, last_balance, last_sequence
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
"""


PG_FORWARD = (
    f"""
-- 0002's append-only rule, with the maintenance switch honoured for the owner only.
CREATE OR REPLACE FUNCTION public.payments_ledger_append_only() RETURNS trigger
LANGUAGE plpgsql {PINNED_SEARCH_PATH} AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        IF {_SWITCH_HONOURED} THEN
            RETURN NULL;
        END IF;
        IF pg_catalog.current_setting('payments.allow_truncate', true) = 'on' THEN
            RAISE EXCEPTION 'TRUNCATE of % is refused: payments.allow_truncate is honoured only for the table owner or a superuser, not for %',
                TG_TABLE_NAME, current_user USING ERRCODE = 'restrict_violation';
        END IF;
    END IF;
    RAISE EXCEPTION 'payments_transaction is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'restrict_violation',
              HINT = 'Post a correcting ADJUSTMENT or REFUND transaction instead.';
END;
$$;

-- Rows kept for the audit trail: no DELETE; TRUNCATE only as a maintenance reset by the owner.
CREATE OR REPLACE FUNCTION public.payments_rows_kept() RETURNS trigger
LANGUAGE plpgsql {PINNED_SEARCH_PATH} AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        IF {_SWITCH_HONOURED} THEN
            RETURN NULL;
        END IF;
        IF pg_catalog.current_setting('payments.allow_truncate', true) = 'on' THEN
            RAISE EXCEPTION 'TRUNCATE of % is refused: payments.allow_truncate is honoured only for the table owner or a superuser, not for %',
                TG_TABLE_NAME, current_user USING ERRCODE = 'restrict_violation';
        END IF;
    END IF;
    RAISE EXCEPTION '% rows are kept for the audit trail: % is not allowed', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$;
"""
    + LEDGER_FUNCTIONS_QUALIFIED
    + withdrawal_guard_function_sql()
    + payment_guard_function_sql()
    + f"""
DROP TRIGGER IF EXISTS payments_payment_final_status ON public.payments_payment;
DROP FUNCTION IF EXISTS public.payments_payment_final_status();
"""
    + guard_triggers_sql()
    + f"""
CREATE OR REPLACE FUNCTION public.payments_withdrawal_has_hold() RETURNS trigger
LANGUAGE plpgsql {PINNED_SEARCH_PATH} AS $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM public.payments_transaction t
         WHERE t.withdrawal_request_id = NEW.id
           AND t.transaction_type = 'withdrawal'
           AND t.user_id = NEW.user_id
           AND t.amount_usd = -NEW.amount_usd
    ) THEN
        RAISE EXCEPTION 'withdrawal % has no hold: its amount % USD must be debited from user % with a withdrawal posting in the same transaction',
            NEW.internal_withdrawal_id, NEW.amount_usd, NEW.user_id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END;
$$;

CREATE CONSTRAINT TRIGGER payments_withdrawalrequest_has_hold
    AFTER INSERT ON public.payments_withdrawalrequest
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION public.payments_withdrawal_has_hold();

CREATE TRIGGER payments_withdrawalrequest_no_delete
    BEFORE DELETE ON public.payments_withdrawalrequest
    FOR EACH ROW EXECUTE FUNCTION public.payments_rows_kept();
CREATE TRIGGER payments_withdrawalrequest_no_truncate
    BEFORE TRUNCATE ON public.payments_withdrawalrequest
    FOR EACH STATEMENT EXECUTE FUNCTION public.payments_rows_kept();

CREATE TRIGGER payments_payment_no_delete
    BEFORE DELETE ON public.payments_payment
    FOR EACH ROW EXECUTE FUNCTION public.payments_rows_kept();
CREATE TRIGGER payments_payment_no_truncate
    BEFORE TRUNCATE ON public.payments_payment
    FOR EACH STATEMENT EXECUTE FUNCTION public.payments_rows_kept();

CREATE TRIGGER payments_userbalance_no_delete
    BEFORE DELETE ON public.payments_userbalance
    FOR EACH ROW EXECUTE FUNCTION public.payments_rows_kept();
CREATE TRIGGER payments_userbalance_no_truncate
    BEFORE TRUNCATE ON public.payments_userbalance
    FOR EACH STATEMENT EXECUTE FUNCTION public.payments_rows_kept();
"""
)

# Back to 0002 exactly: its append-only function and its final-status rule for payments.
PG_BACKWARD = r"""
DROP TRIGGER IF EXISTS payments_userbalance_no_truncate ON public.payments_userbalance;
DROP TRIGGER IF EXISTS payments_userbalance_no_delete ON public.payments_userbalance;
DROP TRIGGER IF EXISTS payments_payment_no_truncate ON public.payments_payment;
DROP TRIGGER IF EXISTS payments_payment_no_delete ON public.payments_payment;
DROP TRIGGER IF EXISTS payments_withdrawalrequest_no_truncate ON public.payments_withdrawalrequest;
DROP TRIGGER IF EXISTS payments_withdrawalrequest_no_delete ON public.payments_withdrawalrequest;
DROP TRIGGER IF EXISTS payments_withdrawalrequest_has_hold ON public.payments_withdrawalrequest;
DROP FUNCTION IF EXISTS public.payments_withdrawal_has_hold();
DROP TRIGGER IF EXISTS payments_payment_guard ON public.payments_payment;
DROP FUNCTION IF EXISTS public.payments_payment_guard();
DROP TRIGGER IF EXISTS payments_withdrawalrequest_guard ON public.payments_withdrawalrequest;
DROP FUNCTION IF EXISTS public.payments_withdrawal_guard();
DROP FUNCTION IF EXISTS public.payments_rows_kept();

CREATE OR REPLACE FUNCTION payments_ledger_chain() RETURNS trigger AS $$
DECLARE
    prev_sequence bigint := 0;
    prev_balance numeric := 0;
    linked_status varchar;
BEGIN
    SELECT t.sequence, t.balance_after INTO prev_sequence, prev_balance
      FROM payments_transaction t
     WHERE t.user_id = NEW.user_id
     ORDER BY t.sequence DESC
     LIMIT 1;
    IF NOT FOUND THEN
        prev_sequence := 0;
        prev_balance := 0;
    END IF;
    IF NEW.sequence <> prev_sequence + 1 THEN
        RAISE EXCEPTION 'ledger chain broken for user %: sequence % follows %',
            NEW.user_id, NEW.sequence, prev_sequence USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.balance_after <> prev_balance + NEW.amount_usd THEN
        RAISE EXCEPTION 'ledger chain broken for user %: balance_after % is not % + %',
            NEW.user_id, NEW.balance_after, prev_balance, NEW.amount_usd
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.transaction_type = 'deposit' AND NEW.payment_id IS NOT NULL THEN
        SELECT p.status INTO linked_status FROM payments_payment p WHERE p.id = NEW.payment_id;
        IF linked_status IS DISTINCT FROM 'completed' THEN
            RAISE EXCEPTION 'deposit for payment % in status %: only completed payments are credited',
                NEW.payment_id, linked_status USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    IF NEW.transaction_type = 'refund' AND NEW.withdrawal_request_id IS NOT NULL THEN
        SELECT w.status INTO linked_status
          FROM payments_withdrawalrequest w WHERE w.id = NEW.withdrawal_request_id;
        IF linked_status NOT IN ('rejected', 'cancelled', 'failed') THEN
            RAISE EXCEPTION 'refund for withdrawal % in status %', NEW.withdrawal_request_id,
                linked_status USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION payments_balance_matches_ledger() RETURNS trigger AS $$
DECLARE
    cached_balance numeric;
    cached_count bigint;
    last_sequence bigint := 0;
    last_balance numeric := 0;
BEGIN
    SELECT b.balance_usd, b.transaction_count INTO cached_balance, cached_count
      FROM payments_userbalance b WHERE b.user_id = NEW.user_id;
    SELECT t.sequence, t.balance_after INTO last_sequence, last_balance
      FROM payments_transaction t
     WHERE t.user_id = NEW.user_id
     ORDER BY t.sequence DESC
     LIMIT 1;
    IF NOT FOUND THEN
        last_sequence := 0;
        last_balance := 0;
    END IF;
    IF cached_balance IS NULL THEN
        IF last_sequence > 0 THEN
            RAISE EXCEPTION 'user % has postings but no balance row', NEW.user_id
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN NULL;
    END IF;
    IF cached_balance <> last_balance OR cached_count <> last_sequence THEN
        RAISE EXCEPTION 'balance of user % (% after % postings) differs from its ledger (% after %)',
            NEW.user_id, cached_balance, cached_count, last_balance, last_sequence
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION public.payments_ledger_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' AND current_setting('payments.allow_truncate', true) = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'payments_transaction is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'restrict_violation',
              HINT = 'Post a correcting ADJUSTMENT or REFUND transaction instead.';
END;
$$ LANGUAGE plpgsql;
ALTER FUNCTION public.payments_ledger_append_only() RESET search_path;

CREATE OR REPLACE FUNCTION payments_payment_final_status() RETURNS trigger AS $$
BEGIN
    IF OLD.status IN ('completed', 'failed', 'expired', 'refunded', 'cancelled')
       AND NEW.status <> OLD.status THEN
        RAISE EXCEPTION 'payment % is %, a final status; it cannot become %',
            OLD.internal_payment_id, OLD.status, NEW.status USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER payments_payment_final_status
    BEFORE UPDATE OF status ON payments_payment
    FOR EACH ROW EXECUTE FUNCTION payments_payment_final_status();
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(PG_FORWARD, params=None)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(PG_BACKWARD, params=None)


class Migration(migrations.Migration):
    dependencies = [("payments", "0006_lost_payout_drift")]

    operations = [migrations.RunPython(forward, backward)]
