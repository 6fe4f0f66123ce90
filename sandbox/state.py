"""The sandbox's in-memory state, guarded by one lock, plus quirks, faults and the IPN queue."""

from __future__ import annotations

import heapq
import secrets
import threading
import time
from collections import Counter
from decimal import Decimal
from typing import Any

from sandbox import bodies, catalogue, jsjson
from sandbox.clock import SandboxClock
from sandbox.config import SandboxConfig
from sandbox.errors import ControlError
from sandbox.models import (
    FINISHED,
    PARTIALLY_PAID,
    PAYMENT_IN_FLIGHT,
    PAYOUT_RELEASED,
    Batch,
    Invoice,
    IpnDelivery,
    Payment,
    Withdrawal,
)

IPN_LANES = 4

# Switchable behaviours where the sources disagree (spec 10). Values listed first are defaults.
QUIRK_CHOICES: dict[str, tuple[Any, ...]] = {
    "pay_amount_as_string": (False, True),
    "merchant_coins_key": ("selectedCurrencies", "currencies"),
    "failure_case_name": ("both", "failed", "failure"),
    "payout_timestamps": ("mixed", "snake"),
    "ipn_arrays_as_objects": (False, True),
    "payment_status_requires_jwt": (False, True),
    "redeposit_status": ("partially_paid", "finished"),
}
FAULT_MODES = ("http_500", "http_429", "timeout", "malformed_json")


def _id_base(offset: int) -> int:
    """10-digit ids that keep growing across restarts, so a demo database never sees reuse."""
    return offset + int(time.time() * 10) % 900_000_000


class SandboxState:
    """Everything the simulator knows. Hold ``lock`` (re-entrant) while reading or writing."""

    def __init__(self, config: SandboxConfig, clock: SandboxClock | None = None) -> None:
        self.config = config
        self.clock = clock or SandboxClock()
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.jwt_secret = secrets.token_bytes(32)
        # Id sequences survive /_sandbox/reset on purpose (see _id_base).
        self._next_ids = {
            "payment": _id_base(4_000_000_000),
            "purchase": _id_base(5_000_000_000),
            "invoice": _id_base(6_000_000_000),
            "payout": _id_base(7_000_000_000),  # withdrawals (payout items)
            "batch": _id_base(8_000_000_000),  # payout batches: another id space
            "ipn": 1,
        }
        self._seq = 0
        self.quirk_generation = 0
        self.revision = 0  # bumped on every change; the persister saves when it moves
        self.clear()

    # -- lifecycle ----------------------------------------------------------------------------

    def clear(self) -> None:
        """Forget every record, quirk, fault and count; the clock goes back to real time."""
        with self.lock:
            self.clock.reset()
            self.quirks: dict[str, Any] = {k: v[0] for k, v in QUIRK_CHOICES.items()}
            self.quirk_generation += 1
            self.payments: dict[int, Payment] = {}
            self.payment_order: list[int] = []  # creation order, which is created_at order
            self.created_index: list[float] = []  # created_at of payment_order, for bisect
            self.invoices: dict[int, Invoice] = {}
            self.batches: dict[int, Batch] = {}
            self.withdrawals: dict[int, Withdrawal] = {}
            self.events: list[tuple[float, int, str, int, int]] = []
            self.deliveries: dict[int, IpnDelivery] = {}
            self.lanes: list[list[tuple[float, int, int]]] = [[] for _ in range(IPN_LANES)]
            self.faults: list[dict[str, Any]] = []
            self.request_counts: Counter[str] = Counter()
            self.balance_seed = {
                c.code: c.round_down(
                    catalogue.convert(catalogue.INITIAL_BALANCE_USD, "usd", c.code)
                )
                for c in catalogue.CURRENCIES
                if c.enable
            }
            self.changed.notify_all()

    def mark_changed(self) -> None:
        with self.lock:
            self.revision += 1

    def next_id(self, kind: str) -> int:
        with self.lock:
            value = self._next_ids[kind]
            self._next_ids[kind] = value + 1
            return value

    def now(self) -> float:
        return self.clock.now()

    # -- scheduling -------------------------------------------------------------------------

    def schedule(self, due: float, kind: str, object_id: int, token: int = 0) -> None:
        with self.lock:
            self._seq += 1
            heapq.heappush(self.events, (due, self._seq, kind, object_id, token))

    def pop_due(self, now: float) -> tuple[float, str, int, int] | None:
        with self.lock:
            if self.events and self.events[0][0] <= now:
                due, _, kind, object_id, token = heapq.heappop(self.events)
                return due, kind, object_id, token
            return None

    # -- quirks and faults ------------------------------------------------------------------

    def set_quirks(self, changes: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            for name, value in changes.items():
                if name not in QUIRK_CHOICES:
                    raise ControlError(400, "unknown_quirk", f"unknown quirk {name!r}")
                if value not in QUIRK_CHOICES[name] or type(value) is not type(
                    QUIRK_CHOICES[name][0]
                ):
                    choices = ", ".join(repr(c) for c in QUIRK_CHOICES[name])
                    raise ControlError(400, "bad_quirk", f"{name} must be one of {choices}")
            self.quirks.update(changes)
            self.quirk_generation += 1
            return dict(self.quirks)

    def add_fault(
        self, mode: str, count: int, path: str | None, delay: float, method: str | None = None
    ) -> dict[str, Any]:
        if mode not in FAULT_MODES:
            raise ControlError(400, "bad_fault", f"mode must be one of {', '.join(FAULT_MODES)}")
        if count < 1:
            raise ControlError(400, "bad_fault", "count must be at least 1")
        fault = {"mode": mode, "remaining": count, "path": path, "method": method, "delay": delay}
        with self.lock:
            self.faults.append(fault)
        return dict(fault)

    def take_fault(self, method: str, path: str) -> dict[str, Any] | None:
        """The first queued fault for this call (its path prefix and method, when it names
        them), counted down; None if no fault applies."""
        with self.lock:
            for fault in self.faults:
                if fault["method"] not in (None, method):
                    continue
                if fault["path"] is None or path.startswith(fault["path"]):
                    fault["remaining"] -= 1
                    if fault["remaining"] <= 0:
                        self.faults.remove(fault)
                    return dict(fault)
            return None

    # -- payments -----------------------------------------------------------------------------

    def add_payment(self, payment: Payment) -> None:
        with self.lock:
            self.payments[payment.id] = payment
            self.payment_order.append(payment.id)
            self.created_index.append(payment.created_at)

    def payment(self, payment_id: int) -> Payment:
        with self.lock:
            found = self.payments.get(payment_id)
        if found is None:
            raise ControlError(404, "not_found", f"payment {payment_id} not found")
        return found

    def status_json(self, payment: Payment) -> str:
        """The payment's status body, serialised once per change (list pages reuse it)."""
        cached = payment.status_cache
        if cached is not None and cached[0] == self.quirk_generation:
            return cached[1]
        text = jsjson.dumps(
            bodies.payment_status(payment, pay_amount_as_string=self.quirks["pay_amount_as_string"])
        )
        payment.status_cache = (self.quirk_generation, text)
        return text

    def balances(self) -> dict[str, dict[str, Decimal]]:
        """Seed + settled payments - live payouts; in-flight payments are pending (spec 2.11)."""
        with self.lock:
            amount = dict(self.balance_seed)
            pending = dict.fromkeys(amount, Decimal(0))
            for payment in self.payments.values():
                code = payment.outcome_currency
                if code not in amount:
                    continue
                if payment.status in (FINISHED, PARTIALLY_PAID):
                    amount[code] += bodies.outcome_amount(payment)
                elif payment.status in PAYMENT_IN_FLIGHT:
                    pending[code] += bodies.outcome_amount(payment)
            for item in self.withdrawals.values():
                if item.status not in PAYOUT_RELEASED and item.currency in amount:
                    amount[item.currency] -= item.amount
            return {
                code: {"amount": amount[code], "pendingAmount": pending[code]} for code in amount
            }

    # -- IPN queue ----------------------------------------------------------------------------

    def emit_ipn(
        self, *, kind: str, object_id: int, status: str, url: str | None, payload: dict[str, Any]
    ) -> IpnDelivery | None:
        """Queue one signed notification; nothing without a URL or an IPN secret (spec 4.1)."""
        if not url or not self.config.ipn_secret:
            return None
        with self.lock:
            signature = jsjson.sign(
                payload,
                self.config.ipn_secret,
                arrays_as_objects=self.quirks["ipn_arrays_as_objects"],
            )
            delivery = IpnDelivery(
                id=self.next_id("ipn"),
                kind=kind,
                object_id=object_id,
                status=status,
                url=url,
                body=jsjson.dumps(payload),
                signature=signature,
                payload=payload,
                created_at=self.now(),
            )
            self.deliveries[delivery.id] = delivery
            self.queue_delivery(delivery, self.now())
            return delivery

    def queue_delivery(self, delivery: IpnDelivery, due: float) -> None:
        with self.lock:
            self._seq += 1
            delivery.next_attempt_at = due
            heapq.heappush(
                self.lanes[delivery.object_id % IPN_LANES], (due, self._seq, delivery.id)
            )
            self.changed.notify_all()
