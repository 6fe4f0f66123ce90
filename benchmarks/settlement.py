"""Settlement throughput: a Celery worker settling completed payments vs the writes in plain SQL.

Setup: a fresh database with N users (each with an empty balance row), one currency and M
payments already ``completed`` with no deposit. For each concurrency C:

* ours: a real ``celery -A project worker -Q settlement -c C --prefetch-multiplier 1`` (prefork);
  the benchmark does what the settle sweep does (``settlement.unsettled_payment_ids`` and
  ``workers.payments_settle_batch`` in batches of ``workers.tasks.SETTLE_BATCH``) and times from
  the first enqueue until every payment has its DEPOSIT posting. The worker's RSS (main +
  children, from /proc) is sampled every 0.5 s.
* baselines, both fed the very same 200-id batches through a queue to C psycopg 3 processes,
  each batch in one transaction writing the rows ours writes (lock the payments, look up
  existing deposits, lock the balances in user order, one statement inserting one posting per
  payment and updating the balances; the payment rows are not updated, as ours does not):
  (a) on ``bench_plain_*`` copies of the tables (same columns, CHECKs and indexes; no
  triggers, no foreign keys), (b) on our own tables, so our triggers and foreign keys fire.

Run from the repository root: ``.venv/bin/python benchmarks/settlement.py [--payments 2000]``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import multiprocessing as mp
import pstats
import random
import sys
import time
import uuid
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import harness
import results as results_mod

DB_NAME = "bench_settlement"
REDIS_INDEX = 15  # the test suite uses 7-9 and 13
TARGET_PLAIN = 0.5  # ours vs the batches in plain SQL on plain tables
TARGET_OURS_TABLES = 0.8  # ours vs the same SQL on our tables (our triggers and FKs)
STALL_SECONDS = 60
UNUSABLE = "!"  # an unusable password hash: these users never log in

PLAIN_TABLES = {
    "bench_plain_payment": "payments_payment",
    "bench_plain_userbalance": "payments_userbalance",
    "bench_plain_transaction": "payments_transaction",
}

# The baseline's tables: plain copies (same columns, defaults, CHECKs and indexes; no triggers,
# no foreign keys), or ours (our triggers and foreign keys fire).
TABLES = {
    "plain": {
        "payment": "bench_plain_payment",
        "balance": "bench_plain_userbalance",
        "posting": "bench_plain_transaction",
    },
    "ours": {
        "payment": "payments_payment",
        "balance": "payments_userbalance",
        "posting": "payments_transaction",
    },
}
# One batch, one transaction, the rows ours writes: lock the payments, see which are credited,
# lock the balances in user order, one statement writing the postings and the balances.
SQL_LOCK_PAYMENTS = (
    "SELECT id, user_id, status, amount_usd, internal_payment_id, provider_payment_id "
    "FROM {payment} WHERE id = ANY(%s) AND status = 'completed' ORDER BY id FOR UPDATE"
)
SQL_CREDITED = (
    "SELECT payment_id FROM {posting} WHERE payment_id = ANY(%s) AND transaction_type = 'deposit'"
)
SQL_LOCK_BALANCES = (
    "SELECT user_id, balance_usd, transaction_count, total_deposited FROM {balance} "
    "WHERE user_id = ANY(%s) ORDER BY user_id FOR UPDATE"
)
# One statement writes the postings and the balances (a data-modifying CTE), as ours does: our
# tables' statement-level checks want a posting and its balance change in the same statement.
SQL_WRITE = (
    "WITH new AS (INSERT INTO {posting} (user_id, transaction_type, amount_usd, balance_after, "
    "sequence, payment_id, withdrawal_request_id, description, metadata, idempotency_key, "
    "created_at) SELECT u, 'deposit', a, b, s, p, NULL, d, "
    "jsonb_build_object('provider_payment_id', m), k, now() FROM unnest(%s::bigint[], "
    "%s::numeric[], %s::numeric[], %s::bigint[], %s::uuid[], %s::text[], %s::text[], "
    "%s::text[]) AS v(u, a, b, s, p, d, m, k) ORDER BY u, s RETURNING id), "
    "moved AS (UPDATE {balance} AS t SET balance_usd = v.b, transaction_count = v.n, "
    "total_deposited = v.d, last_transaction_at = now(), updated_at = now() FROM "
    "unnest(%s::bigint[], %s::numeric[], %s::bigint[], %s::numeric[]) AS v(u, b, n, d) "
    "WHERE t.user_id = v.u RETURNING t.user_id) "
    "SELECT (SELECT count(*) FROM new), (SELECT count(*) FROM moved)"
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--db", default=DB_NAME)
    parser.add_argument("--redis-db", type=int, default=REDIS_INDEX)
    parser.add_argument("--timeout", type=float, default=600.0, help="per run, seconds")
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="K",
        help="afterwards, settle K payments in-process under cProfile and count their queries",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--quick", action="store_true", help="(make bench QUICK=1; sizes come from run_all)"
    )
    parser.add_argument(
        "--group-by-user",
        action="store_true",
        help="what-if: batch payments by user instead of by completion time (not the sweep's way)",
    )
    parser.add_argument(
        "--pyspy",
        action="store_true",
        help="sample the worker with py-spy during its runs (slows it a little)",
    )
    return parser.parse_args()


# --- data ----------------------------------------------------------------------------------


def create_data(args: argparse.Namespace) -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.utils import timezone

    from payments.models import Currency, Payment
    from payments.models.payment import PaymentStatus

    rng = random.Random(args.seed)
    user_model = get_user_model()
    users = user_model.objects.bulk_create(
        [user_model(username=f"bench{i:05d}", password=UNUSABLE) for i in range(args.users)],
        batch_size=2000,
    )
    currency = Currency.objects.create(
        code="USDTTRC20",
        name="Tether USD (TRC20)",
        token="USDT",  # noqa: S106 - a ticker
        network="TRC20",
    )
    start = timezone.now() - timedelta(hours=1)
    payments = []
    for i in range(args.payments):
        amount = Decimal(rng.randrange(1_000, 50_000)) / 100
        stamp = start + timedelta(milliseconds=i)
        payments.append(
            Payment(
                id=uuid.UUID(int=rng.getrandbits(128), version=4),
                user_id=rng.choice(users).pk,
                internal_payment_id=f"PAY_BENCH_{i:08d}",
                amount_usd=amount,
                currency=currency,
                pay_amount=amount,
                actual_amount=amount,
                actual_amount_usd=amount,
                provider_payment_id=str(5_000_000_000 + i),
                status=PaymentStatus.COMPLETED,
                completed_at=stamp,
                status_changed_at=stamp,
                provider_data={"payment_status": "finished"},
            )
        )
    Payment.objects.bulk_create(payments, batch_size=2000)
    with connection.cursor() as cur:
        for plain, source in PLAIN_TABLES.items():
            cur.execute(f"CREATE TABLE {plain} (LIKE {source} INCLUDING ALL)")
        cur.execute("INSERT INTO bench_plain_payment SELECT * FROM payments_payment")


def reset_ours() -> None:
    """No postings, every user an empty balance row (payments are only locked, never updated)."""
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SET LOCAL payments.allow_truncate = on")
        cur.execute("TRUNCATE payments_transaction, payments_userbalance CASCADE")
        cur.execute(
            "INSERT INTO payments_userbalance (user_id, balance_usd, total_deposited, "
            "total_withdrawn, transaction_count, created_at, updated_at) "
            "SELECT id, 0, 0, 0, 0, now(), now() FROM auth_user"
        )
        # TRUNCATE fires no trigger: every payment is due again, as the sweep must see it.
        cur.execute("SELECT payments_settlement_due_rebuild()")
    vacuum(
        [
            "payments_transaction",
            "payments_userbalance",
            "payments_payment",
            "payments_settlementdue",
        ]
    )


def reset_plain() -> None:
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(f"TRUNCATE {', '.join(PLAIN_TABLES)}")
        cur.execute("INSERT INTO bench_plain_payment SELECT * FROM payments_payment")
        # Empty balances, as ours starts with (ours may have run on its tables just before).
        cur.execute(
            "INSERT INTO bench_plain_userbalance (user_id, balance_usd, total_deposited, "
            "total_withdrawn, transaction_count, created_at, updated_at) "
            "SELECT id, 0, 0, 0, 0, now(), now() FROM auth_user"
        )
    vacuum(list(PLAIN_TABLES))


def vacuum(tables: list[str]) -> None:
    from django.db import connection

    with connection.cursor() as cur:
        for name in tables:
            cur.execute(f"VACUUM ANALYZE {name}")


def batches_of(ids: list[str], size: int) -> list[list[str]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def ids_grouped_by_user(ids: list[str]) -> list[str]:
    """What-if (not what the sweep does): order by user, so concurrent batches share no user."""
    from payments.models import Payment

    users = {str(pk): user for pk, user in Payment.objects.values_list("pk", "user_id")}
    position = {pk: i for i, pk in enumerate(ids)}
    return sorted(ids, key=lambda pk: (users[pk], position[pk]))


# --- ours: the Celery worker ---------------------------------------------------------------


def run_worker(
    concurrency: int, env: dict[str, str], logs: Path, args: argparse.Namespace
) -> dict[str, Any]:
    from django.db import connection

    from payments.services import deposits as settlement
    from project.celery import app
    from workers.tasks import SETTLE_BATCH, payments_settle_batch_task

    worker = harness.Child(
        f"worker-c{concurrency}",
        [
            str(harness.BIN / "celery"),
            "-A",
            "project",
            "worker",
            "-Q",
            "settlement",
            "-c",
            str(concurrency),
            "--prefetch-multiplier",
            "1",
            "-P",
            "prefork",
            "-n",
            f"bench-settle-c{concurrency}@%h",
            "--loglevel",
            "INFO",
        ],
        env,
        logs / f"worker-c{concurrency}.log",
    )
    sampler = harness.RssSampler(worker.pid).start()
    try:
        name = f"bench-settle-c{concurrency}@"

        def ready() -> bool:
            if not worker.alive():
                raise RuntimeError(f"worker exited early:\n{worker.tail()}")
            replies = app.control.ping(timeout=0.5)
            return any(next(iter(r)).startswith(name) for r in replies)

        harness.wait_until(ready, timeout=90, interval=0.5, what="the worker to answer a ping")
        time.sleep(1.0)  # let the pool children finish importing
        idle_kib = harness.rss_kib(harness.process_tree(worker.pid))

        q_start = time.perf_counter()
        ids = [str(p) for p in settlement.unsettled_payment_ids(limit=args.payments)]
        query_s = time.perf_counter() - q_start
        if len(ids) != args.payments:
            raise RuntimeError(f"expected {args.payments} unsettled payments, found {len(ids)}")
        if args.group_by_user:
            ids = ids_grouped_by_user(ids)

        meter = harness.CpuMeter()
        meter.start({"worker": harness.process_tree(worker.pid)})
        spy = None
        if args.pyspy:
            spy = harness.pyspy_start(
                worker.pid, logs / f"pyspy-c{concurrency}.txt", logs / f"pyspy-c{concurrency}.log"
            )
        load = results_mod.LoadMeter().__enter__()
        t0_wall, t0 = time.time(), time.monotonic()
        for batch in batches_of(ids, SETTLE_BATCH):
            payments_settle_batch_task.delay(payment_ids=batch)
        enqueue_s = time.monotonic() - t0

        progress = {"count": -1, "at": time.monotonic()}

        def settled() -> bool:
            if not worker.alive():
                raise RuntimeError(f"worker died:\n{worker.tail()}")
            with connection.cursor() as cur:
                cur.execute(
                    "SELECT count(*) FROM payments_transaction WHERE transaction_type = 'deposit'"
                )
                count = cur.fetchone()[0]
            if count != progress["count"]:
                progress.update(count=count, at=time.monotonic())
            elif time.monotonic() - progress["at"] > STALL_SECONDS:
                raise RuntimeError(
                    f"no deposit for {STALL_SECONDS}s at {count} of {args.payments}: were the "
                    f"tasks taken or flushed by someone else using Redis db {args.redis_db}? "
                    f"(see {worker.log})"
                )
            return count >= args.payments

        harness.wait_until(settled, timeout=args.timeout, interval=0.25, what="all deposits")
        load.__exit__(None, None, None)
        sampler.sample_now()  # a run shorter than the interval still gets one sample
        t_seen = time.monotonic()
        meter.stop({"worker": harness.process_tree(worker.pid)})
        harness.pyspy_stop(spy)
        with connection.cursor() as cur:
            cur.execute("SELECT extract(epoch FROM max(created_at)) FROM payments_transaction")
            last_wall = float(cur.fetchone()[0])
        elapsed = max(last_wall - t0_wall, 1e-6)
        run_samples = sampler.window(t0, t_seen)
    finally:
        sampler.stop()
        worker.stop()
    return {
        "elapsed": elapsed,
        "rate": args.payments / elapsed,
        "query_s": query_s,
        "enqueue_s": enqueue_s,
        "batches": len(batches_of(ids, SETTLE_BATCH)),
        "batch_size": SETTLE_BATCH,
        "idle_kib": idle_kib,
        "rss": harness.flatness(run_samples),
        "log": worker.log,
        "cpu_client": meter.used("worker"),
        "cpu_pg": meter.postgres,
        "busy": meter.machine_busy(),
        "other": meter.other(),
        "pyspy": logs / f"pyspy-c{concurrency}.txt" if spy is not None else None,
        "ids": ids,
        "load": load.result,
    }


def verify_ours(expected: int) -> list[str]:
    from django.db import connection

    problems = []
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*), count(DISTINCT payment_id) FROM payments_transaction "
            "WHERE transaction_type = 'deposit'"
        )
        deposits, distinct = cur.fetchone()
        if deposits != expected or distinct != expected:
            problems.append(f"{deposits} deposits for {distinct} payments; expected {expected}")
        cur.execute(
            "SELECT count(*) FROM payments_payment p WHERE NOT EXISTS (SELECT 1 FROM "
            "payments_transaction t WHERE t.payment_id = p.id AND t.transaction_type = 'deposit')"
        )
        if (missing := cur.fetchone()[0]) != 0:
            problems.append(f"{missing} completed payments without a deposit")
        cur.execute(
            "SELECT count(*) FROM payments_userbalance b LEFT JOIN (SELECT user_id, "
            "sum(amount_usd) AS total, count(*) AS n, max(sequence) AS last "
            "FROM payments_transaction GROUP BY user_id) t ON t.user_id = b.user_id "
            "WHERE b.balance_usd <> coalesce(t.total, 0) OR b.transaction_count <> coalesce(t.n, 0)"
            " OR b.transaction_count <> coalesce(t.last, 0) "
            "OR b.total_deposited <> coalesce(t.total, 0)"
        )
        if (bad := cur.fetchone()[0]) != 0:
            problems.append(f"{bad} balances differ from the sum of their postings")
        cur.execute(
            "SELECT count(*) FROM payments_transaction t JOIN payments_payment p "
            "ON p.id = t.payment_id WHERE t.amount_usd <> p.amount_usd"
        )
        if (wrong := cur.fetchone()[0]) != 0:
            problems.append(f"{wrong} deposits differ from their payment's amount")
    return problems


# --- plain SQL -----------------------------------------------------------------------------


def _batched_process(
    dsn: str, tables: dict[str, str], jobs: Any, go: Any, results: Any, release: Any
) -> None:
    import psycopg

    sql = {
        name: text.format(**tables)
        for name, text in (
            ("lock_payments", SQL_LOCK_PAYMENTS),
            ("credited", SQL_CREDITED),
            ("lock_balances", SQL_LOCK_BALANCES),
            ("write", SQL_WRITE),
        )
    }
    done = 0
    with psycopg.connect(dsn) as conn:
        conn.execute("SELECT 1")
        conn.commit()
        go.wait()
        while (batch := jobs.get()) is not None:
            with conn.transaction(), conn.cursor() as cur:
                ids = [uuid.UUID(p) for p in batch]
                cur.execute(sql["lock_payments"], (ids,))
                payments = cur.fetchall()
                cur.execute(sql["credited"], ([p[0] for p in payments],))
                credited = {row[0] for row in cur.fetchall()}
                fresh = [p for p in payments if p[0] not in credited]
                cur.execute(sql["lock_balances"], (sorted({p[1] for p in fresh}),))
                balances = {u: [b, n, d] for u, b, n, d in cur.fetchall()}
                cols: list[list[Any]] = [[] for _ in range(8)]
                for pid, user, _status, amount, internal, provider in sorted(
                    fresh, key=lambda p: p[1]
                ):
                    state = balances[user]
                    state[0] += amount
                    state[1] += 1
                    state[2] += amount
                    row = (
                        user,
                        amount,
                        state[0],
                        state[1],
                        pid,
                        f"Payment completed - {internal}",
                        provider or "",
                        f"payment:{pid}:deposit",
                    )
                    for col, value in zip(cols, row, strict=True):
                        col.append(value)
                users = sorted(balances)
                cur.execute(
                    sql["write"],
                    (
                        *cols,
                        users,
                        [balances[u][0] for u in users],
                        [balances[u][1] for u in users],
                        [balances[u][2] for u in users],
                    ),
                )
                done += len(fresh)
        results.put((done, time.monotonic(), conn.info.backend_pid))
        release.wait()  # the parent reads this process's and its backend's CPU time first


def collect(results: Any, procs: list[Any], timeout: float) -> list[Any]:
    """One result per process; raises at once when a process died without one."""
    import queue

    found: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(found) < len(procs):
        try:
            found.append(results.get(timeout=0.5))
        except queue.Empty:
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            if dead:
                raise RuntimeError(f"a baseline process exited with {dead[0].exitcode}") from None
            if time.monotonic() > deadline:
                raise
    return found


def run_batched(
    concurrency: int, args: argparse.Namespace, ids: list[str], batch_size: int, where: str
) -> dict[str, Any]:
    """The same batches as ours, in ``concurrency`` psycopg processes, on ``where``'s tables."""
    from django.db import connections

    connections.close_all()
    ctx = mp.get_context("spawn")
    jobs, results, go, release = ctx.Queue(), ctx.Queue(), ctx.Event(), ctx.Event()
    for batch in batches_of(ids, batch_size):
        jobs.put(batch)
    for _ in range(concurrency):
        jobs.put(None)
    dsn = harness.psycopg_dsn(args.db)
    procs = [
        ctx.Process(target=_batched_process, args=(dsn, TABLES[where], jobs, go, results, release))
        for _ in range(concurrency)
    ]
    for proc in procs:
        proc.start()
    time.sleep(1.0)
    clients = [proc.pid for proc in procs if proc.pid is not None]
    meter = harness.CpuMeter()
    meter.start({"clients": clients})
    with results_mod.LoadMeter() as load:
        t0 = time.monotonic()
        go.set()
        finished = collect(results, procs, args.timeout)
    meter.stop({"clients": clients})
    release.set()
    for proc in procs:
        proc.join(10)
    done = sum(n for n, _, _ in finished)
    elapsed = max(at for _, at, _ in finished) - t0
    if done != len(ids):
        raise RuntimeError(f"batched SQL on {where} tables settled {done} of {len(ids)}")
    return {
        "elapsed": elapsed,
        "rate": done / elapsed,
        "cpu_client": meter.used("clients"),
        "cpu_pg": meter.postgres,
        "busy": meter.machine_busy(),
        "other": meter.other(),
        "load": load.result,
    }


# --- profile -------------------------------------------------------------------------------


def profile_in_process(k: int) -> str:
    """Settle k payments in this process as the batch task does: statements and hot spots."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from payments.services import deposits as settlement
    from workers.tasks import SETTLE_BATCH

    def settle_all(ids: list[Any]) -> None:
        for start in range(0, len(ids), SETTLE_BATCH):
            settlement.payments_settle_many(payment_ids=ids[start : start + SETTLE_BATCH])

    out = io.StringIO()
    reset_ours()
    ids = settlement.unsettled_payment_ids(limit=k)
    with CaptureQueriesContext(connection) as ctx:
        started = time.perf_counter()
        settle_all(ids)
        wall = time.perf_counter() - started
    n, queries = len(ids), ctx.captured_queries
    sql_s = sum(float(q["time"]) for q in queries)
    out.write(
        f"in-process, one connection, batches of {SETTLE_BATCH}, query capture on: {n} payments "
        f"in {wall:.2f}s = {n / wall:.0f}/s; {len(queries)} statements "
        f"({len(queries) / n:.2f} per payment); {sql_s / wall * 100:.0f}% of the time waiting "
        "on PostgreSQL (including triggers), the rest in Python\n"
    )
    first = min(SETTLE_BATCH, n)
    out.write(f"statements of the first {first}-payment batch (time, SQL head):\n")
    for shown, q in enumerate(queries, 1):
        out.write(f"  {float(q['time']) * 1000:8.2f} ms  {' '.join(q['sql'].split())[:140]}\n")
        if q["sql"].startswith("RELEASE SAVEPOINT") or shown >= 40:
            break
    reset_ours()
    ids = settlement.unsettled_payment_ids(limit=k)
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    settle_all(ids)
    profiler.disable()
    wall = time.perf_counter() - started
    out.write(f"\ncProfile (no query capture): {len(ids)} payments in {wall:.2f}s\n")
    for key in ("cumulative", "tottime"):
        stats = io.StringIO()
        pstats.Stats(profiler, stream=stats).sort_stats(key).print_stats(18)
        text = stats.getvalue()
        out.write(text[text.index("   ncalls") :] if "   ncalls" in text else text)
    return out.getvalue()


# --- main ----------------------------------------------------------------------------------


def main() -> int:
    args = parse_args()
    print(harness.banner("settlement", sys.argv[1:]), flush=True)
    logs = harness.log_dir("settlement")
    db_url = harness.recreate_database(args.db)
    harness.flush_redis(args.redis_db)
    env = harness.product_env(db_url=db_url, redis_index=args.redis_db)
    migrate_s = harness.migrate(env, logs)
    harness.setup_django({**env, "LOG_LEVEL": "WARNING"})
    from workers.tasks import SETTLE_BATCH

    t = time.perf_counter()
    create_data(args)
    print(
        f"setup: migrate {migrate_s:.1f}s; {args.users} users, {args.payments} completed "
        f"payments in {time.perf_counter() - t:.1f}s; logs in {logs}",
        flush=True,
    )

    results: dict[int, dict[str, Any]] = {}
    for c in args.concurrency:
        reset_ours()
        harness.flush_redis(args.redis_db)
        ours = run_worker(c, env, logs, args)
        problems = verify_ours(args.payments)
        print(
            f"c={c}: ours {ours['rate']:.0f}/s ({ours['elapsed']:.1f}s, "
            f"{ours['batches']} tasks of {ours['batch_size']}); verify: "
            + ("OK" if not problems else "; ".join(problems)),
            flush=True,
        )
        reset_ours()
        on_ours = run_batched(c, args, ours["ids"], SETTLE_BATCH, "ours")
        problems += [f"batched SQL on our tables: {p}" for p in verify_ours(args.payments)]
        print(f"c={c}: batched SQL, our tables {on_ours['rate']:.0f}/s", flush=True)
        reset_plain()
        plain = run_batched(c, args, ours["ids"], SETTLE_BATCH, "plain")
        print(f"c={c}: batched SQL, plain tables {plain['rate']:.0f}/s", flush=True)
        results[c] = {"ours": ours, "plain": plain, "on_ours": on_ours, "problems": problems}

    print()
    rows = []
    out = results_mod.Results("settlement", args.quick)
    for c, r in results.items():
        ours, plain, on_ours = r["ours"], r["plain"], r["on_ours"]
        to_plain, to_ours = ours["rate"] / plain["rate"], ours["rate"] / on_ours["rate"]
        rows.append(
            [
                c,
                f"{ours['rate']:.0f}",
                f"{plain['rate']:.0f}",
                f"{to_plain:.2f}x",
                harness.verdict(to_plain >= TARGET_PLAIN),
                f"{on_ours['rate']:.0f}",
                f"{to_ours:.2f}x",
                harness.verdict(to_ours >= TARGET_OURS_TABLES),
                "OK" if not r["problems"] else "FAILED",
            ]
        )
        what = f"batch settlement ({SETTLE_BATCH}/transaction, worker -c {c})"
        out.add(
            results_mod.Row(
                row="1",
                figure=f"{what} vs batched SQL, plain tables",
                ours=f"{ours['rate']:,.0f}/s",
                baseline=f"{plain['rate']:,.0f}/s",
                ratio=f"{to_plain:.2f}x",
                target=f">= {TARGET_PLAIN}x",
                ok=to_plain >= TARGET_PLAIN and not r["problems"],
                load=f"{ours['load'].text()}; {plain['load'].text()}",
            )
        )
        out.add(
            results_mod.Row(
                row="1",
                figure=f"{what} vs the same SQL on our tables (triggers, FKs)",
                ours=f"{ours['rate']:,.0f}/s",
                baseline=f"{on_ours['rate']:,.0f}/s",
                ratio=f"{to_ours:.2f}x",
                target=f">= {TARGET_OURS_TABLES}x",
                ok=to_ours >= TARGET_OURS_TABLES and not r["problems"],
                load=f"{ours['load'].text()}; {on_ours['load'].text()}",
            )
        )
    print(
        harness.table(
            [
                "concurrency",
                "ours payments/s",
                "batched SQL, plain tables /s",
                "ours/plain",
                f">= {TARGET_PLAIN}x",
                "same SQL, our tables /s",
                "ours/that",
                f">= {TARGET_OURS_TABLES}x",
                "invariants",
            ],
            rows,
            title=f"Settlement of {args.payments} completed payments over {args.users} users, "
            f"batches of {SETTLE_BATCH} in one transaction on every side",
        )
    )
    print()
    rss_rows = []
    for c, r in results.items():
        rss = r["ours"]["rss"]
        rss_rows.append(
            [
                c,
                harness.mib(r["ours"]["idle_kib"]),
                harness.mib(rss["first"]),
                harness.mib(rss["min"]),
                harness.mib(rss["max"]),
                harness.mib(rss["last"]),
                "-" if rss["worst_dev"] is None else f"{rss['worst_dev'] * 100:+.1f}%",
                rss["n"],
                harness.verdict(rss["flat"]),
            ]
        )
    print(
        harness.table(
            [
                "concurrency",
                "idle",
                "first",
                "min",
                "max",
                "last",
                "worst vs first after warm-up",
                "samples",
                "flat ±10%",
            ],
            rss_rows,
            title="Worker RSS (main + pool children, every 0.5 s; warm-up = first 20% of the run)",
        )
    )
    print()
    cpu_rows = []
    for c, r in results.items():
        for label, run in (
            ("ours", r["ours"]),
            ("batched SQL, our tables", r["on_ours"]),
            ("batched SQL, plain tables", r["plain"]),
        ):
            cpu_rows.append(
                [
                    c,
                    label,
                    f"{run['cpu_client'] / args.payments * 1000:.3f}",
                    f"{run['cpu_pg'] / args.payments * 1000:.3f}",
                    f"{(run['cpu_client'] + run['cpu_pg']) / args.payments * 1000:.3f}",
                    f"{run['busy'] * 100:.0f}%",
                    f"{run['other'] / args.payments * 1000:.3f}",
                ]
            )
    print(
        harness.table(
            [
                "concurrency",
                "run",
                "client CPU ms/payment",
                "PostgreSQL CPU ms/payment",
                "total",
                "machine busy",
                "other processes CPU ms/payment",
            ],
            cpu_rows,
            title="Where the CPU goes (client = worker tree or plain processes; PostgreSQL = the "
            "whole server, so other work on the machine counts too)",
        )
    )
    for c, r in results.items():
        if r["ours"].get("pyspy"):
            print(f"\n== py-spy profile of the worker at c={c} ==")
            print(harness.collapsed_summary(r["ours"]["pyspy"]))
    first = next(iter(results.values()))["ours"]
    print(
        f"\nunsettled_payment_ids({args.payments}) took {first['query_s'] * 1000:.0f} ms; "
        f"enqueueing {first['batches']} tasks took {first['enqueue_s'] * 1000:.0f} ms. "
        "Note: the sweep task itself takes up to its default limit (50,000) per run."
    )
    if args.profile:
        print("\n== profile ==")
        print(profile_in_process(args.profile))
    out.print_section()
    out.write()
    failed = any(r["problems"] for r in results.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
