"""manage.py db_roles: the least-privileged PostgreSQL role that web, worker and beat log in as.

Migrations run as the owner of the tables (DESIGN.md 5a); every long-running process connects as
an application role that is neither superuser nor owner, so no application bug or injected SQL
can switch a trigger off, DELETE a money row or TRUNCATE a table. This command, run as the
owner, creates that role (idempotently) and sets its grants on the current database to exactly:

- CONNECT on the database, USAGE on schema ``public`` (no CREATE);
- SELECT, INSERT, UPDATE on every table in ``public``; DELETE as well on the tables that are
  not money or audit tables (sessions, beat schedules, job leases, auth...). Every
  ``payments_*`` table is a money or audit table unless listed in ``DELETE_ALLOWED``, so a
  new one gets no DELETE until someone decides it should; ``django_migrations`` is read-only;
- no TRUNCATE, REFERENCES or TRIGGER anywhere; USAGE, SELECT on sequences; EXECUTE as default;
- default privileges for tables the owner creates later: SELECT, INSERT, UPDATE (never DELETE,
  which PostgreSQL cannot grant by table name) and USAGE, SELECT on new sequences.

Re-run it after every ``migrate`` (the release step does): it is idempotent and takes a few
milliseconds, grants what is missing, revokes what should not be there (DELETE on a table that
became a money table included) and then verifies the role's effective privileges, refusing to
finish if anything, a membership or a PUBLIC grant included, gives it more.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.utils.connection import ConnectionDoesNotExist

DEFAULT_ROLE = "payments_app"
PASSWORD_ENV = "PAYMENTS_DB_APP_PASSWORD"  # noqa: S105 - the name of a variable

# Money and audit tables: never DELETE. Every other payments_* table is one too unless listed
# in DELETE_ALLOWED (deny by default).
MONEY_TABLES = frozenset(
    {
        "payments_transaction",
        "payments_userbalance",
        "payments_payment",
        "payments_withdrawalrequest",
        "payments_providerevent",
        "payments_ledgerdrift",
        "payments_currency",
        "django_admin_log",  # the operators' audit trail (every admin action, and why)
    }
)
DELETE_ALLOWED = frozenset({"payments_periodicrun", "payments_idempotencyrecord"})
READ_ONLY_TABLES = frozenset({"django_migrations"})
# The table that proves the schema is migrated, and whose owner is "the owner".
ANCHOR_TABLE = "payments_transaction"

_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def is_money_table(name: str) -> bool:
    """Whether the application role must never DELETE from this table."""
    return name in MONEY_TABLES or (name.startswith("payments_") and name not in DELETE_ALLOWED)


@dataclass
class RolePlan:
    """What ensure_app_role did (or, with execute=False, would do)."""

    role: str
    database: str
    owners: list[str]
    statements: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _tables(names: list[str]) -> str:
    return ", ".join(f"public.{_ident(n)}" for n in names)


def default_role() -> str:
    return str(getattr(settings, "PAYMENTS_DB_APP_ROLE", "") or DEFAULT_ROLE)


def ensure_app_role(
    *,
    using: str = DEFAULT_DB_ALIAS,
    role: str | None = None,
    password: str | None = None,
    execute: bool = True,
) -> RolePlan:
    """Create the application role if needed and set its grants on ``using``'s database.

    ``password`` (None: leave it as it is) is stored as a SCRAM verifier computed here, so the
    clear text never reaches the server's logs. With ``execute=False`` nothing is changed and
    the plan's statements are what would run (the password as psql variable ``app_password``).
    Raises CommandError with a sentence on anything it cannot or must not do.
    """
    role = default_role() if role is None else role
    _check_role_name(role)
    try:
        connection = connections[using]
    except ConnectionDoesNotExist:
        raise CommandError(f"There is no database {using!r} in DATABASES.") from None
    if connection.vendor != "postgresql":
        raise CommandError(
            f"db_roles manages PostgreSQL roles, and database {using!r} is {connection.vendor}: "
            "there is no role to create (SQLite has no users)."
        )
    with transaction.atomic(using=using), connection.cursor() as cursor:
        plan = _plan(cursor, role, password_given=password is not None)
        if not execute:
            return plan
        for statement in plan.statements:
            if statement.startswith("ALTER ROLE") and " PASSWORD " in statement:
                assert password is not None  # noqa: S101 - planned only when given
                statement = _password_statement(connection, role, password)
            cursor.execute(statement)
        _verify(cursor, role, plan)
    return plan


def _check_role_name(role: str) -> None:
    if not _ROLE_NAME.match(role):
        raise CommandError(
            f"{role!r} is not a usable role name: use lower-case letters, digits and "
            "underscores (at most 63), starting with a letter or underscore."
        )
    if role.startswith("pg_") or role == "public":
        raise CommandError(f"{role!r} is reserved by PostgreSQL; choose another role name.")


def _plan(cursor: Any, role: str, *, password_given: bool) -> RolePlan:
    cursor.execute(
        "SELECT current_database(), current_user, current_setting('server_version_num')::int, "
        "to_regclass(%s) IS NOT NULL",
        [f"public.{ANCHOR_TABLE}"],
    )
    database, me, version, migrated = cursor.fetchone()
    if not migrated:
        raise CommandError(
            f"Database {database} has no {ANCHOR_TABLE} table: run `manage.py migrate` "
            "(as the owner) before db_roles."
        )
    cursor.execute(
        "SELECT c.relname, pg_get_userbyid(c.relowner) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'f') ORDER BY c.relname"
    )
    rows = cursor.fetchall()
    tables = [name for name, _ in rows]
    owners = sorted({owner for _, owner in rows})
    plan = RolePlan(role=role, database=database, owners=owners)
    if role == me or role in owners:
        raise CommandError(
            f"{role} owns the tables (or is the role running this command); the application "
            "role must be another role. Run db_roles as the owner with --app-role set to the "
            "role web, worker and beat log in as."
        )
    cursor.execute(
        "SELECT o.name FROM unnest(%s::text[]) AS o(name) "
        "WHERE NOT pg_has_role(current_user, o.name, 'MEMBER')",
        [owners],
    )
    foreign = [name for (name,) in cursor.fetchall()]
    if foreign:
        raise CommandError(
            f"db_roles must run as the owner of the tables ({', '.join(foreign)}) or a "
            f"superuser; {me} is neither."
        )
    cursor.execute(
        "SELECT rolsuper, rolcreatedb, rolcreaterole, rolbypassrls, rolreplication, "
        "rolcanlogin FROM pg_roles WHERE rolname = %s",
        [role],
    )
    existing = cursor.fetchone()
    if existing is not None:
        powers = [
            word
            for word, has in zip(
                ("SUPERUSER", "CREATEDB", "CREATEROLE", "BYPASSRLS", "REPLICATION"),
                existing[:5],
                strict=True,
            )
            if has
        ]
        if powers:
            raise CommandError(
                f"Role {role} already exists with {', '.join(powers)}: it cannot be the "
                "application role. Pick another name with --app-role, or remove those "
                "attributes yourself if the role really is only the application's."
            )
    r = _ident(role)
    plan.statements.append(
        "DO $$\nBEGIN\n"
        f"    CREATE ROLE {r} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS "
        "NOREPLICATION;\n"
        "EXCEPTION WHEN duplicate_object OR unique_violation THEN\n"
        "    NULL;  -- it exists (perhaps created by a concurrent run)\n"
        "END\n$$"
    )
    if existing is not None and not existing[5]:
        plan.statements.append(f"ALTER ROLE {r} LOGIN")
    if password_given:
        plan.statements.append(f"ALTER ROLE {r} PASSWORD :'app_password'")
    plan.statements += [
        f"GRANT CONNECT ON DATABASE {_ident(database)} TO {r}",
        f"GRANT USAGE ON SCHEMA public TO {r}",
        f"REVOKE CREATE ON SCHEMA public FROM {r}",
    ]
    read_only = [t for t in tables if t in READ_ONLY_TABLES]
    money = [t for t in tables if t not in READ_ONLY_TABLES and is_money_table(t)]
    other = [t for t in tables if t not in READ_ONLY_TABLES and not is_money_table(t)]
    never = "TRUNCATE, REFERENCES, TRIGGER" + (", MAINTAIN" if version >= 170000 else "")
    if other:
        plan.statements.append(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {_tables(other)} TO {r}")
    if money:
        plan.statements += [
            f"GRANT SELECT, INSERT, UPDATE ON {_tables(money)} TO {r}",
            f"REVOKE DELETE ON {_tables(money)} FROM {r}",
        ]
    if read_only:
        plan.statements += [
            f"GRANT SELECT ON {_tables(read_only)} TO {r}",
            f"REVOKE INSERT, UPDATE, DELETE ON {_tables(read_only)} FROM {r}",
        ]
    if tables:
        plan.statements.append(f"REVOKE {never} ON {_tables(tables)} FROM {r}")
    plan.statements += [
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {r}",
        f"REVOKE UPDATE ON ALL SEQUENCES IN SCHEMA public FROM {r}",
    ]
    for owner in owners:
        default = f"ALTER DEFAULT PRIVILEGES FOR ROLE {_ident(owner)} IN SCHEMA public"
        plan.statements += [
            f"{default} GRANT SELECT, INSERT, UPDATE ON TABLES TO {r}",
            f"{default} REVOKE DELETE, {never} ON TABLES FROM {r}",
            f"{default} GRANT USAGE, SELECT ON SEQUENCES TO {r}",
            f"{default} REVOKE UPDATE ON SEQUENCES FROM {r}",
        ]
    return plan


def _password_statement(connection: Any, role: str, password: str) -> str:
    pgconn = connection.connection.pgconn
    verifier = pgconn.encrypt_password(password.encode(), role.encode()).decode()
    return f"ALTER ROLE {_ident(role)} PASSWORD '{verifier.replace(chr(39), chr(39) * 2)}'"


def _verify(cursor: Any, role: str, plan: RolePlan) -> None:
    """Refuse (and roll back) if the role ends up able to do more than planned."""
    cursor.execute(
        "SELECT rolsuper OR rolcreatedb OR rolcreaterole OR rolbypassrls OR rolreplication "
        "FROM pg_roles WHERE rolname = %s",
        [role],
    )
    (powerful,) = cursor.fetchone()
    cursor.execute(
        "SELECT (SELECT count(*) FROM pg_class WHERE relowner = r.oid) "
        "+ (SELECT count(*) FROM pg_namespace WHERE nspowner = r.oid) "
        "+ (SELECT count(*) FROM pg_proc WHERE proowner = r.oid) "
        "+ (SELECT count(*) FROM pg_database WHERE datdba = r.oid AND datname = current_database())"
        " FROM pg_roles r WHERE r.rolname = %s",
        [role],
    )
    (owned,) = cursor.fetchone()
    cursor.execute(
        "SELECT o.name FROM unnest(%s::text[]) AS o(name) WHERE pg_has_role(%s, o.name, 'MEMBER')",
        [plan.owners, role],
    )
    owner_member = [name for (name,) in cursor.fetchall()]
    cursor.execute(
        "SELECT c.relname, has_table_privilege(%s, c.oid, 'DELETE'), "
        "has_table_privilege(%s, c.oid, 'TRUNCATE'), has_table_privilege(%s, c.oid, 'TRIGGER') "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'f')",
        [role, role, role],
    )
    too_much = sorted(
        name
        for name, can_delete, can_truncate, can_trigger in cursor.fetchall()
        if can_truncate or can_trigger or (can_delete and is_money_table(name))
    )
    problems = []
    if powerful:
        problems.append("it has a superuser, CREATEDB, CREATEROLE, BYPASSRLS or REPLICATION")
    if owned:
        problems.append(f"it owns {owned} objects in this database")
    if owner_member:
        problems.append(f"it is a member of the owner role {', '.join(owner_member)}")
    if too_much:
        tables = ", ".join(too_much)
        problems.append(
            f"through a role it belongs to or a grant to PUBLIC it can still TRUNCATE, add "
            f"triggers to or DELETE rows of {tables}"
        )
    cursor.execute("SELECT current_setting('server_version_num')::int >= 150000")
    (has_parameter_acl,) = cursor.fetchone()
    if has_parameter_acl:
        cursor.execute(
            "SELECT has_parameter_privilege(%s, 'session_replication_role', 'SET')", [role]
        )
        if cursor.fetchone()[0]:
            problems.append("it may SET session_replication_role, which switches triggers off")
    if problems:
        raise CommandError(
            f"Role {role} is not a safe application role: {'; '.join(problems)}. Nothing was "
            "changed; fix that by hand and run db_roles again."
        )
    cursor.execute("SELECT has_schema_privilege(%s, 'public', 'CREATE')", [role])
    if cursor.fetchone()[0]:
        plan.warnings.append(
            f"{role} can create objects in schema public through PUBLIC (the default before "
            "PostgreSQL 15); consider REVOKE CREATE ON SCHEMA public FROM PUBLIC."
        )


class Command(BaseCommand):
    help = (
        "Create the least-privileged PostgreSQL role web, worker and beat connect as, and set "
        "its grants on this database (no DELETE on money tables, no TRUNCATE, no ownership). "
        "Run it as the owner after every migrate; it is idempotent."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--app-role",
            default=None,
            help=f"Role name (default: settings.PAYMENTS_DB_APP_ROLE, else {DEFAULT_ROLE}).",
        )
        parser.add_argument(
            "--print",
            action="store_true",
            dest="print_only",
            help="Print the SQL instead of running it (the password as psql :'app_password').",
        )
        parser.add_argument(
            "--database", default=DEFAULT_DB_ALIAS, help="Database alias (default: default)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        password = os.environ.get(PASSWORD_ENV) or None
        plan = ensure_app_role(
            using=options["database"],
            role=options["app_role"],
            password=password,
            execute=not options["print_only"],
        )
        if options["print_only"]:
            self.stdout.write(f"-- db_roles for role {plan.role} on database {plan.database}")
            if password is not None:
                self.stdout.write(
                    f'-- run with: psql -v app_password="${PASSWORD_ENV}" -f <this file>'
                )
            self.stdout.write("BEGIN;")
            for statement in plan.statements:
                self.stdout.write(f"{statement};")
            self.stdout.write("COMMIT;")
            return
        for warning in plan.warnings:
            self.stderr.write(self.style.WARNING(warning))
        self.stdout.write(
            self.style.SUCCESS(
                f"Role {plan.role} has its grants on {plan.database} "
                f"({len(plan.statements)} statements); run db_roles again after every migrate."
            )
        )
