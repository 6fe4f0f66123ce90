"""The database's own guards (migration 0007) and the application role (manage.py db_roles).

Every guard is broken here with raw SQL AS THE APPLICATION ROLE, the role web, worker and beat
log in as, on a psycopg connection of its own, and seen refused. Fixture rows are written by
the owner (Django's connection), along legal paths only.
"""

from __future__ import annotations

import importlib
import io
import threading
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction
from psycopg import errors

from payments import ledger
from payments.management.commands.db_roles import DELETE_ALLOWED, MONEY_TABLES, ensure_app_role
from payments.models import ManualAdjustment, Payment, PaymentResolution, WithdrawalRequest
from tests.factories import CurrencyFactory, PaymentFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

# The specification (DESIGN.md 5), written out here rather than imported from the migration.
WITHDRAWAL_TABLE = {
    "pending": {"approved", "cancelled", "rejected"},
    "approved": {"processing", "rejected", "completed"},
    "processing": {"completed", "failed"},
    "completed": set(),
    "rejected": set(),
    "cancelled": set(),
    "failed": set(),
}
CLOSING = {"completed", "review", "failed", "expired", "refunded", "cancelled"}
PAYMENT_TABLE = {
    "pending": {"confirming", "confirmed", "partially_paid", *CLOSING},
    "confirming": {"confirmed", "partially_paid", *CLOSING},
    "confirmed": {"partially_paid", *CLOSING},
    "partially_paid": CLOSING,
    "review": {"completed", "failed", "refunded", "cancelled"},
    "completed": {"refunded"},
    "failed": {"review"},
    "expired": {"review"},
    "refunded": set(),
    "cancelled": {"review"},
}  # fmt: skip
# How the owner brings a new (pending) withdrawal to each status, legally.
WITHDRAWAL_PATH = {
    "pending": [],
    "approved": ["approved"],
    "processing": ["approved", "processing"],
    "completed": ["approved", "completed"],
    "rejected": ["rejected"],
    "cancelled": ["cancelled"],
    "failed": ["approved", "processing", "failed"],
}
# The tables with triggers, each with one of them.
GUARDED_TABLES = {
    "payments_transaction": "payments_transaction_chain",
    "payments_userbalance": "payments_userbalance_no_delete",
    "payments_payment": "payments_payment_guard",
    "payments_withdrawalrequest": "payments_withdrawalrequest_guard",
}
ADDRESS = "TQn9Y2khEsLJW1ChVWFMSMeRDow5KcbLSE"


# --- connections and fixture rows ---------------------------------------------------------


def _connect(user: str) -> psycopg.Connection[Any]:
    db = connection.settings_dict
    return psycopg.connect(
        host=db["HOST"] or "127.0.0.1",
        port=db["PORT"] or 5432,
        dbname=db["NAME"],
        user=user,
        autocommit=True,
        cursor_factory=psycopg.ClientCursor,
    )


@pytest.fixture
def app() -> Iterator[psycopg.Connection[Any]]:
    """A connection to the test database as the application role (trust auth, no password)."""
    conn = _connect(settings.PAYMENTS_DB_APP_ROLE)
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def owner() -> Iterator[psycopg.Connection[Any]]:
    conn = _connect(connection.settings_dict["USER"] or "postgres")
    try:
        yield conn
    finally:
        conn.close()


def attempt(conn: psycopg.Connection[Any], sql: str, params: Any = None) -> psycopg.Error | None:
    """Run sql in a transaction (or savepoint) that is always rolled back: its error, or None."""
    try:
        with conn.transaction(force_rollback=True):
            conn.execute(sql, params)
    except psycopg.Error as exc:
        return exc
    return None


def refused(
    conn: psycopg.Connection[Any], sql: str, params: Any = None, *, error: type, match: str = ""
) -> psycopg.Error:
    exc = attempt(conn, sql, params)
    assert isinstance(exc, error), f"{sql!r} gave {exc!r}, not {error.__name__}"
    assert match.lower() in str(exc).lower(), str(exc)
    return exc


@pytest.fixture
def user() -> Any:
    user = UserFactory()
    ledger.post(
        user_id=user.pk, kind="deposit", amount_usd=Decimal("1000.00"), idempotency_key="fund"
    )
    return user


@pytest.fixture
def currency() -> Any:
    return CurrencyFactory()


def new_withdrawal(user: Any, currency: Any, amount: str = "10.00") -> WithdrawalRequest:
    """A pending withdrawal and its hold, committed together (as lifecycle.withdrawal_create)."""
    with transaction.atomic():
        withdrawal = WithdrawalRequest(
            user=user,
            currency=currency,
            amount_usd=Decimal(amount),
            wallet_address=ADDRESS,
            internal_withdrawal_id=f"WD_GUARD_{uuid.uuid4().hex[:12]}",
        )
        WithdrawalRequest._base_manager.bulk_create([withdrawal])
        ledger.post(
            user_id=user.pk,
            kind="withdrawal",
            amount_usd=-withdrawal.amount_usd,
            idempotency_key=f"withdrawal:{withdrawal.pk}:debit",
            withdrawal_request_id=withdrawal.pk,
        )
    return withdrawal


def withdrawal_in(owner: psycopg.Connection[Any], user: Any, currency: Any, status: str) -> Any:
    withdrawal = new_withdrawal(user, currency)
    for step in WITHDRAWAL_PATH[status]:
        owner.execute(
            "UPDATE payments_withdrawalrequest SET status = %s, transaction_hash = "
            "CASE WHEN %s = 'completed' THEN '0xpaid' ELSE transaction_hash END WHERE id = %s",
            [step, step, withdrawal.pk],
        )
    return withdrawal.pk


def payment_in(user: Any, currency: Any, status: str) -> Any:
    payment = Payment(
        user=user,
        currency=currency,
        amount_usd=Decimal("25.00"),
        status=status,
        internal_payment_id=f"PAY_GUARD_{uuid.uuid4().hex[:12]}",
    )
    Payment._base_manager.bulk_create([payment])
    return payment.pk


def check_every_pair(
    app: psycopg.Connection[Any], table: dict[str, set[str]], rows: dict[str, Any], sql: str
) -> list[str]:
    """Try every (old, new) pair as the application role; the pairs where the database
    disagrees with the table."""
    wrong = []
    with app.transaction(force_rollback=True):
        for old, row in rows.items():
            for new in table:
                if new == old:
                    continue
                exc = attempt(app, sql, [new, row])
                admitted = exc is None
                if admitted != (new in table[old]):
                    wrong.append(f"{old} -> {new}: {'admitted' if admitted else exc}")
                elif exc is not None and not isinstance(exc, errors.CheckViolation):
                    wrong.append(f"{old} -> {new}: refused for another reason: {exc!r}")
    return wrong


# --- withdrawals ------------------------------------------------------------------------


def test_a_withdrawal_inserted_without_its_hold_is_refused_at_commit(app, user, currency):
    template = new_withdrawal(user, currency)
    copy = (
        "CREATE TEMP TABLE w ON COMMIT DROP AS "
        "SELECT * FROM payments_withdrawalrequest WHERE id = %s; "
    )
    with pytest.raises(errors.CheckViolation, match="has no hold"), app.transaction():  # noqa: PT012
        app.execute(copy, [template.pk])
        app.execute("UPDATE w SET id = gen_random_uuid(), internal_withdrawal_id = 'WD_NO_HOLD'")
        # The statement itself passes: the hold may follow later in the transaction; the
        # COMMIT at the end of this block is refused.
        app.execute("INSERT INTO payments_withdrawalrequest SELECT * FROM w")
    assert WithdrawalRequest._base_manager.count() == 1
    # A hold of another amount is no hold either (Django's connection: IntegrityError).
    with pytest.raises(IntegrityError, match="has no hold"), transaction.atomic():  # noqa: PT012
        other = WithdrawalRequest(
            user=user,
            currency=currency,
            amount_usd=Decimal("10.00"),
            wallet_address=ADDRESS,
            internal_withdrawal_id="WD_WRONG_HOLD",
        )
        WithdrawalRequest._base_manager.bulk_create([other])
        ledger.post(
            user_id=user.pk,
            kind="withdrawal",
            amount_usd=Decimal("-9.99"),
            idempotency_key="wrong-hold",
            withdrawal_request_id=other.pk,
        )
    assert WithdrawalRequest._base_manager.count() == 1


def test_a_withdrawal_is_created_pending(app, user, currency):
    template = new_withdrawal(user, currency)
    with app.transaction(force_rollback=True):
        app.execute(
            "CREATE TEMP TABLE w AS SELECT * FROM payments_withdrawalrequest WHERE id = %s",
            [template.pk],
        )
        app.execute(
            "UPDATE w SET id = gen_random_uuid(), internal_withdrawal_id = 'WD_APPROVED', "
            "status = 'approved'"
        )
        refused(
            app,
            "INSERT INTO payments_withdrawalrequest SELECT * FROM w",
            error=errors.CheckViolation,
            match="must be created pending, not approved",
        )


def test_every_withdrawal_transition_is_admitted_exactly_when_in_the_table(
    app, owner, user, currency
):
    rows = {status: withdrawal_in(owner, user, currency, status) for status in WITHDRAWAL_TABLE}
    wrong = check_every_pair(
        app,
        WITHDRAWAL_TABLE,
        rows,
        "UPDATE payments_withdrawalrequest SET status = %s, transaction_hash = '0xpaid' "
        "WHERE id = %s",
    )
    assert wrong == []


def test_a_rejected_withdrawal_cannot_be_approved(app, owner, user, currency):
    rejected = withdrawal_in(owner, user, currency, "rejected")
    refused(
        app,
        "UPDATE payments_withdrawalrequest SET status = 'approved' WHERE id = %s",
        [rejected],
        error=errors.CheckViolation,
        match="is rejected, a final status; it cannot become approved",
    )
    assert WithdrawalRequest._base_manager.get(pk=rejected).status == "rejected"


def test_the_terms_of_a_withdrawal_cannot_change(app, user, currency):
    withdrawal = new_withdrawal(user, currency)
    other_user = UserFactory()
    other_currency = CurrencyFactory(code="BTC", token="BTC", network="BTC")
    edits = {
        "amount_usd": "amount_usd = amount_usd + 1",
        "wallet_address": "wallet_address = 'TAttackerAddress1111111111111111111'",
        "wallet_extra_id": "wallet_extra_id = 'memo'",
        "user_id": f"user_id = {other_user.pk}",
        "currency_id": f"currency_id = {other_currency.pk}",
        "network_fee_usd": "network_fee_usd = network_fee_usd + 0.01",
        "service_fee_usd": "service_fee_usd = service_fee_usd + 0.01",
        "internal_withdrawal_id": "internal_withdrawal_id = 'WD_OTHER'",
        "created_at": "created_at = created_at - interval '1 day'",
        "id": "id = gen_random_uuid()",
    }
    for column, assignment in edits.items():
        refused(
            app,
            f"UPDATE payments_withdrawalrequest SET {assignment} WHERE id = %s",
            [withdrawal.pk],
            error=errors.CheckViolation,
            match=f"cannot change its {column} after it is requested",
        )
    # Same values, other columns and the same status are no change: admitted.
    assert (
        attempt(
            app,
            "UPDATE payments_withdrawalrequest SET amount_usd = amount_usd, status = status, "
            "admin_notes = 'looked at', wallet_address = wallet_address WHERE id = %s",
            [withdrawal.pk],
        )
        is None
    )


def test_a_refunded_withdrawal_is_never_completed(app, owner, user, currency):
    withdrawal = withdrawal_in(owner, user, currency, "rejected")
    ledger.post(
        user_id=user.pk,
        kind="refund",
        amount_usd=Decimal("10.00"),
        idempotency_key=f"withdrawal:{withdrawal}:refund",
        withdrawal_request_id=withdrawal,
    )
    # Only a superuser can force it back to processing, with every trigger off...
    with owner.transaction():
        owner.execute("SET LOCAL session_replication_role = replica")
        owner.execute(
            "UPDATE payments_withdrawalrequest SET status = 'processing' WHERE id = %s",
            [withdrawal],
        )
    # ...and even then it cannot be paid out as well.
    refused(
        app,
        "UPDATE payments_withdrawalrequest SET status = 'completed', transaction_hash = '0x1' "
        "WHERE id = %s",
        [withdrawal],
        error=errors.CheckViolation,
        match="its hold was already refunded",
    )


# --- payments -----------------------------------------------------------------------------


def test_every_payment_transition_is_admitted_exactly_when_in_the_table(app, user, currency):
    rows = {status: payment_in(user, currency, status) for status in PAYMENT_TABLE}
    wrong = check_every_pair(
        app, PAYMENT_TABLE, rows, "UPDATE payments_payment SET status = %s WHERE id = %s"
    )
    assert wrong == []


def test_the_migration_table_is_the_specification():
    from payments.models.payment import PAYMENT_TRANSITIONS
    from payments.models.withdrawal import WITHDRAWAL_TRANSITIONS

    guards = importlib.import_module("payments.migrations.0007_state_guards")
    latest = importlib.import_module("payments.migrations.0009_deposit_policy")
    assert {k: set(v) for k, v in latest.PAYMENT_TRANSITIONS.items()} == PAYMENT_TABLE
    assert {k: set(v) for k, v in guards.WITHDRAWAL_TRANSITIONS.items()} == WITHDRAWAL_TABLE
    # The services' tables are the same specification.
    assert {k: set(v) for k, v in PAYMENT_TRANSITIONS.items()} == PAYMENT_TABLE
    assert {k: set(v) for k, v in WITHDRAWAL_TRANSITIONS.items()} == WITHDRAWAL_TABLE


def test_the_amount_currency_and_user_of_a_payment_cannot_change(app, user, currency):
    payment = payment_in(user, currency, "pending")
    other_user = UserFactory()
    other_currency = CurrencyFactory(code="BTC", token="BTC", network="BTC")
    edits = {
        "amount_usd": "amount_usd = 1.00",
        "currency_id": f"currency_id = {other_currency.pk}",
        "user_id": f"user_id = {other_user.pk}",
        "internal_payment_id": "internal_payment_id = 'PAY_OTHER'",
        "created_at": "created_at = created_at - interval '2 days'",
    }
    for column, assignment in edits.items():
        refused(
            app,
            f"UPDATE payments_payment SET {assignment} WHERE id = %s",
            [payment],
            error=errors.CheckViolation,
            match=f"cannot change its {column} after it is created",
        )
    # What the provider reports may change, and the status may move forward.
    assert (
        attempt(
            app,
            "UPDATE payments_payment SET status = 'confirming', actual_amount = 1.5, "
            "amount_usd = amount_usd, provider_checked_at = now() WHERE id = %s",
            [payment],
        )
        is None
    )


# --- deleting, truncating, switching the triggers off ---------------------------------------


def test_the_app_role_cannot_delete_from_any_money_table(app, user, currency):
    new_withdrawal(user, currency)
    payment_in(user, currency, "pending")
    for table in sorted(MONEY_TABLES):
        refused(
            app,
            f"DELETE FROM {table}",
            error=errors.InsufficientPrivilege,
            match="permission denied",
        )


def test_not_even_the_owner_deletes_balances_payments_or_withdrawals(owner, user, currency):
    new_withdrawal(user, currency)
    payment_in(user, currency, "pending")
    for table in ("payments_userbalance", "payments_payment", "payments_withdrawalrequest"):
        refused(
            owner,
            f"DELETE FROM {table}",
            error=errors.RestrictViolation,
            match=f"{table} rows are kept for the audit trail: DELETE is not allowed",
        )
    refused(owner, "DELETE FROM payments_transaction", error=errors.RestrictViolation)


def test_the_app_role_cannot_switch_a_trigger_off(app):
    for table, trigger in GUARDED_TABLES.items():
        for sql in (
            f"ALTER TABLE {table} DISABLE TRIGGER ALL",
            f"ALTER TABLE {table} DISABLE TRIGGER USER",
            f"ALTER TABLE {table} DISABLE TRIGGER {trigger}",
            f"DROP TRIGGER {trigger} ON {table}",
            f"CREATE TRIGGER sneaky BEFORE UPDATE ON {table} FOR EACH ROW "
            "EXECUTE FUNCTION suppress_redundant_updates_trigger()",
            f"ALTER TABLE {table} OWNER TO CURRENT_USER",
        ):
            refused(app, sql, error=errors.InsufficientPrivilege)
    refused(
        app,
        "ALTER TABLE payments_payment DISABLE TRIGGER payments_payment_guard",
        error=errors.InsufficientPrivilege,
        match="must be owner",
    )
    refused(
        app,
        "DROP TRIGGER payments_withdrawalrequest_guard ON payments_withdrawalrequest",
        error=errors.InsufficientPrivilege,
        match="must be owner",
    )
    refused(
        app,
        "DROP FUNCTION payments_ledger_chain() CASCADE",
        error=errors.InsufficientPrivilege,
        match="must be owner",
    )
    for sql in (
        "SET session_replication_role = replica",
        "SET LOCAL session_replication_role = replica",
    ):
        refused(app, sql, error=errors.InsufficientPrivilege, match="permission denied")


def test_truncate_is_refused_to_the_app_role_with_or_without_the_switch(app, owner):
    for table in GUARDED_TABLES:
        refused(app, f"TRUNCATE {table} CASCADE", error=errors.InsufficientPrivilege)
        with app.transaction(force_rollback=True):
            app.execute("SET LOCAL payments.allow_truncate = on")
            refused(app, f"TRUNCATE {table} CASCADE", error=errors.InsufficientPrivilege)
    # Even were TRUNCATE granted to it by mistake, the switch is not honoured for it.
    role = settings.PAYMENTS_DB_APP_ROLE
    for table in GUARDED_TABLES:
        with owner.transaction(force_rollback=True):
            owner.execute(f"GRANT TRUNCATE ON ALL TABLES IN SCHEMA public TO {role}")
            owner.execute(f"SET LOCAL ROLE {role}")
            owner.execute("SET LOCAL payments.allow_truncate = on")
            refused(
                owner,
                f"TRUNCATE {table} CASCADE",
                error=errors.RestrictViolation,
                match=f"TRUNCATE of {table} is refused: payments.allow_truncate is honoured "
                f"only for the table owner or a superuser, not for {role}",
            )


def test_truncate_is_a_maintenance_reset_for_the_owner_only_with_the_switch(owner, user, currency):
    new_withdrawal(user, currency)
    payment_in(user, currency, "pending")
    for table in GUARDED_TABLES:
        refused(owner, f"TRUNCATE {table} CASCADE", error=errors.RestrictViolation)
    with owner.transaction(force_rollback=True):
        owner.execute("SET LOCAL payments.allow_truncate = on")
        owner.execute(f"TRUNCATE {', '.join(GUARDED_TABLES)} CASCADE")
        assert owner.execute("SELECT count(*) FROM payments_withdrawalrequest").fetchone() == (0,)
    assert WithdrawalRequest._base_manager.count() == 1


def test_a_temporary_table_does_not_fool_the_ledger_chain(app, user):
    """pg_temp is searched first for tables unless a function pins its search_path."""
    with app.transaction(force_rollback=True):
        app.execute(
            "CREATE TEMP TABLE payments_transaction AS "
            "SELECT * FROM public.payments_transaction WITH NO DATA"
        )
        app.execute(
            "INSERT INTO pg_temp.payments_transaction (user_id, transaction_type, amount_usd, "
            "balance_after, sequence, description, metadata, idempotency_key, created_at) "
            "VALUES (%s, 'bonus', 1000000, 1000000, 100, '', '{}', 'fake', now())",
            [user.pk],
        )
        refused(
            app,
            "INSERT INTO public.payments_transaction (user_id, transaction_type, amount_usd, "
            "balance_after, sequence, description, metadata, idempotency_key, created_at) "
            "VALUES (%s, 'bonus', 10, 1000010, 101, '', '{}', 'forged', now())",
            [user.pk],
            error=errors.CheckViolation,
            match="ledger chain broken",
        )


def test_the_app_role_can_do_its_job(app, user, currency):
    payment = payment_in(user, currency, "pending")
    withdrawal = new_withdrawal(user, currency)
    with app.transaction(force_rollback=True):
        app.execute("SELECT * FROM payments_userbalance WHERE user_id = %s FOR UPDATE", [user.pk])
        app.execute("UPDATE payments_payment SET status = 'confirming' WHERE id = %s", [payment])
        app.execute(
            "UPDATE payments_withdrawalrequest SET admin_notes = 'ok' WHERE id = %s",
            [withdrawal.pk],
        )
        app.execute("DELETE FROM django_session")
        app.execute("DELETE FROM payments_periodicrun")
        app.execute("DELETE FROM payments_idempotencyrecord")
        app.execute("SELECT name FROM django_migrations LIMIT 1")
        refused(
            app,
            "INSERT INTO django_migrations (app, name, applied) VALUES ('x', 'y', now())",
            error=errors.InsufficientPrivilege,
        )


# --- manage.py db_roles ---------------------------------------------------------------------


def grants_snapshot() -> list[Any]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 'table', c.relname, c.relacl::text FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' "
            "UNION ALL SELECT 'default', defaclobjtype::text, defaclacl::text FROM pg_default_acl "
            "UNION ALL SELECT 'database', datname, datacl::text FROM pg_database "
            "WHERE datname = current_database() "
            "UNION ALL SELECT 'schema', nspname, nspacl::text FROM pg_namespace "
            "WHERE nspname = 'public' ORDER BY 1, 2, 3"
        )
        return cursor.fetchall()


def test_db_roles_is_idempotent():
    before = grants_snapshot()  # tests/conftest.py ran it on this database already
    out = io.StringIO()
    call_command("db_roles", stdout=out)
    call_command("db_roles", stdout=out)
    assert grants_snapshot() == before
    assert f"Role {settings.PAYMENTS_DB_APP_ROLE} has its grants" in out.getvalue()


def test_db_roles_print_shows_the_sql_and_changes_nothing(monkeypatch):
    before = grants_snapshot()
    monkeypatch.setenv("PAYMENTS_DB_APP_PASSWORD", "s3cret-not-printed")
    out = io.StringIO()
    call_command("db_roles", "--print", stdout=out)
    text = out.getvalue()
    assert grants_snapshot() == before
    assert "s3cret-not-printed" not in text
    assert f"ALTER ROLE \"{settings.PAYMENTS_DB_APP_ROLE}\" PASSWORD :'app_password';" in text
    assert "CREATE ROLE" in text
    assert "NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS" in text
    assert "EXCEPTION WHEN duplicate_object" in text
    assert text.strip().endswith("COMMIT;")
    lines = text.splitlines()
    (delete_grant,) = [line for line in lines if line.startswith("GRANT SELECT, INSERT, UPDATE, D")]
    assert '"django_session"' in delete_grant
    for table in DELETE_ALLOWED:
        assert f'"{table}"' in delete_grant
    for table in MONEY_TABLES:
        assert f'"{table}"' not in delete_grant
    assert not [line for line in lines if line.startswith("GRANT") and "TRUNCATE" in line]
    assert any(
        line.startswith("REVOKE DELETE ON") and "payments_transaction" in line for line in lines
    )
    assert any("ALTER DEFAULT PRIVILEGES" in line for line in lines)


def test_the_app_role_is_not_superuser_and_owns_nothing():
    role = settings.PAYMENTS_DB_APP_ROLE
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolbypassrls, "
            "rolreplication FROM pg_roles WHERE rolname = %s",
            [role],
        )
        assert cursor.fetchone() == (True, False, False, False, False, False)
        cursor.execute(
            "SELECT (SELECT count(*) FROM pg_class WHERE relowner = r.oid) "
            "+ (SELECT count(*) FROM pg_namespace WHERE nspowner = r.oid) "
            "+ (SELECT count(*) FROM pg_proc WHERE proowner = r.oid) "
            "+ (SELECT count(*) FROM pg_type WHERE typowner = r.oid) "
            "+ (SELECT count(*) FROM pg_database WHERE datdba = r.oid), "
            "pg_has_role(r.oid, current_user, 'MEMBER') FROM pg_roles r WHERE r.rolname = %s",
            [role],
        )
        assert cursor.fetchone() == (0, False)
        cursor.execute(
            "SELECT c.relname, has_table_privilege(%s, c.oid, 'SELECT'), "
            "has_table_privilege(%s, c.oid, 'INSERT'), has_table_privilege(%s, c.oid, 'UPDATE'), "
            "has_table_privilege(%s, c.oid, 'DELETE'), "
            "has_table_privilege(%s, c.oid, 'TRUNCATE'), "
            "has_table_privilege(%s, c.oid, 'TRIGGER') FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind = 'r'",
            [role] * 6,
        )
        privileges = {name: rest for name, *rest in cursor.fetchall()}
    for table, (select, insert, update, delete, truncate, trigger) in privileges.items():
        assert select, table
        assert not truncate, table
        assert not trigger, table
        if table == "django_migrations":
            assert (insert, update, delete) == (False, False, False)
        elif table in MONEY_TABLES or (
            table.startswith("payments_") and table not in DELETE_ALLOWED
        ):
            assert (insert, update, delete) == (True, True, False), table
        else:
            assert (insert, update, delete) == (True, True, True), table
    assert set(privileges) >= MONEY_TABLES
    assert privileges["django_session"][3] is True
    assert privileges["django_celery_beat_periodictask"][3] is True


def test_tables_created_later_get_the_grants_and_money_tables_never_delete(owner):
    role = settings.PAYMENTS_DB_APP_ROLE
    owner.execute("CREATE TABLE grd_later_notes (id int PRIMARY KEY)")
    owner.execute("CREATE TABLE payments_later_refund (id int PRIMARY KEY)")
    try:
        query = (
            "SELECT has_table_privilege(%s, %s, 'SELECT') AND has_table_privilege(%s, %s, "
            "'INSERT') AND has_table_privilege(%s, %s, 'UPDATE'), "
            "has_table_privilege(%s, %s, 'DELETE'), has_table_privilege(%s, %s, 'TRUNCATE')"
        )

        def rights(table: str) -> tuple:
            return owner.execute(query, [role, table] * 5).fetchone()

        # Right after the migration that creates them: usable, no DELETE, no TRUNCATE.
        assert rights("grd_later_notes") == (True, False, False)
        assert rights("payments_later_refund") == (True, False, False)
        ensure_app_role()
        # After db_roles: DELETE where it is not a money table (payments_* by default is).
        assert rights("grd_later_notes") == (True, True, False)
        assert rights("payments_later_refund") == (True, False, False)
    finally:
        owner.execute("DROP TABLE grd_later_notes, payments_later_refund")


def test_db_roles_refuses_bad_input(monkeypatch):
    with pytest.raises(CommandError, match="is not a usable role name"):
        call_command("db_roles", "--app-role", "Robert'); DROP TABLE students;--")
    with pytest.raises(CommandError, match="reserved by PostgreSQL"):
        call_command("db_roles", "--app-role", "pg_monitor")
    owner_name = connection.settings_dict["USER"] or "postgres"
    with pytest.raises(CommandError, match="the application role must be another role"):
        call_command("db_roles", "--app-role", owner_name)
    with pytest.raises(CommandError, match="no database 'elsewhere'"):
        call_command("db_roles", "--database", "elsewhere")
    monkeypatch.setattr(connection, "vendor", "sqlite")
    with pytest.raises(CommandError, match="SQLite has no users"):
        call_command("db_roles")


def test_db_roles_refuses_an_existing_powerful_role(owner):
    name = f"grd_power_{uuid.uuid4().hex[:8]}"
    owner.execute(f"CREATE ROLE {name} LOGIN CREATEDB")
    try:
        with pytest.raises(CommandError, match=f"Role {name} already exists with CREATEDB"):
            call_command("db_roles", "--app-role", name)
    finally:
        owner.execute(f"DROP ROLE {name}")


def test_db_roles_survives_a_concurrent_create_role_and_sets_a_hashed_password(owner, monkeypatch):
    name = f"grd_race_{uuid.uuid4().hex[:8]}"
    create = ensure_app_role(role=name, execute=False).statements[0]
    assert create.startswith("DO $$")
    second = _connect(connection.settings_dict["USER"] or "postgres")
    outcome: list[Any] = []
    try:
        with owner.transaction():
            owner.execute(create)  # created, not yet committed: the other run must wait
            thread = threading.Thread(target=lambda: outcome.append(attempt_commit(second, create)))
            thread.start()
            thread.join(timeout=0.5)
            assert thread.is_alive()  # blocked on the first one's new role
        thread.join(timeout=10)
        assert outcome == [None]  # its duplicate was caught, not raised
        monkeypatch.setenv("PAYMENTS_DB_APP_PASSWORD", "pw-for-the-race-role")
        call_command("db_roles", "--app-role", name, stdout=io.StringIO())
        stored = owner.execute(
            "SELECT rolpassword FROM pg_authid WHERE rolname = %s", [name]
        ).fetchone()[0]
        assert stored.startswith(("SCRAM-SHA-256$", "md5"))
        assert "pw-for-the-race-role" not in stored
    finally:
        second.close()
        owner.execute(f"DROP OWNED BY {name}")
        owner.execute(f"DROP ROLE IF EXISTS {name}")


def attempt_commit(conn: psycopg.Connection[Any], sql: str) -> psycopg.Error | None:
    try:
        with conn.transaction():
            conn.execute(sql)
    except psycopg.Error as exc:
        return exc
    return None


# --- four-eyes decisions: manual money and credits of payments in review -------------------


@pytest.mark.parametrize("action", ["credit_received", "credit_full"])
def test_a_credit_in_review_is_never_decided_by_its_requester(app, user, action):
    operator = UserFactory()
    resolution = PaymentResolution.objects.create(
        payment=PaymentFactory(user=user),
        action=action,
        reason="paid short",
        credit_usd=Decimal("5.00"),
        requested_by=operator,
    )
    decide = (
        "UPDATE payments_paymentresolution SET outcome = 'applied', decided_by_id = %s, "
        "decided_at = now() WHERE id = %s"
    )
    refused(
        app,
        decide,
        [operator.pk, resolution.pk],
        error=errors.CheckViolation,
        match="resolution_credit_second_operator",
    )
    assert attempt(app, decide, [UserFactory().pk, resolution.pk]) is None


def test_a_rejection_in_review_may_be_applied_by_its_requester(app, user):
    operator = UserFactory()
    resolution = PaymentResolution.objects.create(
        payment=PaymentFactory(user=user), action="reject", reason="spam", requested_by=operator
    )
    assert (
        attempt(
            app,
            "UPDATE payments_paymentresolution SET outcome = 'applied', decided_by_id = %s "
            "WHERE id = %s",
            [operator.pk, resolution.pk],
        )
        is None
    )


def test_manual_money_is_guarded_whatever_the_application_sends(app, user):
    operator, supervisor = UserFactory(), UserFactory()
    pending = ManualAdjustment.objects.create(
        user=user,
        kind="bonus",
        amount_usd=Decimal("5.00"),
        reason="goodwill",
        requested_by=operator,
    )
    matching = ledger.post(
        user_id=user.pk, kind="bonus", amount_usd=Decimal("5.00"), idempotency_key="m-ok"
    )
    other = ledger.post(
        user_id=user.pk, kind="bonus", amount_usd=Decimal("6.00"), idempotency_key="m-other"
    )
    apply = (
        "UPDATE payments_manualadjustment SET outcome = 'applied', decided_by_id = %s, "
        "decided_at = now(), transaction_id = %s WHERE id = %s"
    )
    # Inserted decided or posted; approved by its requester; posted with another amount.
    refused(
        app,
        "INSERT INTO payments_manualadjustment (user_id, kind, amount_usd, reason, "
        "requested_by_id, requested_at, outcome, decision_notes, decided_by_id, decided_at, "
        "transaction_id) VALUES (%s, 'bonus', 5.00, 'x', %s, now(), 'applied', '', %s, now(), "
        "%s)",
        [user.pk, operator.pk, supervisor.pk, matching.pk],
        error=errors.CheckViolation,
        match="requested pending",
    )
    refused(
        app,
        apply,
        [operator.pk, matching.pk, pending.pk],
        error=errors.CheckViolation,
        match="manual_second_operator",
    )
    refused(
        app,
        apply,
        [supervisor.pk, other.pk, pending.pk],
        error=errors.CheckViolation,
        match="must be the",
    )
    refused(
        app,
        "UPDATE payments_manualadjustment SET amount_usd = 500 WHERE id = %s",
        [pending.pk],
        error=errors.CheckViolation,
        match="cannot change",
    )
    # Applied properly, the decision is final: neither refused afterwards nor re-pointed.
    with app.transaction():
        app.execute(apply, [supervisor.pk, matching.pk, pending.pk])
    refused(
        app,
        "UPDATE payments_manualadjustment SET outcome = 'refused' WHERE id = %s",
        [pending.pk],
        error=errors.CheckViolation,
        match="a decision is final",
    )
    refused(
        app,
        "DELETE FROM payments_manualadjustment WHERE id = %s",
        [pending.pk],
        error=errors.InsufficientPrivilege,
    )
