"""Signed NowPayments IPNs at a fixed rate against the webhook served by gunicorn (open loop).

Setup: a fresh database; P payments created at an in-process sandbox and stored locally as
``pending``. For each payment the sandbox is walked through confirming, confirmed, sending and
finished, and the IPN body it would send at each step is captured (``sandbox.bodies``), then
signed with ``sign_ipn`` and NOWPAYMENTS_IPN_SECRET exactly as the sandbox signs its own.

The schedule: every payment's four IPNs, in rounds (a payment's IPNs are seconds apart);
``--stale-fraction`` of the payments have two adjacent IPNs swapped, so the earlier status
arrives late (stale); ``--dup-fraction`` extra sends re-deliver a body already sent (same
body and signature). Send times are fixed (i / rate); latency is measured from the scheduled
send time to the end of the response, so a slow server cannot slow the sender (no coordinated
omission). Each IPN is its own connection, as NowPayments delivers them.

Run from the repository root: ``.venv/bin/python benchmarks/ipn_load.py [--duration 10]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import harness
import results as results_mod

DB_NAME = "bench_ipn"
REDIS_INDEX = 14  # the test suite uses 7-9 and 13
API_KEY = harness.SANDBOX_CREDENTIALS["api_key"]
IPN_SECRET = harness.SANDBOX_CREDENTIALS["ipn_secret"]
WEBHOOK_PATH = "/payments/webhooks/nowpayments/"
STEPS = ("confirming", "confirmed", "sending", "finished")
P99_TARGET_MS = 20.0
CPU_TARGET_MS = 2.0
CREDIT_PACED_TARGET_MS = 50.0
CREDIT_BURST_TARGET_MS = 500.0
CREDIT_PACED_RATE = 10.0
TRIVIAL_PATH = "/bench/trivial/"
WARMUP_PAYMENTS = 25
WARMUP_RATE = 50.0
PROFILE_PAYMENTS = 2  # replayed in-process under --profile, outside the load


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="IPNs per second")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load")
    parser.add_argument("--dup-fraction", type=float, default=0.10)
    parser.add_argument("--schedule", choices=["mixed", "rounds"], default="mixed")
    parser.add_argument(
        "--step-gap", type=float, default=2.0, help="seconds between a payment's IPNs (mixed)"
    )
    parser.add_argument("--stale-fraction", type=float, default=0.05)
    parser.add_argument("--workers", type=int, default=3, help="gunicorn -w")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn --threads (gthread)")
    parser.add_argument("--timeout", type=float, default=10.0, help="per request, seconds")
    parser.add_argument(
        "--db-options",
        default="",
        help="query string added to gunicorn's DATABASE_URL, e.g. server_side_binding=true",
    )
    parser.add_argument("--db", default=DB_NAME)
    parser.add_argument("--redis-db", type=int, default=REDIS_INDEX)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--credit-paced", type=int, default=200, help="finished IPNs at 10/s")
    parser.add_argument("--credit-burst", type=int, default=200, help="finished IPNs at once")
    parser.add_argument(
        "--worker-concurrency",
        type=int,
        default=2,
        help="the settlement worker that applies stored IPNs (PAYMENTS_IPN_APPLY=worker)",
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample the gunicorn workers with py-spy during the run (it slows them a little)",
    )
    return parser.parse_args()


@dataclass
class Ipn:
    provider_id: str
    status: str
    body: bytes
    signature: str
    kind: str = "progress"  # progress | stale | duplicate


@dataclass
class Result:
    scheduled: float
    started: float = 0.0
    done: float = 0.0
    # time.time() - time.monotonic() when the request was written: the scheduled time on the
    # wall clock (the deposits' created_at's clock), however the wall clock was stepped since.
    wall_offset: float = 0.0
    http: int = 0
    body: dict[str, Any] = field(default_factory=dict)
    error: str = ""


# --- setup ---------------------------------------------------------------------------------


def create_payments(count: int, sandbox: Any, rng: random.Random) -> dict[str, list[Ipn]]:
    """Create payments at the sandbox and locally; return each one's four signed IPNs."""
    from django.contrib.auth import get_user_model

    from payments.models import Currency, Payment
    from payments.services.providers.nowpayments.gateway import get_provider
    from payments.services.providers.nowpayments.signature import js_dumps, sign_ipn
    from sandbox import bodies, payment_flow

    user_model = get_user_model()
    users = user_model.objects.bulk_create(
        [user_model(username=f"ipn{i:05d}", password="!") for i in range(200)]  # noqa: S106
    )
    currency = Currency.objects.create(
        code="USDTTRC20",
        name="Tether USD (TRC20)",
        token="USDT",  # noqa: S106 - a ticker
        network="TRC20",
        decimal_places=6,
    )
    amounts = [Decimal(rng.randrange(2_000, 50_000)) / 100 for _ in range(count)]

    def create(i: int) -> Any:
        return get_provider().create_payment(
            price_amount=amounts[i],
            price_currency="usd",
            pay_currency="usdttrc20",
            order_id=f"PAY_IPN_{i:08d}",
        )

    with ThreadPoolExecutor(4) as pool:
        reports = list(pool.map(create, range(count)))
    Payment.objects.bulk_create(
        [
            Payment(
                user_id=rng.choice(users).pk,
                internal_payment_id=r.order_id,
                amount_usd=amounts[i],
                currency=currency,
                pay_amount=r.pay_amount,
                pay_address=r.pay_address or "",
                provider_payment_id=r.payment_id,
                expires_at=r.valid_until,
                provider_data=dict(r.raw),
            )
            for i, r in enumerate(reports)
        ],
        batch_size=2000,
    )
    state = sandbox.state
    ipns: dict[str, list[Ipn]] = {}
    with state.lock:
        as_string = state.quirks["pay_amount_as_string"]
        for r in reports:
            record = state.payment(int(r.payment_id))
            steps = []
            for status in STEPS:
                if status == "confirming":
                    payment_flow.pay(state, record, None, None)
                else:
                    payment_flow.advance(state, record, status)
                payload = bodies.payment_ipn(record, pay_amount_as_string=as_string)
                steps.append(
                    Ipn(
                        provider_id=r.payment_id,
                        status=status,
                        body=js_dumps(payload).encode("utf-8"),
                        signature=sign_ipn(payload, IPN_SECRET),
                    )
                )
            ipns[r.payment_id] = steps
    return ipns


def lead_seconds(args: argparse.Namespace) -> float:
    """How far before the window a payment's first IPN may fall (mixed schedule)."""
    return args.step_gap * (len(STEPS) - 0.5)


def payments_needed(args: argparse.Namespace, total: int) -> int:
    """Payments whose IPNs fill ``total`` sends, duplicates included."""
    progress = total / (1 + args.dup_fraction)
    if args.schedule == "rounds":
        return max(1, int(progress / len(STEPS)))
    duration = total / args.rate
    in_window = len(STEPS) * duration / (duration + lead_seconds(args))
    return max(1, math.ceil(progress / in_window))


def build_schedule(
    ipns: dict[str, list[Ipn]], total: int, args: argparse.Namespace, rng: random.Random
) -> tuple[list[Ipn], list[Ipn]]:
    """(sent before the window, the ``total`` sends of the window), in send order.

    ``mixed`` (default), a steady state: each payment starts at a random time between
    ``lead`` seconds before the window and its end, its IPNs ``--step-gap`` seconds apart.
    IPNs due before the window go out first, unmeasured; those due after it are never sent,
    so every part of the window holds every status in the same proportion.
    ``rounds``, a burst test: all confirming IPNs first, then all confirmed, sending,
    finished, so the last quarter is nothing but settlements.
    In both, a share of payments get two adjacent IPNs swapped (the late one is stale) and
    duplicates re-send a body already sent (same body and signature).
    """
    ids = list(ipns)
    order = {pid: list(steps) for pid, steps in ipns.items()}
    for pid in rng.sample(ids, int(len(ids) * args.stale_fraction)):
        # confirmed before confirming, or finished before sending: the late one is stale.
        k = rng.choice((0, 2))
        steps = order[pid]
        steps[k], steps[k + 1] = steps[k + 1], steps[k]
        steps[k + 1] = Ipn(**{**steps[k + 1].__dict__, "kind": "stale"})
    timed: list[tuple[float, Ipn]] = []
    duration = total / args.rate
    if args.schedule == "rounds":
        slot = duration / len(STEPS)
        for k in range(len(STEPS)):
            timed.extend((k * slot + rng.uniform(0, slot), order[pid][k]) for pid in ids)
    else:
        gap = args.step_gap
        for pid in ids:
            start = rng.uniform(-lead_seconds(args), duration)
            timed.extend(
                (start + k * gap + rng.uniform(0, gap / 2), ipn) for k, ipn in enumerate(order[pid])
            )
    before = sorted((p for p in timed if p[0] < 0), key=lambda p: p[0])
    window = [p for p in timed if 0 <= p[0] < duration]
    originals = list(window)
    while originals and len(window) < total:
        at, ipn = rng.choice(originals)
        again = at + rng.uniform(0.1, 2.0)
        if again < duration:
            window.append((again, Ipn(**{**ipn.__dict__, "kind": "duplicate"})))
    window.sort(key=lambda pair: pair[0])
    return [ipn for _, ipn in before], [ipn for _, ipn in window[:total]]


def request_bytes(ipn: Ipn, port: int, path: str = WEBHOOK_PATH) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        "Content-Type: application/json\r\n"
        "User-Agent: NOWPayments-bench\r\n"
        f"x-nowpayments-sig: {ipn.signature}\r\n"
        f"Content-Length: {len(ipn.body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + ipn.body


# --- load ----------------------------------------------------------------------------------


async def _send(port: int, data: bytes, result: Result, timeout: float) -> None:
    result.started = time.monotonic()
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            result.wall_offset = time.time() - time.monotonic()
            writer.write(data)
            await writer.drain()
            raw = await reader.read()
        result.done = time.monotonic()
        head, _, body = raw.partition(b"\r\n\r\n")
        result.http = int(head.split(b" ", 2)[1])
        try:
            result.body = json.loads(body)
        except ValueError:
            result.error = f"unreadable body: {body[:80]!r}"
    except TimeoutError:
        result.done = time.monotonic()
        result.error = "timeout"
    except (OSError, IndexError, ValueError) as exc:
        result.done = time.monotonic()
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        if writer is not None:
            writer.close()


async def _open_loop(
    port: int, schedule: list[Ipn], rate: float, timeout: float, path: str
) -> tuple[list[Result], float, float]:
    payloads = [request_bytes(ipn, port, path) for ipn in schedule]
    t0 = time.monotonic() + 0.2
    results = [Result(scheduled=t0 + i / rate) for i in range(len(schedule))]
    tasks = []
    max_lag = 0.0
    for data, result in zip(payloads, results, strict=True):
        delay = result.scheduled - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        max_lag = max(max_lag, time.monotonic() - result.scheduled)
        tasks.append(asyncio.create_task(_send(port, data, result, timeout)))
    await asyncio.gather(*tasks)
    return results, t0, max_lag


def run_load(
    port: int, schedule: list[Ipn], rate: float, timeout: float, path: str = WEBHOOK_PATH
) -> tuple[list[Result], float, float]:
    return asyncio.run(_open_loop(port, schedule, rate, timeout, path))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    k = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[k]


def response_key(r: Result) -> str:
    if r.error:
        return r.error.split(":")[0]
    if r.body.get("status") == "duplicate":
        return f"{r.http} duplicate"
    return f"{r.http} {r.body.get('outcome') or r.body.get('status')}"


def is_error(r: Result) -> bool:
    return bool(r.error) or r.http != 200 or r.body.get("status") == "error"


def start_worker(args: argparse.Namespace, env: dict[str, str], logs: Any) -> harness.Child:
    """The settlement worker that applies the stored IPNs (the product's default mode)."""
    from project.celery import app

    name = "bench-ipn"
    argv = [str(harness.BIN / "celery"), "-A", "project", "worker", "-Q", "settlement"]
    argv += ["-c", str(args.worker_concurrency), "-n", f"{name}@%h", "--loglevel", "INFO"]
    worker = harness.Child(name, argv, env, logs / "worker.log")

    def ready() -> bool:
        if not worker.alive():
            raise RuntimeError(f"worker exited early:\n{worker.tail()}")
        return any(next(iter(r)).startswith(name) for r in app.control.ping(timeout=0.5))

    harness.wait_until(ready, timeout=90, interval=0.5, what="the worker to answer a ping")
    return worker


def wait_applied(worker: harness.Child, timeout: float = 180.0) -> None:
    """Until no stored IPN waits to be applied (in inline mode none ever waits)."""
    from payments.models import ProviderEvent

    def applied() -> bool:
        if not worker.alive():
            raise RuntimeError(f"worker died:\n{worker.tail()}")
        return not ProviderEvent.objects.filter(outcome="received").exists()

    harness.wait_until(applied, timeout=timeout, interval=0.05, what="stored IPNs applied")


def drain(port: int, probe: Ipn, timeout: float) -> None:
    """Wait until the server answers the trivial view within 100 ms (an earlier phase's
    backlog must not spill into the next one's figures)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        (r,), _, _ = run_load(port, [probe], 1.0, timeout, TRIVIAL_PATH)
        if not is_error(r) and r.done - r.scheduled < 0.1:
            return
        time.sleep(0.5)
    print("warning: the server did not drain within 120 s", flush=True)


# --- gunicorn ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(args: argparse.Namespace, env: dict[str, str], logs: Any) -> tuple[Any, int]:
    port = free_port()
    # The product's settings and URLs plus one trivial view (bench_settings.py, bench_urls.py).
    env = {
        **env,
        "DJANGO_SETTINGS_MODULE": "bench_settings",
        "PYTHONPATH": os.pathsep.join([str(harness.REPO / "benchmarks"), str(harness.REPO)]),
    }
    server = harness.Child(
        "gunicorn",
        [
            str(harness.BIN / "gunicorn"),
            "project.wsgi",
            "-w",
            str(args.workers),
            "-k",
            "gthread",
            "--threads",
            str(args.threads),
            "-b",
            f"127.0.0.1:{port}",
        ],
        env,
        logs / "gunicorn.log",
    )

    def booted() -> bool:
        if not server.alive():
            raise RuntimeError(f"gunicorn exited:\n{server.tail()}")
        text = server.log.read_text(errors="replace")
        return text.count("Booting worker") >= args.workers

    harness.wait_until(booted, timeout=60, what="gunicorn workers to boot")
    return server, port


# --- in-process replay (for --profile) ---------------------------------------------------


def replay_in_process(spare: dict[str, list[Ipn]]) -> str:
    """Each IPN kind once through the full Django stack in this process: statements and time."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(SERVER_NAME="127.0.0.1")
    first, second = spare.values()
    plan = [(f"{ipn.status}", ipn) for ipn in first]
    plan.append(("duplicate (finished again)", first[-1]))
    plan.append(("stale (confirming after confirmed)", second[0]))
    ipn = second[1]
    client.post(WEBHOOK_PATH, ipn.body, "application/json", HTTP_X_NOWPAYMENTS_SIG=ipn.signature)
    rows, listing = [], []
    for label, ipn in plan:
        with CaptureQueriesContext(connection) as ctx:
            started = time.perf_counter()
            response = client.post(
                WEBHOOK_PATH, ipn.body, "application/json", HTTP_X_NOWPAYMENTS_SIG=ipn.signature
            )
            wall = (time.perf_counter() - started) * 1000
        statements = ctx.captured_queries
        sql_ms = sum(float(q["time"]) for q in statements) * 1000
        outcome = json.loads(response.content)
        rows.append(
            [
                label,
                "duplicate"
                if outcome.get("status") == "duplicate"
                else outcome.get("outcome") or outcome.get("status"),
                len(statements),
                f"{wall:.2f}",
                f"{sql_ms:.0f}",
            ]
        )
        if ipn.status == "finished" and not listing:
            listing = [" ".join(q["sql"].split())[:120] for q in statements]
    table = harness.table(
        ["IPN", "outcome", "SQL statements", "wall ms", "of which SQL ms (1 ms ticks)"], rows
    )
    return (
        table
        + "\nstatements of the finished IPN:\n"
        + "\n".join(f"  {i:2d}. {sql}" for i, sql in enumerate(listing, 1))
    )


def deposit_times(provider_ids: set[str]) -> dict[str, float]:
    """provider payment id -> the epoch seconds of its deposit posting's created_at."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            "SELECT p.provider_payment_id, extract(epoch FROM t.created_at) FROM "
            "payments_transaction t JOIN payments_payment p ON p.id = t.payment_id "
            "WHERE t.transaction_type = 'deposit' AND p.provider_payment_id = ANY(%s)",
            [list(provider_ids)],
        )
        return {pid: float(at) for pid, at in cur.fetchall()}


# --- verification --------------------------------------------------------------------------


def verify(finished_ids: set[str]) -> tuple[list[str], dict[str, int]]:
    from django.db import connection

    from payments.models import Payment, ProviderEvent, Transaction

    problems = []
    rows = dict(Payment.objects.values_list("provider_payment_id", "status"))
    not_completed = [pid for pid in finished_ids if rows.get(pid) != "completed"]
    if not_completed:
        problems.append(f"{len(not_completed)} finished payments are not completed")
    with connection.cursor() as cur:
        cur.execute(
            "SELECT p.provider_payment_id, count(t.id) FROM payments_payment p LEFT JOIN "
            "payments_transaction t ON t.payment_id = p.id AND t.transaction_type = 'deposit' "
            "GROUP BY p.provider_payment_id"
        )
        deposits = dict(cur.fetchall())
        cur.execute(
            "SELECT count(*) FROM payments_userbalance b LEFT JOIN (SELECT user_id, "
            "sum(amount_usd) AS total, count(*) AS n FROM payments_transaction GROUP BY user_id)"
            " t ON t.user_id = b.user_id WHERE b.balance_usd <> coalesce(t.total, 0) "
            "OR b.transaction_count <> coalesce(t.n, 0)"
        )
        bad_balances = cur.fetchone()[0]
    wrong = [pid for pid in finished_ids if deposits.get(pid) != 1]
    if wrong:
        problems.append(f"{len(wrong)} finished payments without exactly one deposit")
    extra = [pid for pid, n in deposits.items() if n and pid not in finished_ids]
    if extra:
        problems.append(f"{len(extra)} deposits for payments that did not finish")
    if bad_balances:
        problems.append(f"{bad_balances} balances differ from their postings")
    outcomes: dict[str, int] = {}
    for outcome, deliveries in ProviderEvent.objects.values_list("outcome", "deliveries"):
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        if deliveries > 1:
            outcomes["(re-delivered)"] = outcomes.get("(re-delivered)", 0) + deliveries - 1
    outcomes["deposits"] = Transaction.objects.filter(transaction_type="deposit").count()
    return problems, outcomes


# --- main ----------------------------------------------------------------------------------


def main() -> int:
    args = parse_args()
    print(harness.banner("ipn_load", sys.argv[1:]), flush=True)
    from sandbox.server import SandboxServer

    rng = random.Random(args.seed)
    logs = harness.log_dir("ipn_load")
    db_url = harness.recreate_database(args.db)
    harness.flush_redis(args.redis_db)
    total = int(args.rate * args.duration)
    n_payments = payments_needed(args, total)
    with SandboxServer(
        port=0,
        **harness.SANDBOX_CREDENTIALS,
    ) as sandbox:
        env = harness.product_env(
            db_url=db_url,
            redis_index=args.redis_db,
            **harness.sandbox_settings(sandbox.api_url),
        )
        migrate_s = harness.migrate(env, logs)
        harness.setup_django({**env, "LOG_LEVEL": "WARNING"})
        t = time.perf_counter()
        n_credit = args.credit_paced + args.credit_burst
        ipns = create_payments(
            n_payments + WARMUP_PAYMENTS + PROFILE_PAYMENTS + n_credit, sandbox, rng
        )
    spare = {pid: ipns.pop(pid) for pid in list(ipns)[-PROFILE_PAYMENTS:]}
    # Time to credit: payments that get nothing but their finished IPN, paced or all at once.
    credit_ids = list(ipns)[-n_credit:] if n_credit else []
    credit = {pid: ipns.pop(pid)[-1] for pid in credit_ids}
    paced = [credit[pid] for pid in credit_ids[: args.credit_paced]]
    burst = [credit[pid] for pid in credit_ids[args.credit_paced :]]
    warm_ids = list(ipns)[:WARMUP_PAYMENTS]
    warmup = [ipns[pid][step] for step in range(len(STEPS)) for pid in warm_ids]
    measured = {pid: steps for pid, steps in ipns.items() if pid not in set(warm_ids)}
    before, schedule = build_schedule(measured, total, args, rng)
    kinds = {k: sum(1 for i in schedule if i.kind == k) for k in ("progress", "stale", "duplicate")}
    print(
        f"setup: migrate {migrate_s:.1f}s; {len(ipns)} payments and their signed IPNs in "
        f"{time.perf_counter() - t:.1f}s; schedule {len(schedule)} IPNs {kinds} at "
        f"{args.rate:.0f}/s ({args.schedule}); logs in {logs}",
        flush=True,
    )

    from django.db import connections

    connections.close_all()
    web_env = dict(env)
    if args.db_options:
        web_env["DATABASE_URL"] = f"{db_url}?{args.db_options}"
    worker = start_worker(args, env, logs)
    server, port = start_gunicorn(args, web_env, logs)
    try:
        warm, _, _ = run_load(port, warmup, WARMUP_RATE, args.timeout)
        warm_errors = sum(is_error(r) for r in warm)
        print(f"warm-up: {len(warm)} IPNs at {WARMUP_RATE:.0f}/s, {warm_errors} errors", flush=True)
        if before:
            early, _, _ = run_load(port, before, args.rate / 2, args.timeout)
            print(
                f"before the window: {len(early)} IPNs due earlier sent at {args.rate / 2:.0f}/s, "
                f"{sum(is_error(r) for r in early)} errors",
                flush=True,
            )
        groups = {
            "gunicorn": harness.process_tree(server.pid),
            "load generator": [os.getpid()],
        }
        meter = harness.CpuMeter()
        meter.start(groups)
        spy = None
        if args.profile:
            spy = harness.pyspy_start(server.pid, logs / "pyspy.txt", logs / "pyspy.log")
        with results_mod.LoadMeter() as ipn_load:
            results, t0, max_lag = run_load(port, schedule, args.rate, args.timeout)
        meter.stop(groups)
        harness.pyspy_stop(spy)
        # The floor: a trivial view under the same gunicorn, the same bodies at the same rate.
        drain(port, schedule[0], args.timeout)
        groups["gunicorn"] = harness.process_tree(server.pid)
        trivial_meter = harness.CpuMeter()
        trivial_meter.start(groups)
        with results_mod.LoadMeter() as trivial_load:
            trivial, _, _ = run_load(port, schedule, args.rate, args.timeout, TRIVIAL_PATH)
        trivial_meter.stop(groups)
        print(f"trivial view: {len(trivial)} requests at {args.rate:.0f}/s", flush=True)
        credit_runs = {}
        for label, batch, rate in (
            (f"paced {CREDIT_PACED_RATE:.0f}/s", paced, CREDIT_PACED_RATE),
            ("at once", burst, 1e9),
        ):
            if batch:
                drain(port, schedule[0], args.timeout)
                with results_mod.LoadMeter() as credit_load:
                    sent_at, _, _ = run_load(port, batch, rate, args.timeout)
                    wait_applied(worker)
                credit_runs[label] = (batch, sent_at, credit_load.result)
        wait_applied(worker)
    finally:
        server.stop()
        worker.stop()

    latencies = [(r.done - r.scheduled) * 1000 for r in results if not r.error]
    errors = [r for r in results if is_error(r)]
    end = max(r.done for r in results)
    span = end - t0
    achieved = len(results) / span
    responses: dict[str, int] = {}
    for r in results:
        responses[response_key(r)] = responses.get(response_key(r), 0) + 1
    sent = [*warmup, *before, *schedule, *paced, *burst]
    finished_ids = {ipn.provider_id for ipn in sent if ipn.status == "finished"}
    started_ids = {ipn.provider_id for ipn in sent}
    problems, outcomes = verify(finished_ids)
    p50, p95, p99 = (percentile(latencies, p) for p in (50, 95, 99))
    worst = max(latencies) if latencies else math.nan
    ok = p99 <= P99_TARGET_MS and not errors
    print()
    print(
        harness.table(
            [
                "IPNs",
                "offered rate",
                "achieved rate",
                "p50",
                "p95",
                "p99",
                "max",
                "errors",
                "p99 vs 50 ms",
                "target",
            ],
            [
                [
                    len(results),
                    f"{args.rate:.0f}/s",
                    f"{achieved:.1f}/s",
                    f"{p50:.1f} ms",
                    f"{p95:.1f} ms",
                    f"{p99:.1f} ms",
                    f"{worst:.1f} ms",
                    len(errors),
                    f"{p99 / P99_TARGET_MS:.2f}",
                    harness.verdict(ok),
                ]
            ],
            title=(
                f"IPN webhook under gunicorn -w {args.workers} -k gthread --threads "
                f"{args.threads}, {args.duration:.0f}s open loop (latency from scheduled send)"
            ),
        )
    )
    print(
        f"\nsender: max dispatch lag {max_lag * 1000:.1f} ms; last response {span:.1f}s after "
        f"the first scheduled send\nresponses: {dict(sorted(responses.items()))}\n"
        f"stored events: {dict(sorted(outcomes.items()))}"
    )
    breakdown = []
    groups_by: dict[str, list[float]] = {}
    for ipn, r in zip(schedule, results, strict=True):
        if r.error:
            continue
        label = ipn.status if ipn.kind == "progress" else ipn.kind
        groups_by.setdefault(label, []).append((r.done - r.scheduled) * 1000)
    for label in (*STEPS, "stale", "duplicate"):
        values = groups_by.get(label, [])
        if values:
            breakdown.append(
                [
                    label,
                    len(values),
                    f"{percentile(values, 50):.1f}",
                    f"{percentile(values, 99):.1f}",
                    f"{max(values):.1f}",
                ]
            )
    window = 5.0
    for start in range(0, math.ceil(span / window)):
        values = [
            (r.done - r.scheduled) * 1000
            for r in results
            if not r.error and start * window <= r.scheduled - t0 < (start + 1) * window
        ]
        if values:
            breakdown.append(
                [
                    f"sent {start * window:.0f}-{(start + 1) * window:.0f}s",
                    len(values),
                    f"{percentile(values, 50):.1f}",
                    f"{percentile(values, 99):.1f}",
                    f"{max(values):.1f}",
                ]
            )
    print()
    print(harness.table(["IPNs", "count", "p50 ms", "p99 ms", "max ms"], breakdown))
    n = len(results)
    print(
        f"CPU during the run ({meter.wall:.1f}s): machine {meter.machine_busy() * 100:.0f}% busy "
        f"of {os.cpu_count()} cores; per IPN: gunicorn {meter.used('gunicorn') / n * 1000:.2f} "
        f"ms, PostgreSQL server {meter.postgres / n * 1000:.2f} ms, load generator "
        f"{meter.used('load generator') / n * 1000:.2f} ms, everything else on the machine "
        f"{meter.other() / n * 1000:.2f} ms"
    )
    if args.profile:
        print("\n== py-spy profile of the gunicorn workers during the run ==")
        print(harness.collapsed_summary(logs / "pyspy.txt"))
        print("\n== one IPN of each kind through Django's test client, alone, in-process ==")
        print(replay_in_process(spare))
    out = results_mod.Results("ipn_load", args.quick)
    trivial_lat = [(r.done - r.scheduled) * 1000 for r in trivial if not r.error]
    trivial_errors = sum(is_error(r) for r in trivial)
    t99 = percentile(trivial_lat, 99)
    cpu_ipn = meter.used("gunicorn") / n * 1000
    cpu_trivial = trivial_meter.used("gunicorn") / max(len(trivial), 1) * 1000
    if trivial_errors:
        sample = next(r for r in trivial if is_error(r))
        print(f"trivial view: first error http {sample.http} {sample.error or sample.body}")
    print(
        f"trivial view, same gunicorn: p50 {percentile(trivial_lat, 50):.1f} ms, p99 {t99:.1f} ms, "
        f"{trivial_errors} errors, gunicorn CPU {cpu_trivial:.2f} ms a request"
    )
    figure = f"IPN at {args.rate:.0f}/s for {args.duration:.0f} s"
    out.add(
        results_mod.Row(
            row="3",
            figure=f"{figure}: p99 latency ({len(errors)} errors)",
            ours=f"{p99:.1f} ms (p50 {p50:.1f})",
            baseline=f"trivial view, same gunicorn: {t99:.1f} ms",
            ratio=f"{p99 / t99:.1f}x" if t99 else "-",
            target=f"<= {P99_TARGET_MS:.0f} ms",
            ok=ok,
            load=f"{ipn_load.result.text()}; {trivial_load.result.text()}",
        )
    )
    out.add(
        results_mod.Row(
            row="3",
            figure=f"{figure}: web (gunicorn) CPU per IPN",
            ours=f"{cpu_ipn:.2f} ms",
            baseline=f"trivial view: {cpu_trivial:.2f} ms",
            ratio=f"{cpu_ipn / cpu_trivial:.1f}x" if cpu_trivial else "-",
            target=f"<= {CPU_TARGET_MS:.0f} ms",
            ok=cpu_ipn <= CPU_TARGET_MS,
            load=f"{ipn_load.result.text()}; {trivial_load.result.text()}",
        )
    )
    credited = deposit_times({ipn.provider_id for ipn in [*paced, *burst]})
    for label, (batch, sent_at, load) in credit_runs.items():
        waits = [
            (credited[ipn.provider_id] - (r.scheduled + r.wall_offset)) * 1000
            for ipn, r in zip(batch, sent_at, strict=True)
            if ipn.provider_id in credited
        ]
        responses_ms = [(r.done - r.scheduled) * 1000 for r in sent_at if not r.error]
        missing = len(batch) - len(waits)
        target = CREDIT_PACED_TARGET_MS if "paced" in label else CREDIT_BURST_TARGET_MS
        c99 = percentile(waits, 99)
        print(
            f"time to credit through the IPN, {label}: p50 {percentile(waits, 50):.1f} ms, "
            f"p99 {c99:.1f} ms, max {max(waits, default=math.nan):.1f} ms; responses p99 "
            f"{percentile(responses_ms, 99):.1f} ms; {missing} not credited"
        )
        out.add(
            results_mod.Row(
                row="4",
                figure=f"time to credit through the IPN (finished IPN sent -> deposit "
                f"created_at), {len(batch)} {label}",
                ours=f"p99 {c99:.1f} ms (p50 {percentile(waits, 50):.1f})",
                baseline=f"the IPN's own response p99 {percentile(responses_ms, 99):.1f} ms",
                ratio="-",
                target=f"p99 <= {target:.0f} ms",
                ok=c99 <= target and not missing,
                load=load.text(),
            )
        )
    out.print_section()
    out.write()
    if errors:
        sample = errors[0]
        print(f"first error: http {sample.http} {sample.error or sample.body}")
    print(
        f"verify ({len(started_ids)} payments got IPNs, {len(finished_ids)} a finished one): "
        + ("OK: each has exactly one deposit" if not problems else "; ".join(problems))
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
