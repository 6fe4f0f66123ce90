"""Time to credit through polling: a payment finished at the sandbox -> its deposit posting.

Setup: an in-process sandbox that sends no IPNs; P payments created there and stored locally
(``polling.create_payments``); the schedules installed (``manage.py install_schedules`` with
``WORKERS_SCHEDULE_SECONDS`` setting the poll's interval) and the real processes started: one
worker on the provider and settlement queues, and beat with django-celery-beat's scheduler.
Then the payments are finished at the sandbox one by one at random moments, and each one's
time to credit is its deposit posting's ``created_at`` minus the moment it finished. The wait
is bounded below by the poll interval (half of it on average): the baseline column says so.

Run from the repository root: ``.venv/bin/python benchmarks/poll_credit.py [--payments 6]``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
from typing import Any

import harness
import polling
import results as results_mod

DB_NAME = "bench_poll_credit"
REDIS_INDEX = 11


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=20)
    parser.add_argument("--interval", type=int, default=2, help="poll interval, seconds")
    parser.add_argument("--db", default=DB_NAME)
    parser.add_argument("--redis-db", type=int, default=REDIS_INDEX)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--quick", action="store_true")
    return parser.parse_args()


def start(name: str, argv: list[str], env: dict[str, str], logs: Any) -> harness.Child:
    return harness.Child(name, [str(harness.BIN / "celery"), "-A", "project", *argv], env,
                         logs / f"{name}.log")  # fmt: skip


def main() -> int:
    args = parse_args()
    print(harness.banner("poll_credit", sys.argv[1:]), flush=True)
    from sandbox import payment_flow
    from sandbox.server import SandboxServer

    logs = harness.log_dir("poll_credit")
    db_url = harness.recreate_database(args.db)
    harness.flush_redis(args.redis_db)
    rng = random.Random(args.seed)
    with SandboxServer(port=0, **{**harness.SANDBOX_CREDENTIALS, "ipn_secret": ""}) as sandbox:
        env = harness.product_env(
            db_url=db_url,
            redis_index=args.redis_db,
            WORKERS_SCHEDULE_SECONDS=json.dumps({"workers.payments_poll": args.interval}),
            **harness.sandbox_settings(sandbox.api_url),
        )
        migrate_s = harness.migrate(env, logs)
        subprocess.run(
            [sys.executable, str(harness.REPO / "manage.py"), "install_schedules"],
            cwd=harness.REPO,
            env=env,
            check=True,
            capture_output=True,
        )
        harness.setup_django({**env, "LOG_LEVEL": "WARNING"})
        plan_args = argparse.Namespace(
            payments=args.payments, users=20, seed=args.seed, paid_fraction=0, finished_fraction=0
        )
        plan, _ = polling.create_payments(plan_args, sandbox)
        print(f"setup: migrate {migrate_s:.1f}s; {len(plan)} payments; logs in {logs}", flush=True)
        worker = start(
            "worker",
            ["worker", "-Q", "provider,settlement", "-c", "2", "-n", "bench-pollcredit@%h"],
            env,
            logs,
        )
        beat = start(
            "beat",
            ["beat", "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler"],
            {**env},
            logs,
        )
        finished_at: dict[str, float] = {}
        try:
            time.sleep(8.0)  # both up, a first poll done
            with results_mod.LoadMeter() as load:
                for pid in plan:
                    time.sleep(rng.uniform(0.2, 1.2) * args.interval)
                    with sandbox.state.lock:
                        payment_flow.complete(sandbox.state, sandbox.state.payment(int(pid)))
                    finished_at[pid] = time.time()
                credited = harness.wait_until(
                    lambda: (
                        (found := deposit_times(set(plan))) and len(found) == len(plan) and found
                    ),
                    timeout=120,
                    interval=0.2,
                    what="every deposit",
                )
        finally:
            beat.stop()
            worker.stop()
    waits = sorted((credited[pid] - finished_at[pid]) * 1000 for pid in plan)
    p50 = statistics.median(waits)
    p99 = waits[min(len(waits) - 1, int(len(waits) * 0.99))]
    print(
        f"time to credit through polling (interval {args.interval}s): p50 {p50:.0f} ms, p99 "
        f"{p99:.0f} ms, max {waits[-1]:.0f} ms over {len(waits)} payments"
    )
    out = results_mod.Results("poll_credit", args.quick)
    out.add(
        results_mod.Row(
            row="4",
            figure=f"time to credit through polling (finished at the sandbox -> deposit "
            f"created_at), worker + beat, poll every {args.interval} s, {len(waits)} payments",
            ours=f"p99 {p99:.0f} ms (p50 {p50:.0f})",
            baseline=f"poll interval {args.interval * 1000} ms (mean wait alone: half of it)",
            ratio=f"{p50 / (args.interval * 500):.2f}x of half the interval",
            target="-",
            ok=None,
            load=load.result.text(),
        )
    )
    out.print_section()
    out.write()
    return 0


def deposit_times(provider_ids: set[str]) -> dict[str, float]:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            "SELECT p.provider_payment_id, extract(epoch FROM t.created_at) FROM "
            "payments_transaction t JOIN payments_payment p ON p.id = t.payment_id "
            "WHERE t.transaction_type = 'deposit' AND p.provider_payment_id = ANY(%s)",
            [list(provider_ids)],
        )
        return {pid: float(at) for pid, at in cur.fetchall()}


if __name__ == "__main__":
    sys.exit(main())
