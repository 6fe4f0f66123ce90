"""The admin changelists, the API lists and reconciliation stay flat in ledger size, and reads
never write.

A ledger of 20,000 postings (10,000 of them deposits with their payments and provider events)
is loaded once, set-based in SQL as the owner (triggers and foreign keys off for the load only;
the rows form valid chains and balances, which the first test proves by reconciling them).
Then every query a page or a reconciliation run makes is explained as it ran (``EXPLAIN
(ANALYZE, FORMAT JSON)``): no sequential scan of the postings, payments or provider events,
and no more rows read from them than a page, a bounded count or the users in scope need. The
count bound is lowered to 1,000 here, so the 10,000-row tables are well past it.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from payments import ledger
from payments.admin import paging
from payments.models import Currency, LedgerDrift, Transaction, UserBalance
from payments.services import deposits
from payments.services import reconcile_scope as scope_module
from payments.services.reconcile import collect, examined, ledger_reconcile
from payments.services.reconcile_scope import Scope, reconcile_scope
from tests.factories import CurrencyFactory, PaymentFactory

User = get_user_model()

USERS, PER_USER, DEPOSIT_EVERY = 200, 100, 2
POSTINGS = USERS * PER_USER
COUNT_LIMIT = 1_000  # the changelists' count bound in these tests
BIG_TABLES = {"payments_transaction", "payments_payment", "payments_providerevent"}
STEP_SECONDS = 600  # one posting every ten minutes, users interleaved: 139 days of history

# Set-based: users, then one row per (user, k) with every DEPOSIT_EVERY-th a deposit with its
# payment and provider event, the others bonuses; balance_after is the running sum (10 each).
LOAD_SQL = [
    "SET LOCAL session_replication_role = replica",
    "CREATE TEMP TABLE bulk_users ON COMMIT DROP AS SELECT id AS user_id FROM auth_user LIMIT 0",
    """WITH made AS (
         INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email,
                                is_staff, is_active, date_joined)
         SELECT '!', false, 'bulk-' || g, '', '', '', false, true, now()
           FROM generate_series(1, %(users)s) g RETURNING id)
       INSERT INTO bulk_users SELECT id FROM made""",
    """CREATE TEMP TABLE bulk_rows ON COMMIT DROP AS
       SELECT u.user_id, k AS seq,
              CASE WHEN k %% %(every)s = 0 THEN gen_random_uuid() END AS payment_id,
              now() - make_interval(secs => ((%(per_user)s - k) * %(users)s + u.n) * %(step)s)
                  AS at
         FROM (SELECT user_id, row_number() OVER (ORDER BY user_id) AS n FROM bulk_users) u
        CROSS JOIN generate_series(1, %(per_user)s) k""",
    """INSERT INTO payments_payment (id, internal_payment_id, amount_usd, provider,
           provider_payment_id, status, pay_address, pay_extra_id, transaction_hash, description,
           provider_data, provider_error, completed_at, status_changed_at, created_at, updated_at,
           currency_id, user_id, review_reason)
       SELECT payment_id, 'PAY-' || payment_id, 10.00, 'nowpayments', 'np-' || payment_id,
              'completed', 'addr', '', '', '', '{}', '', at, at, at, at, %(currency)s, user_id, ''
         FROM bulk_rows WHERE payment_id IS NOT NULL""",
    """INSERT INTO payments_transaction (transaction_type, amount_usd, balance_after, sequence,
           description, metadata, idempotency_key, created_at, payment_id, user_id)
       SELECT CASE WHEN payment_id IS NULL THEN 'bonus' ELSE 'deposit' END, 10.00, seq * 10.00,
              seq, '', '{}',
              COALESCE('payment:' || payment_id || ':deposit', 'bonus:' || user_id || ':' || seq),
              at, payment_id, user_id
         FROM bulk_rows ORDER BY at""",
    """INSERT INTO payments_providerevent (provider, kind, dedupe_key, provider_object_id,
           provider_status, body, signature, outcome, detail, deliveries, received_at,
           processed_at, payment_id)
       SELECT 'nowpayments', 'payment', 'np-' || payment_id || ':finished', 'np-' || payment_id,
              'finished', '{}', 'sig', 'applied', '', 1, at, at, payment_id
         FROM bulk_rows WHERE payment_id IS NOT NULL ORDER BY at""",
    """INSERT INTO payments_userbalance (balance_usd, total_deposited, total_withdrawn,
           transaction_count, last_transaction_at, created_at, updated_at, user_id)
       SELECT COUNT(*) * 10.00, COUNT(payment_id) * 10.00, 0, COUNT(*), MAX(at), MIN(at),
              MAX(at), user_id
         FROM bulk_rows GROUP BY user_id""",
]


@pytest.fixture(scope="module")
def big_ledger(django_db_setup: Any, django_db_blocker: Any) -> Iterator[list[int]]:
    """The ledger above, committed; every table emptied again after the module."""
    with django_db_blocker.unblock():
        currency = Currency.objects.first() or CurrencyFactory()
        params = {"users": USERS, "per_user": PER_USER, "every": DEPOSIT_EVERY}
        params |= {"step": STEP_SECONDS, "currency": currency.pk}
        with transaction.atomic(), connection.cursor() as cursor:
            for sql in LOAD_SQL:
                cursor.execute(sql, params)
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE " + ", ".join(sorted(BIG_TABLES)))
            cursor.execute("ANALYZE payments_userbalance")
        users = list(UserBalance.objects.order_by("user_id").values_list("user_id", flat=True))
        try:
            yield users
        finally:
            call_command("flush", interactive=False, verbosity=0)


@pytest.fixture
def bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(paging, "COUNT_LIMIT", COUNT_LIMIT)


def _plan_nodes(plan: dict[str, Any], under_limit: bool = False) -> Iterator[dict[str, Any]]:
    under_limit = under_limit or plan["Node Type"] == "Limit"
    yield plan | {"under limit": under_limit}
    for child in plan.get("Plans", []):
        yield from _plan_nodes(child, under_limit)


def explain(sql: str, params: Any = None) -> list[dict[str, Any]]:
    """The nodes of the plan ``sql`` ran with, with their actual row counts."""
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)
        (raw,) = cursor.fetchone()
    document = json.loads(raw) if isinstance(raw, str) else raw
    return list(_plan_nodes(document[0]["Plan"]))


def big_table_reads(
    nodes: list[dict[str, Any]], *, may_hash: frozenset[str] = frozenset()
) -> tuple[list[str], int]:
    """The unbounded sequential scans of the big tables (a Seq Scan is fine only below a LIMIT,
    which stops it), and the rows read from them in all (those a filter removed included)."""
    seq_scans = [
        n["Relation Name"]
        for n in nodes
        if n["Node Type"] == "Seq Scan"
        and n.get("Relation Name") in BIG_TABLES - may_hash
        and not n["under limit"]
    ]
    rows = sum(
        (int(n["Actual Rows"]) + int(n.get("Rows Removed by Filter", 0))) * int(n["Actual Loops"])
        for n in nodes
        if n.get("Relation Name") in BIG_TABLES - may_hash
    )
    return seq_scans, rows


def assert_flat(
    queries: list[dict[str, Any]],
    *,
    max_rows: int,
    what: str,
    may_hash: frozenset[str] = frozenset(),
    touches_ledger: bool = True,
) -> None:
    """Every SELECT touching a big table: no Seq Scan of one, at most ``max_rows`` read.

    ``may_hash``: tables the planner may read whole for a hash join (not counted).
    """
    checked = 0
    for query in queries:
        sql = query["sql"]
        if not sql.lstrip().upper().startswith(("SELECT", "WITH")):
            continue
        if not any(table in sql for table in BIG_TABLES):
            continue
        seq_scans, rows = big_table_reads(explain(sql), may_hash=may_hash)
        assert not seq_scans, f"{what}: a sequential scan of {seq_scans}: {sql[:300]}"
        assert rows <= max_rows, f"{what}: {rows} rows read from the ledger tables: {sql[:300]}"
        checked += 1
    assert checked or not touches_ledger, f"{what}: no query read the ledger tables"


@pytest.fixture
def admin_client(big_ledger: list[int], db: Any) -> Client:
    root = User.objects.create(username="flat-root", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(root)
    return client


CHANGELISTS = [
    "/admin/payments/payment/",
    "/admin/payments/payment/?status__exact=completed",
    f"/admin/payments/payment/?created_at__year={timezone.now().year}",
    "/admin/payments/transaction/",
    "/admin/payments/transaction/?transaction_type__exact=deposit",
    "/admin/payments/providerevent/",
    "/admin/payments/providerevent/?kind=payment&provider_status=finished",
    "/admin/payments/userbalance/",
    "/admin/payments/ledgerdrift/",
]


@pytest.mark.parametrize("url", CHANGELISTS)
def test_a_changelist_reads_a_page_and_a_bounded_count_whatever_the_ledger_holds(
    admin_client: Client, bounded: None, url: str
) -> None:
    with CaptureQueriesContext(connection) as captured:
        response = admin_client.get(url)
    assert response.status_code == 200
    assert_flat(
        captured.captured_queries,
        max_rows=COUNT_LIMIT + 1 + 300,
        what=url,
        touches_ledger=not url.startswith(("/admin/payments/userbalance/", "/admin/payments/ledg")),
    )


def test_past_the_bound_the_count_says_about_or_more_than(
    admin_client: Client, bounded: None
) -> None:
    everything = admin_client.get("/admin/payments/transaction/").content.decode()
    about = re.search(r"about ([\d,]+) transactions", everything)
    assert about is not None, "unfiltered: PostgreSQL's estimate of the table"
    assert POSTINGS * 0.8 <= int(about[1].replace(",", "")) <= POSTINGS * 1.2
    deposits = admin_client.get("/admin/payments/transaction/?transaction_type__exact=deposit")
    assert f"more than {COUNT_LIMIT}" in deposits.content.decode()
    none = admin_client.get("/admin/payments/transaction/?q=nobody-by-this-name")
    assert "0 transactions" in none.content.decode()


def test_the_api_lists_read_one_users_rows_only(big_ledger: list[int], db: Any) -> None:
    user = User.objects.get(pk=big_ledger[len(big_ledger) // 2])
    client = Client()
    client.force_login(user)
    for url in (
        "/payments/api/transactions/",
        "/payments/api/transactions/?type=deposit",
        "/payments/api/payments/",
        "/payments/api/payments/?status=completed&currency=" + Currency.objects.get().code,
    ):
        with CaptureQueriesContext(connection) as captured:
            response = client.get(url)
        assert response.status_code == 200, url
        assert response.json()["count"] in (PER_USER, PER_USER // DEPOSIT_EVERY)
        assert_flat(captured.captured_queries, max_rows=3 * PER_USER, what=url)


def test_the_settle_sweeps_query_reads_the_payments_due_only(
    big_ledger: list[int], db: Any
) -> None:
    # 10,000 completed payments, all credited, and two completed just now (a raw write, no
    # deposit yet): the sweep reads those two, by the due rows PostgreSQL keeps, not the rest.
    currency = Currency.objects.first()
    due = [PaymentFactory(currency=currency).pk for _ in range(2)]
    move = "UPDATE payments_payment SET status = %s, completed_at = now() WHERE id = ANY(%s)"
    with connection.cursor() as cursor:
        cursor.execute(move, ["completed", due])
    try:
        with CaptureQueriesContext(connection) as captured:
            found = deposits.unsettled_payment_ids()
        assert set(found) == set(due)
        assert_flat(captured.captured_queries, max_rows=20, what="the settle sweep's query")
    finally:  # out of the way of the other tests: not credited, not due
        with connection.cursor() as cursor:
            cursor.execute(move, ["refunded", due])


def test_the_poll_cycles_queries_read_the_recent_credits_only(
    big_ledger: list[int], db: Any
) -> None:
    # 10,000 completed payments over 139 days, no active one: the poll's recheck of recent
    # credits reads the ~500 completed within REFUND_WATCH (7 days), by the partial index on
    # completed_at, not every completed payment.
    from payments.services.deposits import poll

    with CaptureQueriesContext(connection) as captured:
        result = poll.payments_poll()
    assert result.active == 0
    recent = 7 * 24 * 3600 // STEP_SECONDS // DEPOSIT_EVERY
    assert_flat(captured.captured_queries, max_rows=2 * recent, what="the poll cycle")


def test_the_loaded_ledger_is_consistent(big_ledger: list[int], db: Any) -> None:
    assert Transaction.objects.count() == POSTINGS
    summary = ledger_reconcile()
    assert (summary["drift"], summary["pass"]["mode"]) == (0, "full")


def _previous_pass(*, hours_ago: float, slice_: int) -> dict[str, Any]:
    checked_at = timezone.now() - dt.timedelta(hours=hours_ago)
    slices = scope_module.slices_setting()
    return Scope(users=[], slice=slice_, slices=slices, checked_at=checked_at).as_dict()


def _incremental_pass() -> tuple[Scope, list[dict[str, Any]]]:
    """An incremental pass an hour after the previous one, and the queries it ran."""
    now = timezone.now()
    with CaptureQueriesContext(connection) as captured:
        scope = reconcile_scope(
            db=connection, now=now, previous=_previous_pass(hours_ago=1, slice_=3)
        )
        assert scope.users is not None
        assert collect(db=connection, now=now, users=scope.users) == []
        checked = examined(db=connection, users=scope.users)
    assert scope.slice == 4
    # One slice of 200 users (24 slices) and the few who posted in the last 85 minutes.
    assert 0 < len(scope.users) < USERS // 4
    assert checked["postings"] == len(scope.users) * PER_USER
    return scope, captured.captured_queries


def test_an_incremental_pass_reads_what_changed_and_one_slice(
    big_ledger: list[int], db: Any
) -> None:
    _, queries = _incremental_pass()
    # The params were interpolated into the captured SQL, arrays included.
    assert_flat(queries, max_rows=POSTINGS, what="reconciliation")


def test_an_incremental_pass_reads_only_the_rows_of_the_users_in_scope(
    big_ledger: list[int], db: Any
) -> None:
    scope, queries = _incremental_pass()
    assert scope.users is not None
    assert_flat(queries, max_rows=3 * len(scope.users) * PER_USER, what="reconciliation")


def test_an_incremental_pass_with_most_users_in_scope_is_a_full_pass(
    big_ledger: list[int], db: Any
) -> None:
    # Three users in four posted since the previous pass: per-user probes over most of the
    # ledger cost more than the full pass's whole-table joins, so the run is a full pass.
    for user_id in big_ledger[: USERS * 3 // 4]:
        ledger.post(
            user_id=user_id,
            kind="bonus",
            amount_usd=Decimal("1.00"),
            idempotency_key=f"flat:busy:{user_id}",
        )
    now = timezone.now()
    scope = reconcile_scope(db=connection, now=now, previous=_previous_pass(hours_ago=1, slice_=3))
    assert scope.full
    assert scope.as_dict()["mode"] == "full"


def test_every_user_is_in_scope_within_one_round_of_slices(big_ledger: list[int], db: Any) -> None:
    slices = scope_module.slices_setting()
    now = timezone.now()
    mark = _previous_pass(hours_ago=1, slice_=slices - 1)
    seen: set[int] = set()
    for _ in range(slices):
        scope = reconcile_scope(db=connection, now=now, previous=mark)
        assert scope.users is not None
        seen.update(scope.users)
        mark = scope.as_dict() | {"checked_at": mark["checked_at"]}
    assert set(big_ledger) <= seen


def test_drift_of_a_user_in_scope_is_found_and_one_out_of_scope_waits_for_its_slice(
    big_ledger: list[int], db: Any
) -> None:
    now = timezone.now()
    mark = _previous_pass(hours_ago=1, slice_=0)  # the next pass is slice 1
    scope = reconcile_scope(db=connection, now=now, previous=mark)
    assert scope.users is not None
    inside = scope.users[0]
    outside = next(u for u in big_ledger if u not in scope.users)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(
            "UPDATE payments_userbalance SET balance_usd = balance_usd + 0.01"
            " WHERE user_id = ANY(%s)",
            [[inside, outside]],
        )
        cursor.execute("SET LOCAL session_replication_role = DEFAULT")
    found = {f.subject for f in collect(db=connection, now=now, users=scope.users)}
    assert found == {f"user:{inside}"}
    everything = {f.subject for f in collect(db=connection, now=now)}
    assert everything == {f"user:{inside}", f"user:{outside}"}
    # Once a finding is open, its user is in every pass until it is resolved.
    LedgerDrift.objects.create(kind="balance_mismatch", subject=f"user:{outside}", user_id=outside)
    again = reconcile_scope(db=connection, now=now, previous=mark)
    assert again.users is not None
    assert outside in again.users


_WRITES_SQL = """
SELECT COALESCE(SUM(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_xact_user_tables
"""


def _rows_written_in_this_transaction() -> int:
    with connection.cursor() as cursor:
        cursor.execute(_WRITES_SQL)
        (written,) = cursor.fetchone()
    return int(written)


@pytest.mark.parametrize("with_balance", [True, False], ids=["with-balance", "never-posted"])
@pytest.mark.parametrize("url", ["/payments/api/balance/", "/"])
def test_reading_a_balance_writes_nothing(db: Any, url: str, with_balance: bool) -> None:
    user = User.objects.create(username=f"reader-{with_balance}", password="!")
    if with_balance:
        ledger.post(
            user_id=user.pk,
            kind="bonus",
            amount_usd=Decimal("2.50"),
            idempotency_key=f"reader:{user.pk}",
        )
    client = Client()
    client.force_login(user)
    before = _rows_written_in_this_transaction()
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200
    assert _rows_written_in_this_transaction() == before, "the GET wrote rows"
    writes = [
        q["sql"]
        for q in captured.captured_queries
        if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))
        or "FOR UPDATE" in q["sql"].upper()
    ]
    assert writes == []
    expected = "2.50" if with_balance else "0.00"
    if url.startswith("/payments/api/"):
        assert response.json()["balance_usd"] == expected
    else:
        assert f"${expected}" in response.content.decode()
    assert UserBalance.objects.filter(user=user).exists() is with_balance
