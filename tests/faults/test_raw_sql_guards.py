"""Scenario 8: raw SQL, as the application role, against every guarded table.

The role web, worker and beat log in as tries, on a psycopg connection of its own, what an
application bug or injected SQL would: rewrite or delete ledger lines, forge a posting or a
balance, break a four-eyes rule, duplicate what is unique, switch a trigger off, grant itself
more. ``tests/payments/test_db_guards.py`` covers the state machines pair by pair, the frozen
terms, DELETE on the money tables and the triggers of four tables; this file imports its
connections and helpers and covers the rest: one table of attempts, plus TRUNCATE and trigger
switches over every table the schema guards (found in the catalogue, so a new table is covered
the day it appears). Fixture rows are written by the owner along legal paths only.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg
import psycopg.sql
import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from psycopg import errors

from payments import ledger
from payments.management.commands.db_roles import is_money_table
from payments.models import LedgerDrift, ProviderEvent, Transaction
from payments.models.withdrawal import WithdrawalOverride
from payments.services import findings
from tests.factories import CurrencyFactory, UserFactory
from tests.payments.test_db_guards import (  # the fixtures and helpers of the guard tests
    app,
    attempt,
    owner,
    payment_in,
    withdrawal_in,
)

pytestmark = [
    pytest.mark.faults,
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]
__all__ = ["app", "owner"]  # fixtures, imported to be used here


@dataclass(frozen=True)
class Attempt:
    """One raw SQL attempt: refused with ``error`` (matching ``match``), or, with ``error``
    None, accepted by PostgreSQL but without effect: ``no_effect`` must then be false."""

    sql: str
    error: type[psycopg.Error] | None
    match: str = ""
    commit: bool = False  # run in a committing transaction (deferred checks fire at COMMIT)
    no_effect: str = ""


NEXT = (
    "(SELECT max(sequence) + 1 FROM payments_transaction WHERE user_id = %(user)s)",
    "(SELECT balance_usd FROM payments_userbalance WHERE user_id = %(user)s)",
)
POSTING = (
    "INSERT INTO payments_transaction (user_id, transaction_type, amount_usd, balance_after, "
    "sequence, description, metadata, idempotency_key, created_at, payment_id) VALUES "
    "(%(user)s, '{kind}', {amount}, {balance}, " + NEXT[0] + ", '', '{{}}', '{key}', now(), "
    "{payment})"
)


def posting(kind: str, amount: str, *, balance: str = "", key: str = "forged", payment: str = ""):
    """An INSERT of one ledger line continuing the user's chain (unless ``balance`` says)."""
    return POSTING.format(
        kind=kind,
        amount=amount,
        balance=balance or f"{NEXT[1]} + {amount}",
        key=key,
        payment=payment or "NULL",
    )


ATTEMPTS: dict[str, Attempt] = {
    # --- the ledger: append-only, chained, never negative, exactly once, balance = ledger ----
    "ledger-rewrite-amount": Attempt(
        "UPDATE payments_transaction SET amount_usd = amount_usd + 1 WHERE id = %(txn)s",
        errors.RestrictViolation,
        "append-only",
    ),
    "ledger-rewrite-key": Attempt(
        "UPDATE payments_transaction SET idempotency_key = 'other' WHERE id = %(txn)s",
        errors.RestrictViolation,
        "append-only",
    ),
    "ledger-delete-one-line": Attempt(
        "DELETE FROM payments_transaction WHERE id = %(txn)s", errors.InsufficientPrivilege
    ),
    "ledger-forged-balance-after": Attempt(
        posting("bonus", "10", balance="5000"), errors.CheckViolation, "ledger chain broken"
    ),
    "ledger-overdraft": Attempt(posting("adjustment", "-1000.01"), errors.CheckViolation),
    "ledger-replayed-key": Attempt(posting("bonus", "1", key="fund"), errors.UniqueViolation),
    "ledger-deposit-for-an-unpaid-payment": Attempt(
        posting("deposit", "25.00", payment="%(pending_payment)s"),
        errors.CheckViolation,
        "only completed payments are credited",
    ),
    "ledger-posting-without-its-balance": Attempt(
        posting("bonus", "10"), errors.CheckViolation, "differs from its ledger", commit=True
    ),
    # --- the balance cache ------------------------------------------------------------------
    "balance-raised-by-hand": Attempt(
        "UPDATE payments_userbalance SET balance_usd = balance_usd + 100 WHERE user_id = %(user)s",
        errors.CheckViolation,
        "differs from its ledger",
        commit=True,
    ),
    "balance-negative": Attempt(
        "UPDATE payments_userbalance SET balance_usd = -1 WHERE user_id = %(user)s",
        errors.CheckViolation,
    ),
    "balance-delete-one-row": Attempt(
        "DELETE FROM payments_userbalance WHERE user_id = %(user)s", errors.InsufficientPrivilege
    ),
    # --- payments and withdrawals (transitions and terms: test_db_guards.py) -----------------
    "payment-delete-one-row": Attempt(
        "DELETE FROM payments_payment WHERE id = %(pending_payment)s", errors.InsufficientPrivilege
    ),
    "withdrawal-completed-again-as-failed": Attempt(
        "UPDATE payments_withdrawalrequest SET status = 'failed' WHERE id = %(completed)s",
        errors.CheckViolation,
        "final status",
    ),
    "withdrawal-fees-raised": Attempt(
        "UPDATE payments_withdrawalrequest SET service_fee_usd = 9.99 WHERE id = %(pending)s",
        errors.CheckViolation,
        "cannot change",
    ),
    "withdrawal-payout-attempts-negative": Attempt(
        "UPDATE payments_withdrawalrequest SET payout_attempts = -1 WHERE id = %(pending)s",
        errors.CheckViolation,
    ),
    # --- four-eyes decisions ----------------------------------------------------------------
    "override-approved-by-its-requester": Attempt(
        "UPDATE payments_withdrawaloverride SET outcome = 'applied', decided_at = now(), "
        "decided_by_id = requested_by_id WHERE id = %(override)s",
        errors.CheckViolation,
        "withdrawal_override_second_operator",
    ),
    "override-a-second-pending-one": Attempt(
        "INSERT INTO payments_withdrawaloverride (withdrawal_id, action, transaction_hash, "
        "decision_notes, reason, requested_by_id, requested_at, outcome) SELECT withdrawal_id, "
        "'fail', '', '', 'again', requested_by_id, now(), 'pending' "
        "FROM payments_withdrawaloverride WHERE id = %(override)s",
        errors.UniqueViolation,
        "withdrawal_override_one_pending",
    ),
    "override-delete": Attempt(
        "DELETE FROM payments_withdrawaloverride WHERE id = %(override)s",
        errors.InsufficientPrivilege,
    ),
    # --- provider events, findings, the admin's audit trail ---------------------------------
    "event-stored-twice": Attempt(
        "INSERT INTO payments_providerevent (provider, kind, dedupe_key, provider_object_id, "
        "provider_status, body, signature, outcome, detail, deliveries, received_at) "
        "SELECT provider, kind, dedupe_key, provider_object_id, provider_status, 'forged', "
        "signature, outcome, detail, 1, now() FROM payments_providerevent WHERE id = %(event)s",
        errors.UniqueViolation,
    ),
    "event-delete": Attempt(
        "DELETE FROM payments_providerevent WHERE id = %(event)s", errors.InsufficientPrivilege
    ),
    "finding-opened-twice": Attempt(
        "INSERT INTO payments_ledgerdrift (kind, subject, expected, actual, detail, "
        "first_seen_at, last_seen_at, times_seen, resolution_notes) SELECT kind, subject, '', "
        "'', '', now(), now(), 1, '' FROM payments_ledgerdrift WHERE id = %(drift)s",
        errors.UniqueViolation,
        "drift_one_open_per_subject",
    ),
    "finding-delete": Attempt(
        "DELETE FROM payments_ledgerdrift WHERE id = %(drift)s", errors.InsufficientPrivilege
    ),
    "audit-trail-delete": Attempt(
        "DELETE FROM django_admin_log WHERE id = %(log)s", errors.InsufficientPrivilege
    ),
    "audit-trail-truncate": Attempt("TRUNCATE django_admin_log", errors.InsufficientPrivilege),
    "migrations-rewritten": Attempt(
        "UPDATE django_migrations SET applied = now()", errors.InsufficientPrivilege
    ),
    # --- switching guards off, and granting itself more -------------------------------------
    "trigger-function-replaced": Attempt(
        "CREATE OR REPLACE FUNCTION public.payments_ledger_append_only() RETURNS trigger "
        "LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
        errors.InsufficientPrivilege,  # no CREATE on the schema, and not the owner
    ),
    "function-created-in-public": Attempt(
        "CREATE FUNCTION public.sneaky() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        errors.InsufficientPrivilege,
    ),
    "check-constraint-dropped": Attempt(
        "ALTER TABLE payments_userbalance DROP CONSTRAINT IF EXISTS balance_nonnegative",
        errors.InsufficientPrivilege,
        "must be owner",
    ),
    "row-level-security-off": Attempt(
        "ALTER TABLE payments_transaction NO FORCE ROW LEVEL SECURITY",
        errors.InsufficientPrivilege,
        "must be owner",
    ),
    "grant-itself-delete": Attempt(
        "GRANT DELETE, TRUNCATE ON payments_transaction, payments_userbalance TO CURRENT_USER",
        None,
        no_effect="SELECT has_table_privilege(current_user, 'payments_transaction', 'DELETE') "
        "OR has_table_privilege(current_user, 'payments_userbalance', 'TRUNCATE')",
    ),
    "grant-public-delete": Attempt(
        "GRANT DELETE ON payments_payment TO PUBLIC",
        None,
        no_effect="SELECT has_table_privilege('public', 'payments_payment', 'DELETE')",
    ),
    "grant-itself-the-owner": Attempt(
        "GRANT {owner_role} TO CURRENT_USER", errors.InsufficientPrivilege
    ),
    "become-the-owner": Attempt("SET ROLE {owner_role}", errors.InsufficientPrivilege),
    "become-superuser": Attempt(
        "ALTER ROLE CURRENT_USER SUPERUSER BYPASSRLS", errors.InsufficientPrivilege
    ),
    "create-a-powerful-role": Attempt(
        "CREATE ROLE sneaky LOGIN SUPERUSER", errors.InsufficientPrivilege
    ),
    "copy-from-a-program": Attempt(
        "COPY payments_currency (code) FROM PROGRAM 'true'", errors.InsufficientPrivilege
    ),
}


@pytest.fixture
def rows(owner: psycopg.Connection[Any]) -> dict[str, Any]:
    """One row of each guarded kind, written by the owner along legal paths."""
    user, operator = UserFactory(), UserFactory()
    currency = CurrencyFactory()
    ledger.post(
        user_id=user.pk, kind="deposit", amount_usd=Decimal("1000.00"), idempotency_key="fund"
    )
    processing = withdrawal_in(owner, user, currency, "processing")
    override = WithdrawalOverride.objects.create(
        withdrawal_id=processing, action="fail", reason="stuck", requested_by=operator
    )
    event = ProviderEvent.objects.create(
        kind="payment",
        dedupe_key="raw-sql-guard-event",
        provider_object_id="42",
        provider_status="finished",
        body="{}",
        signature="sig",
    )
    drift = findings.finding_record(kind=LedgerDrift.Kind.LOST_PAYOUT, subject="payout:guard")
    log = LogEntry.objects.create(
        user=operator,
        content_type=ContentType.objects.get_for_model(WithdrawalOverride),
        object_id=str(override.pk),
        object_repr=str(override),
        action_flag=CHANGE,
        change_message="requested",
    )
    return {
        "user": user.pk,
        "txn": Transaction.objects.filter(user_id=user.pk).values_list("pk", flat=True).last(),
        "pending_payment": payment_in(user, currency, "pending"),
        "pending": withdrawal_in(owner, user, currency, "pending"),
        "completed": withdrawal_in(owner, user, currency, "completed"),
        "override": override.pk,
        "event": event.pk,
        "drift": drift.pk,
        "log": log.pk,
    }


def run(app: psycopg.Connection[Any], case: Attempt, params: dict[str, Any]) -> Any:
    """The attempt's error (None if PostgreSQL accepted it); never leaves a change behind
    unless a committing attempt was wrongly accepted (and then the test fails)."""
    if not case.commit:
        return attempt(app, case.sql, params)
    try:
        with app.transaction():
            app.execute(case.sql, params)
    except psycopg.Error as exc:
        return exc
    return None


@pytest.mark.parametrize("name", list(ATTEMPTS))
def test_the_application_role_cannot(name, app, rows):
    case = ATTEMPTS[name]
    sql = case.sql
    if "{owner_role}" in sql:  # a role name goes in as an identifier, not a parameter
        owner_role = psycopg.sql.Identifier(connection.settings_dict["USER"] or "postgres")
        sql = psycopg.sql.SQL(sql).format(owner_role=owner_role).as_string(app)
    params = {k: v for k, v in rows.items() if f"%({k})s" in sql}
    exc = run(app, Attempt(sql, case.error, case.match, case.commit), params or None)
    if case.error is None:
        assert exc is None, f"{name}: {exc!r}"
        (effect,) = app.execute(case.no_effect).fetchone()
        assert effect is False, f"{name} took effect"
        return
    assert isinstance(exc, case.error), f"{name}: {case.sql!r} gave {exc!r}"
    assert case.match.lower() in str(exc).lower(), str(exc)
    balance, postings = _books(rows["user"])
    assert balance == postings, f"after {name} the balance {balance} is not the ledger {postings}"


def _books(user_id: int) -> tuple[Decimal, Decimal]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT balance_usd FROM payments_userbalance WHERE user_id = %s), "
            "(SELECT sum(amount_usd) FROM payments_transaction WHERE user_id = %s)",
            [user_id, user_id],
        )
        return cursor.fetchone()


# --- over every guarded table the catalogue knows ----------------------------------------------


def _guarded_tables() -> list[str]:
    """Every money or audit table (db_roles' rule), read from the catalogue."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY 1"
        )
        return [name for (name,) in cursor.fetchall() if is_money_table(name)]


def _triggers() -> list[tuple[str, str]]:
    """(table, trigger) of every trigger the schema defines (constraint triggers included)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND NOT t.tgisinternal ORDER BY 1, 2"
        )
        return cursor.fetchall()


def test_no_guarded_table_is_truncated_or_deleted_wholesale_by_the_application_role(app, rows):
    tables = _guarded_tables()
    assert {"payments_transaction", "payments_withdrawaloverride", "payments_webhookevent"} <= set(
        tables
    )
    wrong = []
    for table in tables:
        for sql in (f"TRUNCATE {table} CASCADE", f"DELETE FROM {table}"):
            exc = attempt(app, sql)
            if not isinstance(exc, errors.InsufficientPrivilege):
                wrong.append(f"{sql}: {exc!r}")
    assert not wrong, wrong


def test_no_trigger_anywhere_is_switched_off_by_the_application_role(app):
    triggers = _triggers()
    tables = sorted({table for table, _ in triggers})
    assert {"payments_transaction", "payments_manualadjustment"} <= set(tables)
    statements = [
        sql
        for table in tables
        for sql in (
            f"ALTER TABLE {table} DISABLE TRIGGER ALL",
            f"ALTER TABLE {table} DISABLE TRIGGER USER",
        )
    ] + [
        sql
        for table, trigger in triggers
        for sql in (
            f"ALTER TABLE {table} DISABLE TRIGGER {trigger}",
            f"ALTER TABLE {table} ENABLE REPLICA TRIGGER {trigger}",  # off for a replica session
        )
    ]
    wrong = []
    for sql in statements:
        exc = attempt(app, sql)
        if not isinstance(exc, errors.InsufficientPrivilege):
            wrong.append(f"{sql}: {exc!r}")
    assert not wrong, wrong
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE c.relname = ANY(%s) AND NOT t.tgisinternal AND t.tgenabled <> 'O'",
            [tables],
        )
        assert cursor.fetchone() == (0,), "a trigger is not enabled"
