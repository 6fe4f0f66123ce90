"""The end of every fault scenario: the books are clean, internally and against the provider.

``assert_books_clean`` talks SQL to the database with psycopg (any database URL: the pytest
test database or a private cluster) and HTTP to the sandbox's control API, and runs
``manage.py reconcile --provider`` in a subprocess against the same two, so it works whatever
process or server the scenario stopped, killed or restarted on the way. It re-derives what the
deposit policy (``payments/services/deposits/policy.py``) credits from the sandbox's record
rather than trusting our own ``credited_usd``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Any

import psycopg

from sandbox.client import ControlClient
from tests.conftest import API_KEY, IPN_SECRET, TOTP_SECRET
from tests.faults.books_sql import CHAIN_SQL, PAYMENTS_SQL, POSTINGS_SQL, WITHDRAWALS_SQL
from tests.workers.processes import ROOT

CENT = Decimal("0.01")
REFUNDED_WITHDRAWALS = frozenset({"rejected", "cancelled", "failed"})
OPEN_WITHDRAWALS = frozenset({"pending", "approved", "processing"})
# Payment statuses that may carry a DEPOSIT posting (a refunded one keeps it, reversed).
CREDITED_STATUSES = frozenset({"completed", "refunded"})


@dataclass
class Books:
    """What the check saw (for the scenario to print or assert on) and what was wrong."""

    problems: list[str] = field(default_factory=list)
    figures: Counter[str] = field(default_factory=Counter)
    reconcile_output: str = ""

    def wrong(self, text: str) -> None:
        self.problems.append(text)


def assert_books_clean(
    *,
    database_url: str,
    sandbox_api_url: str,
    env: Mapping[str, str] | None = None,
    underpayment_policy: str = "credit_received",
    overpayment_policy: str = "record",
    in_flight_ok: bool = False,
    run_reconcile: bool = True,
) -> Books:
    """Raise AssertionError naming every way the books are not clean; return what was seen.

    ``env``: the environment the scenario's processes ran with (NowPayments credentials and
    settings for the reconcile command); ``DATABASE_URL`` and ``NOWPAYMENTS_API_URL`` are set
    from the arguments whatever it says. ``in_flight_ok`` lets withdrawals still be open
    (pending/approved/processing) and payouts still unfinished; by default a scenario must have
    settled everything it started.
    """
    books = Books()
    control = ControlClient(sandbox_api_url.removesuffix("/").removesuffix("/v1"))
    try:
        remote_payments = {str(p["payment_id"]): p for p in control.payments()}
        remote_payouts = [w for batch in control.payouts() for w in batch["withdrawals"]]
    finally:
        control.close()
    with psycopg.connect(database_url, autocommit=True) as db:
        payments = db.execute(PAYMENTS_SQL).fetchall()
        withdrawals = db.execute(WITHDRAWALS_SQL).fetchall()
        postings = db.execute(POSTINGS_SQL).fetchall()
        chains = db.execute(CHAIN_SQL).fetchall()
    policy = (underpayment_policy, overpayment_policy)
    _check_payments(books, payments, postings, remote_payments, policy)
    _check_withdrawals(books, withdrawals, postings, remote_payouts, in_flight_ok=in_flight_ok)
    _check_chains(books, chains)
    if run_reconcile:
        _check_reconcile(books, database_url, sandbox_api_url, env)
    if books.problems:
        shown = "\n  ".join(books.problems[:40])
        more = f"\n  ... and {len(books.problems) - 40} more" if len(books.problems) > 40 else ""
        raise AssertionError(
            f"the books are not clean ({len(books.problems)} problems, seen {dict(books.figures)})"
            f":\n  {shown}{more}\n--- reconcile:\n{books.reconcile_output}"
        )
    return books


# --- deposits -------------------------------------------------------------------------------


def expected_credit(
    *, price: Decimal, paid: Decimal | None, asked: Decimal | None, places: int, policy: Any
) -> Decimal | None:
    """What the deposit policy credits for ``paid`` of ``asked`` received (None: nothing, it
    goes to an operator). Written from policy.py's rules, not by calling it."""
    underpayment, overpayment = policy
    if paid is None or not asked:
        return None
    unit = Decimal(1).scaleb(-max(0, min(places, 18)))
    share = (price * paid / asked).quantize(CENT, rounding=ROUND_DOWN)
    if paid + unit < asked:
        if underpayment == "review" or share <= 0:
            return None
        return min(share, price)
    if paid > asked + unit and overpayment == "credit":
        return share
    return price


def _decimal(value: Any) -> Decimal | None:
    return None if value is None or value == "" else Decimal(str(value))


def _check_payments(
    books: Books,
    payments: list[tuple[Any, ...]],
    postings: list[tuple[Any, ...]],
    remote: dict[str, dict[str, Any]],
    policy: Any,
) -> None:
    deposits: dict[Any, list[tuple[Any, ...]]] = defaultdict(list)
    for row in postings:
        kind, payment_id = row[1], row[4]
        if kind == "deposit":
            if payment_id is None:
                books.wrong(f"deposit posting {row[0]} is tied to no payment")
            else:
                deposits[payment_id].append(row)
    known = {row[0] for row in payments}
    for payment_id in set(deposits) - known:
        books.wrong(f"deposit postings for unknown payment {payment_id}")
    for pk, user_id, status, amount, credited, provider_id, pay_amount, places in payments:
        mine = deposits.get(pk, [])
        books.figures[f"payment_{status}"] += 1
        if len(mine) > 1:
            books.wrong(f"payment {pk} ({status}) has {len(mine)} DEPOSIT postings")
        if mine and status not in CREDITED_STATUSES:
            books.wrong(f"payment {pk} is {status} but has a DEPOSIT posting")
        if status == "completed" and not mine:
            books.wrong(f"payment {pk} is completed but was never credited")
        for posting in mine:
            if posting[2] != user_id:
                books.wrong(f"payment {pk}'s deposit went to user {posting[2]}, not {user_id}")
            if posting[3] != (credited if credited is not None else amount):
                books.wrong(f"payment {pk}'s deposit is {posting[3]}, it decided {credited}")
        report = remote.get(str(provider_id)) if provider_id else None
        if report is None:
            continue
        books.figures[f"provider_{report['payment_status']}"] += 1
        credit = sum((p[3] for p in mine), Decimal(0))
        provider_status = report["payment_status"]
        should = expected_credit(
            price=amount,
            paid=_decimal(report.get("actually_paid")),
            asked=_decimal(pay_amount) or _decimal(report.get("pay_amount")),
            places=places,
            policy=policy,
        )
        if provider_status == "finished":
            if should is None:
                if status != "review":
                    books.wrong(f"payment {pk}: finished, policy says review, ours is {status}")
            elif status != "completed" or credit != should:
                books.wrong(
                    f"payment {pk}: NowPayments says finished, the policy credits {should}; "
                    f"ours is {status} with {len(mine)} deposit(s) of {credit}"
                )
        elif provider_status == "partially_paid":
            # Not final until PAYMENTS_PARTIAL_PAYMENT_FINAL_HOURS: nothing yet, or the share.
            if not (status == "partially_paid" and not mine) and not (
                status == "completed" and should is not None and credit == should
            ):
                books.wrong(
                    f"payment {pk}: NowPayments says partially_paid (policy {should}); "
                    f"ours is {status} with {len(mine)} deposit(s) of {credit}"
                )
        elif provider_status != "refunded" and mine:
            books.wrong(f"payment {pk}: NowPayments says {provider_status}, yet it was credited")


# --- withdrawals ----------------------------------------------------------------------------


def _check_withdrawals(
    books: Books,
    withdrawals: list[tuple[Any, ...]],
    postings: list[tuple[Any, ...]],
    remote: list[dict[str, Any]],
    *,
    in_flight_ok: bool,
) -> None:
    by_withdrawal: dict[Any, Counter[str]] = defaultdict(Counter)
    amounts: dict[tuple[Any, str], list[tuple[Decimal, int]]] = defaultdict(list)
    for _pk, kind, user_id, amount, _payment_id, withdrawal_id in postings:
        if withdrawal_id is not None:
            by_withdrawal[withdrawal_id][kind] += 1
            amounts[(withdrawal_id, kind)].append((amount, user_id))
    payouts: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in remote:
        payouts[str(item.get("unique_external_id") or "")].append(item)
    ours = {row[1] for row in withdrawals}
    for external_id in payouts:
        if external_id and external_id not in ours:
            books.wrong(f"a payout for {external_id}, which is none of our withdrawals")
    for pk, internal_id, user_id, status, amount, batch_id in withdrawals:
        books.figures[f"withdrawal_{status}"] += 1
        kinds = by_withdrawal.get(pk, Counter())
        if kinds["withdrawal"] != 1:
            books.wrong(f"withdrawal {pk} ({status}) has {kinds['withdrawal']} WITHDRAWAL debits")
        refunds = 1 if status in REFUNDED_WITHDRAWALS else 0
        if kinds["refund"] != refunds:
            books.wrong(f"withdrawal {pk} ({status}) has {kinds['refund']} REFUND postings")
        for value, owner in amounts.get((pk, "withdrawal"), []):
            if value != -amount or owner != user_id:
                books.wrong(f"withdrawal {pk}'s debit is {value} of user {owner}")
        for value, owner in amounts.get((pk, "refund"), []):
            if value != amount or owner != user_id:
                books.wrong(f"withdrawal {pk}'s refund is {value} of user {owner}")
        if status in OPEN_WITHDRAWALS and not in_flight_ok:
            books.wrong(f"withdrawal {pk} is still {status}")
        items = payouts.get(internal_id, [])
        statuses = sorted(str(item["status"]) for item in items)
        books.figures["payouts"] += len(items)
        if len(items) > 1:
            books.wrong(f"withdrawal {pk} was sent {len(items)} times: {statuses}")
        if "FINISHED" in statuses and status in REFUNDED_WITHDRAWALS:
            books.wrong(f"withdrawal {pk} was paid out and refunded ({status})")
        if "FINISHED" in statuses and status == "processing" and not in_flight_ok:
            books.wrong(f"withdrawal {pk}'s payout finished, ours is still processing")
        if status == "completed" and batch_id and statuses != ["FINISHED"]:
            books.wrong(f"withdrawal {pk} is completed, its payout is {statuses}")
        if status == "failed" and batch_id and any(s == "FINISHED" for s in statuses):
            books.wrong(f"withdrawal {pk} failed, its payout finished")


# --- the ledger itself ----------------------------------------------------------------------


def _check_chains(books: Books, chains: list[tuple[Any, ...]]) -> None:
    for user_id, problem, detail in chains:
        books.wrong(f"user {user_id}: {problem} ({detail})")
    books.figures["chain_problems"] = len(chains)


def reconcile_env(
    database_url: str, sandbox_api_url: str, env: Mapping[str, str] | None
) -> dict[str, str]:
    base = (
        dict(env)
        if env is not None
        else {
            **os.environ,
            "DJANGO_DEBUG": "1",
            "NOWPAYMENTS_API_KEY": API_KEY,
            "NOWPAYMENTS_IPN_SECRET": IPN_SECRET,
            "NOWPAYMENTS_EMAIL": "merchant@sandbox.local",
            "NOWPAYMENTS_PASSWORD": "sandbox-password",
            "NOWPAYMENTS_TOTP_SECRET": TOTP_SECRET,
        }
    )
    base.update(
        DATABASE_URL=database_url,
        DATABASE_CONN_MAX_AGE="0",
        NOWPAYMENTS_API_URL=sandbox_api_url,
        NOWPAYMENTS_TIMEOUT="10",
    )
    return base


def _check_reconcile(
    books: Books, database_url: str, sandbox_api_url: str, env: Mapping[str, str] | None
) -> None:
    done = subprocess.run(
        [sys.executable, "manage.py", "reconcile", "--provider"],
        cwd=ROOT,
        env=reconcile_env(database_url, sandbox_api_url, env),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    books.reconcile_output = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        books.wrong(f"manage.py reconcile --provider exited {done.returncode}")
