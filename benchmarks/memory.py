"""Worker memory over many settlements: RSS of a real Celery worker (main + pool children).

Lean setup: users with empty balances, one currency and N ``completed`` payments written in SQL
from one template row made through the ORM (so 300,000 take seconds). Then the settlement
benchmark's worker run (``settlement.run_worker``: the sweep's query and
``workers.payments_settle_batch`` tasks of 200, ``-c 2``), its RSS sampled every 0.5 s.
Flat means every sample after the first 20% of the run is within ±10% of the first such one.

Run from the repository root: ``.venv/bin/python benchmarks/memory.py [--payments 30000]``.
"""

from __future__ import annotations

import argparse
import sys
import time

import harness
import results as results_mod
import settlement

DB_NAME = "bench_memory"
REDIS_INDEX = 15


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=300_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--db", default=DB_NAME)
    parser.add_argument("--redis-db", type=int, default=REDIS_INDEX)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--quick", action="store_true")
    return parser.parse_args()


def create_data(users: int, payments: int) -> None:
    """Users, balances, a currency and ``payments`` completed payments copied from a template."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.utils import timezone

    from payments.models import Currency, Payment

    user_model = get_user_model()
    user_model.objects.bulk_create(
        [user_model(username=f"mem{i:06d}", password="!") for i in range(users)],  # noqa: S106
        batch_size=5000,
    )
    currency, _ = Currency.objects.get_or_create(
        code="USDTTRC20",
        defaults={
            "name": "Tether USD (TRC20)",
            "token": "USDT",
            "network": "TRC20",
        },
    )
    first = user_model.objects.order_by("pk").values_list("pk", flat=True)[0]
    now = timezone.now()
    template = Payment.objects.create(
        user_id=first,
        internal_payment_id="PAY_TEMPLATE",
        amount_usd="10.00",
        currency=currency,
        pay_amount="10.00",
        actual_amount="10.00",
        actual_amount_usd="10.00",
        provider_payment_id="7000000000",
        status="completed",
        completed_at=now,
        status_changed_at=now,
        provider_data={"payment_status": "finished"},
    )
    with connection.cursor() as cur:
        copy_payments(cur, template.pk, payments, first, users)
        cur.execute(
            "INSERT INTO payments_userbalance (user_id, balance_usd, total_deposited, "
            "total_withdrawn, transaction_count, created_at, updated_at) "
            "SELECT id, 0, 0, 0, 0, now(), now() FROM auth_user ON CONFLICT DO NOTHING"
        )
        cur.execute("VACUUM ANALYZE payments_payment")


def copy_payments(cur: object, template: object, count: int, first_user: int, users: int) -> None:
    """``count`` copies of the template payment (new id, numbers, user, amount, time) in SQL;
    the template itself becomes the first of them."""
    cur.execute(  # type: ignore[attr-defined]
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_name = 'payments_payment' ORDER BY ordinal_position"
    )
    columns = [row[0] for row in cur.fetchall()]  # type: ignore[attr-defined]
    override = {
        "id": "gen_random_uuid()",
        "internal_payment_id": "'PAY_MEM_' || lpad(g::text, 9, '0')",
        "provider_payment_id": "(7000000001 + g)::text",
        "user_id": f"{first_user} + (g::bigint * 7919) %% {users}",
        "amount_usd": "(1000 + (g * 37) %% 49000) / 100.0",
        "pay_amount": "(1000 + (g * 37) %% 49000) / 100.0",
        "actual_amount": "(1000 + (g * 37) %% 49000) / 100.0",
        "actual_amount_usd": "(1000 + (g * 37) %% 49000) / 100.0",
        "completed_at": "t.completed_at + g * interval '1 millisecond'",
        "created_at": "t.created_at + g * interval '1 millisecond'",
    }
    select = ", ".join(override.get(c, f"t.{c}") for c in columns)
    cur.execute(  # type: ignore[attr-defined]
        f"INSERT INTO payments_payment ({', '.join(columns)}) SELECT {select} "
        f"FROM payments_payment t, generate_series(1, {count - 1}) g WHERE t.id = %s",
        [template],
    )


def main() -> int:
    args = parse_args()
    print(harness.banner("memory", sys.argv[1:]), flush=True)
    logs = harness.log_dir("memory")
    db_url = harness.recreate_database(args.db)
    harness.flush_redis(args.redis_db)
    env = harness.product_env(db_url=db_url, redis_index=args.redis_db)
    migrate_s = harness.migrate(env, logs)
    harness.setup_django({**env, "LOG_LEVEL": "WARNING"})
    t = time.perf_counter()
    create_data(args.users, args.payments)
    print(
        f"setup: migrate {migrate_s:.1f}s; {args.payments} completed payments in "
        f"{time.perf_counter() - t:.1f}s; logs in {logs}",
        flush=True,
    )
    run_args = argparse.Namespace(
        payments=args.payments,
        redis_db=args.redis_db,
        timeout=args.timeout,
        group_by_user=False,
        pyspy=False,
    )
    ours = settlement.run_worker(args.concurrency, env, logs, run_args)
    problems = settlement.verify_ours(args.payments)
    rss = ours["rss"]
    print(
        harness.table(
            ["settlements", "rate", "idle", "first", "min", "max", "last", "worst", "flat"],
            [
                [
                    args.payments,
                    f"{ours['rate']:.0f}/s",
                    harness.mib(ours["idle_kib"]),
                    harness.mib(rss["first"]),
                    harness.mib(rss["min"]),
                    harness.mib(rss["max"]),
                    harness.mib(rss["last"]),
                    "-" if rss["worst_dev"] is None else f"{rss['worst_dev'] * 100:+.1f}%",
                    harness.verdict(rss["flat"]),
                ]
            ],
            title=f"Worker RSS (-c {args.concurrency}, main + children, every 0.5 s)",
        )
    )
    print("verify: " + ("OK" if not problems else "; ".join(problems)))
    out = results_mod.Results("memory", args.quick)
    change = (rss["last"] - rss["first"]) / rss["first"] if rss["first"] else float("nan")
    out.add(
        results_mod.Row(
            row="8",
            figure=f"worker RSS over {args.payments:,} batch settlements (-c {args.concurrency}, "
            "main + children): last",
            ours=f"{harness.mib(rss['last'])} ({change * 100:+.1f}% of first; worst after "
            f"warm-up {rss['worst_dev'] * 100:+.1f}%)",
            baseline=f"first sample {harness.mib(rss['first'])}",
            ratio=f"{rss['last'] / rss['first']:.3f}x" if rss["first"] else "-",
            target="flat, within ±10%",
            ok=bool(rss["flat"]) and not problems,
            load=ours["load"].text(),
        )
    )
    out.details = {"rate": ours["rate"], "samples": rss["n"]}
    out.print_section()
    out.write()
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
