"""One payment per transaction: ``payment_settle`` and a ``finished`` report applied, vs pgbench.

Setup: a fresh database with users (each with an empty balance row), one currency and
payments: ``completed`` without a deposit (for ``payment_settle``) or ``confirming`` (for the
report). For 1 and 2 processes (spawned, each with Django set up as in a worker):

* ``payment_settle``: each process calls ``payments.services.deposits.payment_settle`` for its
  share of the payments, one transaction each (the call is ``@transaction.atomic``);
* report applied and settled: each process calls ``payment_apply_report`` (the entry point the
  IPN and the poll use) with a NowPayments ``finished`` report parsed by
  ``ProviderPayment.from_dict``: it moves the payment to completed and posts its deposit;
* baseline: ``pgbench`` with the same number of clients and transactions, one commit each, on
  plain copies of the tables (same columns, CHECKs and indexes, no triggers, no FKs): lock the
  payment, lock the balance, insert one ledger row, update the balance, and (report variant
  only, as only the report path writes the payment) update the payment.

Run from the repository root: ``.venv/bin/python benchmarks/single.py [--payments 400]``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import random
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import harness
import results as results_mod
import settlement

DB_NAME = "bench_single"
REDIS_INDEX = 15
TARGET = 0.5

PLAIN = {
    "bench_plain_payment": "payments_payment",
    "bench_plain_userbalance": "payments_userbalance",
    "bench_plain_transaction": "payments_transaction",
}
# pgbench: \gset keeps the values; the payment number comes from a sequence (one more trivial
# statement per transaction than the product's work: it favours ours slightly).
PGBENCH = """\
BEGIN;
SELECT nextval('bench_pgb_seq') AS n \\gset
SELECT id AS pid, user_id AS uid, amount_usd AS amt, internal_payment_id AS oid
  FROM bench_plain_payment WHERE n = :n FOR UPDATE \\gset
SELECT balance_usd AS bal, transaction_count AS cnt FROM bench_plain_userbalance
  WHERE user_id = :uid FOR UPDATE \\gset
INSERT INTO bench_plain_transaction (user_id, transaction_type, amount_usd, balance_after,
  sequence, payment_id, withdrawal_request_id, description, metadata, idempotency_key, created_at)
  VALUES (:uid, 'deposit', :amt, :bal::numeric + :amt::numeric, :cnt::bigint + 1, :pid, NULL,
  'Payment completed - ' || :oid::text, '{"provider_payment_id": "x"}',
  'payment:' || :pid::text || ':' || 'deposit', now());
UPDATE bench_plain_userbalance SET balance_usd = balance_usd + :amt::numeric,
  transaction_count = transaction_count + 1, total_deposited = total_deposited + :amt::numeric,
  last_transaction_at = now(), updated_at = now() WHERE user_id = :uid;
"""
PGBENCH_PAYMENT_UPDATE = """\
UPDATE bench_plain_payment SET status = 'completed', completed_at = now(),
  status_changed_at = now(), credited_usd = :amt::numeric, provider_checked_at = now(),
  provider_data = '{"payment_status": "finished"}', updated_at = now() WHERE id = :pid;
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=3000, help="per run")
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--db", default=DB_NAME)
    parser.add_argument("--redis-db", type=int, default=REDIS_INDEX)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    return parser.parse_args()


# --- data ----------------------------------------------------------------------------------


def create_data(args: argparse.Namespace) -> None:
    from django.contrib.auth import get_user_model

    from payments.models import Currency

    user_model = get_user_model()
    user_model.objects.bulk_create(
        [user_model(username=f"one{i:05d}", password="!") for i in range(args.users)],  # noqa: S106
        batch_size=2000,
    )
    Currency.objects.create(
        code="USDTTRC20",
        name="Tether USD (TRC20)",
        token="USDT",  # noqa: S106 - a ticker
        network="TRC20",
        decimal_places=6,
    )


def reset(args: argparse.Namespace, status: str, count: int) -> list[tuple[str, str, Decimal]]:
    """No payments, postings or balances but ``count`` fresh payments in ``status``; returns
    (payment id, provider id, amount) of each. Payments go in through the ORM's bulk insert."""
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction
    from django.utils import timezone

    from payments.models import Currency, Payment

    rng = random.Random(args.seed + count)
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SET LOCAL payments.allow_truncate = on")
        cur.execute(
            "TRUNCATE payments_transaction, payments_userbalance, payments_payment, "
            "payments_providerevent, payments_settlementdue CASCADE"
        )
        cur.execute(
            "INSERT INTO payments_userbalance (user_id, balance_usd, total_deposited, "
            "total_withdrawn, transaction_count, created_at, updated_at) "
            "SELECT id, 0, 0, 0, 0, now(), now() FROM auth_user"
        )
    users = list(get_user_model().objects.values_list("pk", flat=True))
    currency = Currency.objects.get()
    now = timezone.now()
    rows = []
    for i in range(count):
        amount = Decimal(rng.randrange(1_000, 50_000)) / 100
        rows.append(
            Payment(
                id=uuid.uuid4(),
                user_id=rng.choice(users),
                internal_payment_id=f"PAY_ONE_{i:08d}",
                amount_usd=amount,
                currency=currency,
                pay_amount=amount,
                pay_address=f"T{i:033d}",
                provider_payment_id=str(6_000_000_000 + i),
                status=status,
                completed_at=now if status == "completed" else None,
                credited_usd=amount if status == "completed" else None,
                actual_amount=amount if status == "completed" else None,
                status_changed_at=now,
                provider_data={"payment_status": "confirming"},
            )
        )
    Payment.objects.bulk_create(rows, batch_size=2000)
    with connection.cursor() as cur:
        for name in ("payments_payment", "payments_transaction", "payments_userbalance"):
            cur.execute(f"VACUUM ANALYZE {name}")
    return [(str(p.id), p.provider_payment_id or "", p.amount_usd) for p in rows]


def finished_body(provider_id: str, order_id: str, amount: Decimal) -> dict[str, Any]:
    """A NowPayments ``finished`` IPN/status body for one of the benchmark's payments."""
    return {
        "payment_id": int(provider_id),
        "payment_status": "finished",
        "pay_address": "T" + provider_id.rjust(33, "0"),
        "price_amount": float(amount),
        "price_currency": "usd",
        "pay_amount": float(amount),
        "actually_paid": float(amount),
        "actually_paid_at_fiat": float(amount),
        "pay_currency": "usdttrc20",
        "order_id": order_id,
        "order_description": None,
        "purchase_id": str(provider_id),
        "outcome_amount": float(amount),
        "outcome_currency": "usdttrc20",
        "payin_hash": f"hash{provider_id}",
    }


# --- ours: N processes ----------------------------------------------------------------------


def _ours_process(env: dict[str, str], mode: str, work: list[Any], go: Any, out: Any) -> None:
    harness.setup_django({**env, "LOG_LEVEL": "WARNING"})
    from django.db import connection

    from payments.services.deposits import payment_apply_report, payment_settle
    from payments.services.providers.nowpayments.types import ProviderPayment

    connection.ensure_connection()
    if mode == "report":
        reports = [ProviderPayment.from_dict(body) for body in work]
    go.wait()
    started = time.monotonic()
    done = 0
    if mode == "settle":
        for payment_id in work:
            done += payment_settle(payment_id=uuid.UUID(payment_id)) is not None
    else:
        for report in reports:
            result = payment_apply_report(report=report, source="ipn")
            done += result.deposit is not None
    out.put((done, started, time.monotonic()))


def run_ours(env: dict[str, str], mode: str, work: list[Any], processes: int) -> dict[str, Any]:
    from django.db import connections

    connections.close_all()
    ctx = mp.get_context("spawn")
    go, out = ctx.Event(), ctx.Queue()
    shares = [work[i::processes] for i in range(processes)]
    procs = [ctx.Process(target=_ours_process, args=(env, mode, s, go, out)) for s in shares]
    for proc in procs:
        proc.start()
    time.sleep(4.0 if processes > 1 else 3.0)  # Django imports in each child
    with results_mod.LoadMeter() as load:
        t0 = time.monotonic()
        go.set()
        finished = settlement.collect(out, procs, 600)
    for proc in procs:
        proc.join(10)
    done = sum(n for n, _, _ in finished)
    elapsed = max(end for _, _, end in finished) - t0
    if done != len(work):
        raise RuntimeError(f"{mode}: {done} of {len(work)} payments got their deposit")
    return {"rate": done / elapsed, "elapsed": elapsed, "load": load.result}


def verify(expected: int) -> list[str]:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*), count(DISTINCT payment_id) FROM payments_transaction "
            "WHERE transaction_type = 'deposit'"
        )
        deposits, distinct = cur.fetchone()
        cur.execute(
            "SELECT count(*) FROM payments_userbalance b LEFT JOIN (SELECT user_id, "
            "sum(amount_usd) AS total, count(*) AS n FROM payments_transaction GROUP BY user_id)"
            " t ON t.user_id = b.user_id WHERE b.balance_usd <> coalesce(t.total, 0) "
            "OR b.transaction_count <> coalesce(t.n, 0)"
        )
        bad = cur.fetchone()[0]
    problems = []
    if deposits != expected or distinct != expected:
        problems.append(f"{deposits} deposits for {distinct} payments, expected {expected}")
    if bad:
        problems.append(f"{bad} balances differ from their postings")
    return problems


# --- pgbench --------------------------------------------------------------------------------


def reset_plain() -> None:
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cur:
        for plain, source in PLAIN.items():
            cur.execute(f"DROP TABLE IF EXISTS {plain}")
            cur.execute(f"CREATE TABLE {plain} (LIKE {source} INCLUDING ALL)")
        cur.execute("ALTER TABLE bench_plain_payment ADD COLUMN n bigint")
        cur.execute(
            "INSERT INTO bench_plain_payment SELECT *, row_number() OVER (ORDER BY id) "
            "FROM payments_payment"
        )
        cur.execute("CREATE UNIQUE INDEX ON bench_plain_payment (n)")
        cur.execute(
            "INSERT INTO bench_plain_userbalance (user_id, balance_usd, total_deposited, "
            "total_withdrawn, transaction_count, created_at, updated_at) "
            "SELECT id, 0, 0, 0, 0, now(), now() FROM auth_user"
        )
        cur.execute("DROP SEQUENCE IF EXISTS bench_pgb_seq")
        cur.execute("CREATE SEQUENCE bench_pgb_seq")
    with connection.cursor() as cur:
        for plain in PLAIN:
            cur.execute(f"VACUUM ANALYZE {plain}")


def run_pgbench(
    args: argparse.Namespace, clients: int, count: int, logs: Path, *, update_payment: bool
) -> dict[str, Any]:
    from django.db import connection

    reset_plain()
    script = logs / f"pgbench-{'report' if update_payment else 'settle'}.sql"
    script.write_text(PGBENCH + (PGBENCH_PAYMENT_UPDATE if update_payment else "") + "COMMIT;\n")
    per_client = count // clients
    argv = ["pgbench", "-n", "-M", "prepared", "-c", str(clients), "-j", str(clients)]
    argv += ["-t", str(per_client), "-f", str(script), "-h", harness.PG_HOST]
    argv += ["-p", str(harness.PG_PORT), "-U", harness.PG_USER, args.db]
    with results_mod.LoadMeter() as load:
        started = time.monotonic()
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        elapsed = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(f"pgbench failed: {proc.stderr[-800:]}")
    tps = next(
        float(line.split("=")[1].split()[0])
        for line in proc.stdout.splitlines()
        if line.startswith("tps =")
    )
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM bench_plain_transaction")
        written = cur.fetchone()[0]
    if written != per_client * clients:
        raise RuntimeError(f"pgbench wrote {written} postings, expected {per_client * clients}")
    return {"rate": tps, "elapsed": elapsed, "load": load.result}


# --- main ----------------------------------------------------------------------------------


def main() -> int:
    args = parse_args()
    print(harness.banner("single", sys.argv[1:]), flush=True)
    logs = harness.log_dir("single")
    db_url = harness.recreate_database(args.db)
    harness.flush_redis(args.redis_db)
    env = harness.product_env(db_url=db_url, redis_index=args.redis_db)
    migrate_s = harness.migrate(env, logs)
    harness.setup_django({**env, "LOG_LEVEL": "WARNING"})
    create_data(args)
    print(f"setup: migrate {migrate_s:.1f}s; logs in {logs}", flush=True)
    out = results_mod.Results("single", args.quick)
    problems: list[str] = []
    table_rows = []
    for mode, label, status in (
        ("settle", "payment_settle, one transaction each", "completed"),
        ("report", "a finished report applied and settled (payment_apply_report)", "confirming"),
    ):
        for n in args.processes:
            count = args.payments * n
            made = reset(args, status, count)
            if mode == "settle":
                work: list[Any] = [pid for pid, _, _ in made]
            else:
                orders = {pid: f"PAY_ONE_{i:08d}" for i, (pid, _, _) in enumerate(made)}
                work = [finished_body(prov, orders[pid], amt) for pid, prov, amt in made]
            ours = run_ours(env, mode, work, n)
            found = verify(count)
            problems += [f"{mode} x{n}: {p}" for p in found]
            base = run_pgbench(args, n, count, logs, update_payment=mode == "report")
            r = ours["rate"] / base["rate"]
            print(
                f"{mode} x{n}: ours {ours['rate']:.0f}/s, pgbench {base['rate']:.0f}/s "
                f"({r:.2f}x); verify: {'OK' if not found else '; '.join(found)}",
                flush=True,
            )
            table_rows.append([label, n, f"{ours['rate']:.0f}", f"{base['rate']:.0f}", f"{r:.2f}x"])
            what = "payment rows updated too" if mode == "report" else "payment row only locked"
            out.add(
                results_mod.Row(
                    row="2",
                    figure=f"{label}, {n} process{'es' if n > 1 else ''}",
                    ours=f"{ours['rate']:,.0f}/s",
                    baseline=f"pgbench per-commit plain SQL, {n} client(s): "
                    f"{base['rate']:,.0f}/s ({what})",
                    ratio=f"{r:.2f}x",
                    target=f">= {TARGET}x",
                    ok=r >= TARGET and not found,
                    load=f"{ours['load'].text()}; {base['load'].text()}",
                )
            )
    print()
    print(
        harness.table(
            ["path", "processes", "ours /s", "pgbench /s", "ratio"],
            table_rows,
            title=f"One payment per transaction, {args.payments} payments per process",
        )
    )
    out.print_section()
    out.write()
    if problems:
        print("PROBLEMS: " + "; ".join(problems))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
