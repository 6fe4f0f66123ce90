"""One poll cycle over many active payments vs asking NowPayments about each payment on its own.

Setup: an in-process sandbox (``SandboxServer(port=0)``) with the same API key, login and TOTP
secret as Django's settings; N payments created there (``POST /v1/payment``) and stored locally
as ``pending`` with their ``provider_payment_id``; then a fraction paid (-> confirming) and a
fraction completed (-> finished) in the sandbox, so the poll has work to apply.

* ours: ``payments.services.deposits.payments_poll()`` (list endpoint, 500 per page, JWT).
* baseline: for each active payment ``provider.get_payment_status(id)`` then
  ``payment_apply_report(report=..., source="status")``, on an identical reset local state.
  With ``--baseline-sample S`` < N it times a random sample of S payments and extrapolates
  linearly (said in the output).

Provider requests are counted by the sandbox (``GET /_sandbox/requests``, reset before each).
Run from the repository root: ``.venv/bin/python benchmarks/polling.py [--payments 2000]``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import harness
import results as results_mod

DB_NAME = "bench_polling"
REDIS_INDEX = 11  # the test suite uses 7-9 and 13
API_KEY = harness.SANDBOX_CREDENTIALS["api_key"]
IPN_SECRET = harness.SANDBOX_CREDENTIALS["ipn_secret"]
MAX_REQUESTS = 25
MIN_SPEEDUP = 20.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--paid-fraction", type=float, default=0.10, help="-> confirming")
    parser.add_argument("--finished-fraction", type=float, default=0.05, help="-> finished")
    parser.add_argument(
        "--baseline-sample",
        type=int,
        default=0,
        help="time only this many per-payment calls and extrapolate (0 = all)",
    )
    parser.add_argument("--db", default=DB_NAME)
    parser.add_argument("--redis-db", type=int, default=REDIS_INDEX)
    parser.add_argument(
        "--states",
        nargs="+",
        choices=["cold", "warm"],
        default=["cold", "warm"],
        help="local starting states to measure (see the docstring of create_payments)",
    )
    parser.add_argument("--profile", action="store_true", help="also cProfile the poll cycles")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--quick", action="store_true")
    return parser.parse_args()


# --- setup ---------------------------------------------------------------------------------


def create_payments(args: argparse.Namespace, sandbox: Any) -> tuple[dict[str, str], Any]:
    """Create the payments at the sandbox and locally, snapshot the local rows, advance some.

    Two snapshots: ``cold`` (rows as ``payment_create`` leaves them, never polled) and
    ``warm`` (after one poll cycle in which nothing had changed at the sandbox). Returns
    provider id -> what the sandbox did with it, and the prior cycle's result.
    """
    from django.contrib.auth import get_user_model
    from django.db import connection

    from payments.models import Currency, Payment
    from payments.services import deposits as polling
    from payments.services.providers.nowpayments.gateway import get_provider

    rng = random.Random(args.seed)
    user_model = get_user_model()
    users = user_model.objects.bulk_create(
        [user_model(username=f"poll{i:05d}", password="!") for i in range(args.users)]  # noqa: S106
    )
    currency, _ = Currency.objects.get_or_create(
        code="USDTTRC20",
        defaults={
            "name": "Tether USD (TRC20)",
            "token": "USDT",
            "network": "TRC20",
            "decimal_places": 6,
        },
    )
    amounts = [Decimal(rng.randrange(2_000, 50_000)) / 100 for _ in range(args.payments)]

    def create(i: int) -> Any:
        return get_provider().create_payment(
            price_amount=amounts[i],
            price_currency="usd",
            pay_currency="usdttrc20",
            order_id=f"PAY_POLL_{i:08d}",
            order_description=f"bench deposit {i}",
        )

    with ThreadPoolExecutor(4) as pool:
        reports = list(pool.map(create, range(args.payments)))
    Payment.objects.bulk_create(
        [
            Payment(
                user_id=rng.choice(users).pk,
                internal_payment_id=report.order_id,
                amount_usd=amounts[i],
                currency=currency,
                description=f"bench deposit {i}",
                pay_amount=report.pay_amount,
                pay_address=report.pay_address or "",
                provider_payment_id=report.payment_id,
                expires_at=report.valid_until or report.expiration_estimate_date,
                provider_data=dict(report.raw),
            )
            for i, report in enumerate(reports)
        ],
        batch_size=2000,
    )

    with connection.cursor() as cur:
        cur.execute("CREATE TABLE bench_seed_cold AS TABLE payments_payment")
    # A cycle with nothing new at the sandbox: afterwards the rows look as they do in steady
    # state (each payment seen by one poll before).
    fresh_provider()
    prior = polling.payments_poll()
    with connection.cursor() as cur:
        cur.execute("CREATE TABLE bench_seed_warm AS TABLE payments_payment")

    ids = [r.payment_id for r in reports]
    rng.shuffle(ids)
    n_paid = int(len(ids) * args.paid_fraction)
    n_done = int(len(ids) * args.finished_fraction)
    plan = dict.fromkeys(ids, "waiting")
    plan.update(dict.fromkeys(ids[:n_paid], "confirming"))
    plan.update(dict.fromkeys(ids[n_paid : n_paid + n_done], "finished"))

    def advance(pid: str) -> None:
        client = sandbox.state  # in-process: hold the lock, as the control API does
        from sandbox import payment_flow

        with client.lock:
            record = client.payment(int(pid))
            if plan[pid] == "confirming":
                payment_flow.pay(client, record, None, None)
            else:
                payment_flow.complete(client, record)

    for pid in ids[: n_paid + n_done]:
        advance(pid)
    sandbox.control.payments()  # serialise every status body once (the sandbox caches it)
    return plan, prior.as_dict()


def reset_local(seed: str) -> None:
    """Back to snapshot ``seed`` (cold or warm): those payment rows, no postings, no balances."""
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SET LOCAL payments.allow_truncate = on")
        cur.execute(
            "TRUNCATE payments_transaction, payments_userbalance, payments_payment, "
            "payments_settlementdue CASCADE"
        )
        cur.execute(f"INSERT INTO payments_payment SELECT * FROM bench_seed_{seed}")
    with connection.cursor() as cur:
        for name in ("payments_payment", "payments_transaction", "payments_userbalance"):
            cur.execute(f"VACUUM ANALYZE {name}")


def fresh_provider() -> None:
    """Forget this thread's client (HTTP session and JWT), so each run starts cold."""
    from payments.services.providers.nowpayments import gateway

    cached = getattr(gateway._local, "provider", None)
    if cached is not None:
        cached.close()
        del gateway._local.provider


def check_local(plan: dict[str, str], subset: set[str] | None = None) -> list[str]:
    """Every payment in ``subset`` (all by default) has the status its sandbox twin implies."""
    from payments.models import Payment, Transaction

    want = {"waiting": "pending", "confirming": "confirming", "finished": "completed"}
    rows = dict(Payment.objects.values_list("provider_payment_id", "status"))
    problems = []
    wrong = [
        pid
        for pid, did in plan.items()
        if (subset is None or pid in subset) and rows[pid] != want[did]
    ]
    if wrong:
        problems.append(f"{len(wrong)} payments not in the expected status (e.g. {wrong[0]})")
    completed = sum(1 for s in rows.values() if s == "completed")
    deposits = Transaction.objects.filter(transaction_type="deposit").count()
    if deposits != completed:
        problems.append(f"{deposits} deposits for {completed} completed payments")
    return problems


# --- the two ways --------------------------------------------------------------------------


class Timed:
    """Counts the calls of a function and the time spent in them (a benchmark-only patch)."""

    def __init__(self, fn: Any) -> None:
        self.fn, self.calls, self.seconds = fn, 0, 0.0

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started
                self.calls += 1

        self.wrapper = wrapper


def run_poll(sandbox: Any, seed: str, profile: bool = False) -> dict[str, Any]:
    from payments.services.deposits import poll as polling
    from payments.services.providers.nowpayments.provider import NowPaymentsProvider

    reset_local(seed)
    fresh_provider()
    sandbox.control.reset_requests()
    apply_timer = Timed(polling.payment_apply_report)
    list_timer = Timed(NowPaymentsProvider.list_payments)
    polling.payment_apply_report = apply_timer.wrapper
    NowPaymentsProvider.list_payments = list_timer.wrapper  # type: ignore[method-assign]
    profiler = cProfile.Profile() if profile else None
    try:
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        result = polling.payments_poll()
        if profiler:
            profiler.disable()
        wall = time.perf_counter() - started
    finally:
        polling.payment_apply_report = apply_timer.fn
        NowPaymentsProvider.list_payments = list_timer.fn  # type: ignore[method-assign]
    counts = sandbox.control.requests()
    out = {
        "wall": wall,
        "requests": sum(counts.values()),
        "counts": counts,
        "result": result.as_dict(),
        "apply_s": apply_timer.seconds,
        "applies": apply_timer.calls,
        "list_s": list_timer.seconds,
        "pages": list_timer.calls,
    }
    if profiler:
        stats = io.StringIO()
        pstats.Stats(profiler, stream=stats).sort_stats("cumulative").print_stats(25)
        out["profile"] = stats.getvalue()
    return out


def run_per_payment(sandbox: Any, seed: str, sample: int, rng_seed: int) -> dict[str, Any]:
    from payments.models import Payment
    from payments.models.payment import ACTIVE_STATUSES
    from payments.services.deposits import payment_apply_report
    from payments.services.providers.nowpayments.gateway import get_provider

    reset_local(seed)
    fresh_provider()
    sandbox.control.reset_requests()
    started = time.perf_counter()
    active = list(
        Payment.objects.filter(
            status__in=ACTIVE_STATUSES, provider_payment_id__isnull=False
        ).values_list("provider_payment_id", flat=True)
    )
    chosen = (
        active
        if not sample or sample >= len(active)
        else random.Random(rng_seed).sample(active, sample)
    )
    provider = get_provider()
    outcomes: dict[str, int] = {}
    status_s = apply_s = 0.0
    for pid in chosen:
        t = time.perf_counter()
        report = provider.get_payment_status(pid)
        t2 = time.perf_counter()
        outcome = payment_apply_report(report=report, source="status").outcome
        status_s += t2 - t
        apply_s += time.perf_counter() - t2
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    wall = time.perf_counter() - started
    counts = sandbox.control.requests()
    scale = len(active) / len(chosen)
    return {
        "wall": wall,
        "requests": sum(counts.values()),
        "active": len(active),
        "timed": len(chosen),
        "scale": scale,
        "wall_full": wall * scale,
        "requests_full": sum(counts.values()) * scale,
        "outcomes": outcomes,
        "status_s": status_s,
        "apply_s": apply_s,
        "chosen": set(chosen),
    }


def apply_statements(plan: dict[str, str]) -> str:
    """The statements one apply of each kind costs, on the warm state, with their times."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from payments.services import deposits as polling
    from payments.services.providers.nowpayments.gateway import get_provider

    reset_local("warm")
    provider = get_provider()
    out = []
    for did in ("waiting", "confirming", "finished"):
        pid = next(p for p, d in plan.items() if d == did)
        report = provider.get_payment_status(pid)
        with CaptureQueriesContext(connection) as ctx:
            started = time.perf_counter()
            outcome = polling.payment_apply_report(report=report, source="poll").outcome
            wall = (time.perf_counter() - started) * 1000
        out.append(
            f"sandbox {did} -> {outcome}: {len(ctx.captured_queries)} statements, "
            f"{wall:.2f} ms wall"
        )
        out.extend(
            f"  {float(q['time']) * 1000:5.1f} ms  {' '.join(q['sql'].split())[:130]}"
            for q in ctx.captured_queries
        )
    return "\n".join(out)


# --- main ----------------------------------------------------------------------------------

SCENARIOS = {
    "cold": "rows as payment_create leaves them (first cycle after they were created)",
    "warm": "rows seen by one earlier cycle (steady state)",
}


def measure(args: argparse.Namespace, sandbox: Any, plan: dict[str, str], seed: str) -> dict:
    with results_mod.LoadMeter() as load:
        poll = run_poll(sandbox, seed, profile=args.profile)
    poll["load"] = load.result
    poll["problems"] = check_local(plan)
    print(
        f"[{seed}] poll: {poll['wall']:.2f}s, {poll['requests']} requests {poll['counts']}; "
        f"{poll['result']}; verify: "
        + ("OK" if not poll["problems"] else "; ".join(poll["problems"])),
        flush=True,
    )
    with results_mod.LoadMeter() as load:
        base = run_per_payment(sandbox, seed, args.baseline_sample, args.seed)
    base["load"] = load.result
    base["problems"] = check_local(plan, base["chosen"])
    print(
        f"[{seed}] per-payment: {base['timed']} of {base['active']} timed in "
        f"{base['wall']:.2f}s, {base['requests']} requests; outcomes "
        f"{ {str(k): v for k, v in base['outcomes'].items()} }; verify: "
        + ("OK" if not base["problems"] else "; ".join(base["problems"])),
        flush=True,
    )
    return {"poll": poll, "base": base}


def report(runs: dict[str, dict]) -> None:
    rows, targets = [], []
    for seed, run in runs.items():
        poll, base = run["poll"], run["base"]
        extrapolated = base["timed"] < base["active"]
        note = f", extrapolated from {base['timed']}" if extrapolated else ""
        applied = sum(v for k, v in base["outcomes"].items() if str(k) == "applied")
        rows.append(
            [
                seed,
                "payments_poll() (one cycle)",
                poll["requests"],
                f"{poll['wall']:.2f}s",
                f"{poll['result']['applied']} applied / {poll['applies']} written",
            ]
        )
        rows.append(
            [
                seed,
                f"per-payment status + apply{note}",
                f"{base['requests_full']:.0f}",
                f"{base['wall_full']:.2f}s",
                f"{applied * base['scale']:.0f} applied / {base['active']} written",
            ]
        )
        speedup = base["wall_full"] / poll["wall"]
        targets.append(
            [
                seed,
                poll["requests"],
                f"{poll['requests'] / MAX_REQUESTS:.2f} of 25",
                harness.verdict(poll["requests"] <= MAX_REQUESTS),
                f"{base['requests_full'] / max(poll['requests'], 1):.0f}x",
                f"{speedup:.1f}x",
                f"{speedup / MIN_SPEEDUP:.2f} of 20x",
                harness.verdict(speedup >= MIN_SPEEDUP),
            ]
        )
    active = next(iter(runs.values()))["base"]["active"]
    print()
    print(
        harness.table(
            ["state", "method", "provider requests", "wall time", "payment rows"],
            rows,
            title=f"Poll cycle over {active} active payments (sandbox in-process)",
        )
    )
    print()
    print(
        harness.table(
            [
                "state",
                "requests/cycle",
                "vs target <=25",
                "verdict",
                "fewer requests",
                "speed-up",
                "vs target >=20x",
                "verdict",
            ],
            targets,
        )
    )
    print()
    for seed, run in runs.items():
        poll, base = run["poll"], run["base"]
        other = poll["wall"] - poll["list_s"] - poll["apply_s"]
        print(
            f"[{seed}] poll: {poll['pages']} list pages {poll['list_s']:.2f}s (HTTP + parsing); "
            f"{poll['applies']} payment_apply_report calls {poll['apply_s']:.2f}s "
            f"({poll['apply_s'] / max(poll['applies'], 1) * 1000:.2f} ms each); "
            f"rest {other:.2f}s"
        )
        print(
            f"[{seed}] per-payment: status calls {base['status_s']:.2f}s "
            f"({base['status_s'] / base['timed'] * 1000:.2f} ms each), applies "
            f"{base['apply_s']:.2f}s ({base['apply_s'] / base['timed'] * 1000:.2f} ms each)"
        )
    for seed, run in runs.items():
        if "profile" in run["poll"]:
            text = run["poll"]["profile"]
            print(f"\n== cProfile of the {seed} poll cycle ==")
            print(text[text.index("   ncalls") :] if "   ncalls" in text else text)


def main() -> int:
    args = parse_args()
    print(harness.banner("polling", sys.argv[1:]), flush=True)
    from sandbox.server import SandboxServer

    logs = harness.log_dir("polling")
    db_url = harness.recreate_database(args.db)
    harness.flush_redis(args.redis_db)
    with SandboxServer(
        port=0,
        **{**harness.SANDBOX_CREDENTIALS, "ipn_secret": ""},
    ) as sandbox:
        env = harness.product_env(
            db_url=db_url,
            redis_index=args.redis_db,
            **harness.sandbox_settings(sandbox.api_url),
            LOG_LEVEL="WARNING",
        )
        migrate_s = harness.migrate(env, logs)
        harness.setup_django(env)
        t = time.perf_counter()
        plan, prior = create_payments(args, sandbox)
        kinds = {k: sum(1 for v in plan.values() if v == k) for k in sorted(set(plan.values()))}
        print(
            f"setup: migrate {migrate_s:.1f}s; {args.payments} payments at the sandbox and "
            f"locally, one prior cycle ({prior}), in {time.perf_counter() - t:.1f}s; "
            f"sandbox now: {kinds}",
            flush=True,
        )
        for seed in args.states:
            print(f"[{seed}] {SCENARIOS[seed]}", flush=True)
        runs = {seed: measure(args, sandbox, plan, seed) for seed in args.states}
        listing = apply_statements(plan) if args.profile else ""
    report(runs)
    out = results_mod.Results("polling", args.quick)
    for seed, run in runs.items():
        poll, base = run["poll"], run["base"]
        sampled = base["timed"] < base["active"]
        note = f" (extrapolated from {base['timed']})" if sampled else ""
        out.add(
            results_mod.Row(
                row="5",
                figure=f"poll cycle over {base['active']:,} active payments ({seed}): "
                "provider requests, time",
                ours=f"{poll['requests']} requests, {poll['wall']:.2f} s",
                baseline=f"per-payment status + apply, same writes: "
                f"{base['requests_full']:,.0f} requests, {base['wall_full']:.2f} s{note}",
                ratio=f"{poll['wall'] / base['wall_full']:.3f}x time",
                target=f"<= {MAX_REQUESTS} requests",
                ok=poll["requests"] <= MAX_REQUESTS
                and not poll["problems"]
                and not base["problems"],
                load=f"{poll['load'].text()}; {base['load'].text()}",
            )
        )
    out.print_section()
    out.write()
    if listing:
        print("\n== one payment_apply_report of each kind, alone, in-process ==")
        print(listing)
    failed = any(r["poll"]["problems"] or r["base"]["problems"] for r in runs.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
