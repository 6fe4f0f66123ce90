"""Database-enforced ledger invariants: append-only, chained, cache equal to the ledger.

On PostgreSQL:
- payments_transaction rejects UPDATE, DELETE and TRUNCATE, whatever the client. A maintenance
  TRUNCATE (test resets, a full wipe) must say so with ``SET LOCAL payments.allow_truncate = on``.
- Each inserted posting must continue its user's chain (sequence + 1, previous balance_after +
  amount_usd); a DEPOSIT tied to a payment needs that payment to be completed; a REFUND tied to a
  withdrawal needs it rejected, cancelled or failed.
- At commit, each touched user's balance row must equal the last posting (balance and count).
- A payment in a final status keeps it.
SQLite (the embedded demo default) gets the append-only rule only.
"""

from django.db import migrations

PG_FORWARD = r"""
CREATE OR REPLACE FUNCTION payments_ledger_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' AND current_setting('payments.allow_truncate', true) = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'payments_transaction is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'restrict_violation',
              HINT = 'Post a correcting ADJUSTMENT or REFUND transaction instead.';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER payments_transaction_no_update_delete
    BEFORE UPDATE OR DELETE ON payments_transaction
    FOR EACH ROW EXECUTE FUNCTION payments_ledger_append_only();

CREATE TRIGGER payments_transaction_no_truncate
    BEFORE TRUNCATE ON payments_transaction
    FOR EACH STATEMENT EXECUTE FUNCTION payments_ledger_append_only();

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

CREATE TRIGGER payments_transaction_chain
    BEFORE INSERT ON payments_transaction
    FOR EACH ROW EXECUTE FUNCTION payments_ledger_chain();

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

CREATE CONSTRAINT TRIGGER payments_transaction_balance_matches
    AFTER INSERT ON payments_transaction
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION payments_balance_matches_ledger();

CREATE CONSTRAINT TRIGGER payments_userbalance_matches_ledger
    AFTER INSERT OR UPDATE ON payments_userbalance
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION payments_balance_matches_ledger();

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

PG_BACKWARD = r"""
DROP TRIGGER IF EXISTS payments_payment_final_status ON payments_payment;
DROP FUNCTION IF EXISTS payments_payment_final_status();
DROP TRIGGER IF EXISTS payments_userbalance_matches_ledger ON payments_userbalance;
DROP TRIGGER IF EXISTS payments_transaction_balance_matches ON payments_transaction;
DROP FUNCTION IF EXISTS payments_balance_matches_ledger();
DROP TRIGGER IF EXISTS payments_transaction_chain ON payments_transaction;
DROP FUNCTION IF EXISTS payments_ledger_chain();
DROP TRIGGER IF EXISTS payments_transaction_no_truncate ON payments_transaction;
DROP TRIGGER IF EXISTS payments_transaction_no_update_delete ON payments_transaction;
DROP FUNCTION IF EXISTS payments_ledger_append_only();
"""

SQLITE_FORWARD = [
    """
    CREATE TRIGGER payments_transaction_no_update BEFORE UPDATE ON payments_transaction
    BEGIN SELECT RAISE(ABORT, 'payments_transaction is append-only: UPDATE is not allowed'); END;
    """,
    """
    CREATE TRIGGER payments_transaction_no_delete BEFORE DELETE ON payments_transaction
    BEGIN SELECT RAISE(ABORT, 'payments_transaction is append-only: DELETE is not allowed'); END;
    """,
]
SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS payments_transaction_no_update;",
    "DROP TRIGGER IF EXISTS payments_transaction_no_delete;",
]


def forward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG_FORWARD, params=None)
    elif vendor == "sqlite":
        for statement in SQLITE_FORWARD:
            schema_editor.execute(statement, params=None)


def backward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG_BACKWARD, params=None)
    elif vendor == "sqlite":
        for statement in SQLITE_BACKWARD:
            schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):
    dependencies = [("payments", "0001_initial")]

    operations = [migrations.RunPython(forward, backward)]
