"""Scale-out: settlement and polling throughput with 1, 2 and 3 worker processes.

Each worker is its own ``celery -A project worker -c 1`` with a distinct ``-n`` name (as on
separate hosts), all on one Redis broker and one PostgreSQL.

* settlement: N completed payments (SQL copies of one template, as ``memory.py``), settled by
  ``workers.payments_settle_batch`` tasks of 200 (the sweep's query picks them);
* polling: P payments at an in-process sandbox, all paid (-> confirming) there, each refreshed by
  its own ``workers.payment_refresh`` task (one status call + apply each: the per-payment part
  of polling, the part more workers can share; the list poll is one task under a lease).

Throughput, and PostgreSQL's share of the machine (its CPU seconds / wall / cores) and the
machine's busy share: on 2 cores the curve flattens when the machine is saturated, which the
table says.

Run from the repository root: ``.venv/bin/python benchmarks/scaleout.py [--payments 3000]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import harness
import memory
import polling
import results as results_mod

DB_NAME = "bench_scaleout"
REDIS_INDEX = 15


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=20_000, help="settlements per run")
    parser.add_argument("--refreshes", type=int, default=2_000, help="refresh tasks per run")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--db", default=DB_NAME)
    parser.add_argument("--redis-db", type=int, default=REDIS_INDEX)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--quick", action="store_true")
    return parser.parse_args()


def start_workers(count: int, queue: str, env: dict[str, str], logs: Any) -> list[harness.Child]:
    from project.celery import app

    workers = []
    for k in range(1, count + 1):
        name = f"bench-{queue}-{k}"
        argv = [str(harness.BIN / "celery"), "-A", "project", "worker", "-Q", queue, "-c", "1"]
        argv += ["--prefetch-multiplier", "1", "-P", "prefork", "-n", f"{name}@%h"]
        argv += ["--loglevel", "WARNING"]
        workers.append(harness.Child(name, argv, env, logs / f"{name}-of-{count}.log"))
    names = {f"bench-{queue}-{k}@" for k in range(1, count + 1)}

    def ready() -> bool:
        for w in workers:
            if not w.alive():
                raise RuntimeError(f"worker exited early:\n{w.tail()}")
        replies = app.control.ping(timeout=0.5)
        answered = {next(iter(r)).split("@")[0] + "@" for r in replies}
        return names <= answered

    harness.wait_until(ready, timeout=120, interval=0.5, what=f"{count} workers to answer")
    time.sleep(1.0)
    return workers


def run(
    count: int,
    queue: str,
    env: dict[str, str],
    logs: Any,
    enqueue: Any,
    done: Any,
    total: int,
    timeout: float,
) -> dict[str, Any]:
    workers = start_workers(count, queue, env, logs)
    try:
        meter = harness.CpuMeter()
        meter.start({"workers": [p for w in workers for p in harness.process_tree(w.pid)]})
        with results_mod.LoadMeter() as load:
            t0 = time.monotonic()
            enqueue()
            harness.wait_until(lambda: done() >= total, timeout=timeout, what=f"{queue} work")
            elapsed = time.monotonic() - t0
        meter.stop({"workers": [p for w in workers for p in harness.process_tree(w.pid)]})
    finally:
        for w in workers:
            w.stop()
    cores = os.cpu_count() or 1
    return {
        "rate": total / elapsed,
        "elapsed": elapsed,
        "pg_share": meter.postgres / (meter.wall * cores),
        "worker_share": meter.used("workers") / (meter.wall * cores),
        "busy": meter.machine_busy(),
        "load": load.result,
    }


def settlement_runs(args: argparse.Namespace, env: dict[str, str], logs: Any) -> dict[int, Any]:
    import settlement
    from django.db import connection

    from payments.services import deposits
    from workers.tasks import SETTLE_BATCH, payments_settle_batch_task

    memory.create_data(1_000, args.payments)

    def deposits_count() -> int:
        with connection.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM payments_transaction WHERE transaction_type='deposit'"
            )
            return int(cur.fetchone()[0])

    out = {}
    for count in args.workers:
        settlement.reset_ours()
        harness.flush_redis(args.redis_db)

        def enqueue() -> None:
            ids = [str(p) for p in deposits.unsettled_payment_ids(limit=args.payments)]
            for start in range(0, len(ids), SETTLE_BATCH):
                payments_settle_batch_task.delay(payment_ids=ids[start : start + SETTLE_BATCH])

        out[count] = run(
            count, "settlement", env, logs, enqueue, deposits_count, args.payments, args.timeout
        )
        problems = settlement.verify_ours(args.payments)
        if problems:
            raise RuntimeError(f"settlement with {count} workers: {problems}")
        print(f"settlement, {count} worker(s): {out[count]['rate']:.0f}/s", flush=True)
    return out


def polling_runs(args: argparse.Namespace, sandbox: Any, env: dict[str, str], logs: Any) -> dict:
    from payments.models import Payment
    from workers.tasks import payment_refresh_task

    plan_args = argparse.Namespace(
        payments=args.refreshes, users=100, seed=13, paid_fraction=1.0, finished_fraction=0.0
    )
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cur:  # the settlement runs' rows go
        cur.execute("SET LOCAL payments.allow_truncate = on")
        cur.execute(
            "TRUNCATE payments_transaction, payments_userbalance, payments_payment, "
            "payments_settlementdue CASCADE"
        )
    polling.create_payments(plan_args, sandbox)
    ids = [str(pk) for pk in Payment.objects.values_list("pk", flat=True)]

    def confirming() -> int:
        return Payment.objects.filter(status="confirming").count()

    out = {}
    for count in args.workers:
        polling.reset_local("cold")
        harness.flush_redis(args.redis_db)

        def enqueue() -> None:
            for pk in ids:
                payment_refresh_task.delay(payment_id=pk)

        out[count] = run(count, "provider", env, logs, enqueue, confirming, len(ids), args.timeout)
        print(f"polling (refresh tasks), {count} worker(s): {out[count]['rate']:.0f}/s", flush=True)
    return out


def main() -> int:
    args = parse_args()
    print(harness.banner("scaleout", sys.argv[1:]), flush=True)
    from sandbox.server import SandboxServer

    logs = harness.log_dir("scaleout")
    db_url = harness.recreate_database(args.db)
    harness.flush_redis(args.redis_db)
    with SandboxServer(port=0, **{**harness.SANDBOX_CREDENTIALS, "ipn_secret": ""}) as sandbox:
        env = harness.product_env(
            db_url=db_url, redis_index=args.redis_db, **harness.sandbox_settings(sandbox.api_url)
        )
        migrate_s = harness.migrate(env, logs)
        harness.setup_django({**env, "LOG_LEVEL": "WARNING"})
        print(f"setup: migrate {migrate_s:.1f}s; logs in {logs}", flush=True)
        settle = settlement_runs(args, env, logs)
        poll = polling_runs(args, sandbox, env, logs)
    out = results_mod.Results("scaleout", args.quick)
    rows = []
    for label, runs, unit in (
        ("settlement (batches of 200)", settle, "payments/s"),
        ("polling (payment_refresh tasks)", poll, "payments/s"),
    ):
        one = runs[min(runs)]["rate"]
        for count, r in runs.items():
            speedup = r["rate"] / one
            saturated = r["busy"] >= 0.9
            rows.append(
                [
                    label,
                    count,
                    f"{r['rate']:.0f}",
                    f"{speedup:.2f}x",
                    f"{r['pg_share'] * 100:.0f}%",
                    f"{r['worker_share'] * 100:.0f}%",
                    f"{r['busy'] * 100:.0f}%",
                ]
            )
            limit = (
                f"machine saturated (PostgreSQL {r['pg_share'] * 100:.0f}% of all cores)"
                if saturated
                else f"PostgreSQL {r['pg_share'] * 100:.0f}% of all cores"
            )
            out.add(
                results_mod.Row(
                    row="6",
                    figure=f"scale-out: {label}, {count} worker process(es)",
                    ours=f"{r['rate']:,.0f} {unit}",
                    baseline=f"1 worker: {one:,.0f} {unit}",
                    ratio=f"{speedup:.2f}x",
                    target="report where it flattens",
                    ok=None,
                    load=r["load"].text(),
                    note=limit,
                )
            )
            out.rows[-1].target = f"(curve) {limit}"
    print()
    print(
        harness.table(
            ["work", "workers", "per second", "vs 1", "PostgreSQL CPU", "workers CPU", "busy"],
            rows,
            title=f"Scale-out on {os.cpu_count()} cores (CPU as a share of all cores)",
        )
    )
    out.print_section()
    out.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
