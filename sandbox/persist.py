"""The state across restarts (``--state-file``): a JSON snapshot, written atomically.

Everything but JWTs, faults and request counts is kept: payments, invoices, payout batches
and withdrawals, the scheduled steps, the IPN log (unsent notifications are queued again),
the clock offset, the id sequences, quirks and balances. Decimal amounts are stored as
strings, so they come back exactly; timestamps are floats (``repr`` round-trips them).
"""

from __future__ import annotations

import contextlib
import heapq
import json
import logging
import os
import tempfile
import threading
import time
from dataclasses import fields
from decimal import Decimal
from pathlib import Path
from typing import Any

from sandbox.models import Batch, Invoice, IpnDelivery, Payment, Withdrawal
from sandbox.state import QUIRK_CHOICES, SandboxState

logger = logging.getLogger(__name__)

FORMAT = 1
SAVE_INTERVAL = 0.25  # seconds between checks for changes: a change is on disk within ~0.3 s
_SKIPPED = frozenset({"status_cache", "outcome_cache", "payload"})  # derived values


def _dump(record: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for spec in fields(record):
        if spec.name in _SKIPPED:
            continue
        value = getattr(record, spec.name)
        if isinstance(value, Decimal):
            value = str(value)
        elif isinstance(value, list):
            value = list(value)
        out[spec.name] = value
    return out


def _load(kind: type, data: dict[str, Any]) -> Any:
    values: dict[str, Any] = {}
    for spec in fields(kind):
        if spec.name not in data or spec.name in _SKIPPED:
            continue
        value = data[spec.name]
        if value is not None and "Decimal" in str(spec.type):
            value = Decimal(value)
        values[spec.name] = value
    return kind(**values)


def snapshot(state: SandboxState) -> tuple[int, dict[str, Any]]:
    """(revision, JSON-ready state), taken under the state lock."""
    with state.lock:
        return state.revision, {
            "format": FORMAT,
            "clock": {"offset": state.clock.offset, "now": state.now()},
            "next_ids": dict(state._next_ids),
            "seq": state._seq,
            "quirks": dict(state.quirks),
            "balance_seed": {code: str(amount) for code, amount in state.balance_seed.items()},
            "payments": [_dump(state.payments[i]) for i in state.payment_order],
            "invoices": [_dump(record) for record in state.invoices.values()],
            "batches": [_dump(record) for record in state.batches.values()],
            "withdrawals": [_dump(record) for record in state.withdrawals.values()],
            "events": [list(event) for event in state.events],
            "deliveries": [_dump(record) for record in state.deliveries.values()],
        }


def restore(state: SandboxState, data: dict[str, Any]) -> None:
    """Replace the state with a snapshot. The clock keeps its offset and never goes back."""
    if data.get("format") != FORMAT:
        raise ValueError(f"unsupported sandbox state format {data.get('format')!r}")
    with state.lock:
        state.clear()
        clock = data["clock"]
        offset = max(float(clock["offset"]), float(clock["now"]) - time.time(), 0.0)
        state.clock.advance(offset)
        for kind, value in data["next_ids"].items():
            state._next_ids[kind] = max(int(value), state._next_ids.get(kind, 0))
        state._seq = max(int(data["seq"]), state._seq)
        state.quirks.update({k: v for k, v in data["quirks"].items() if k in QUIRK_CHOICES})
        state.balance_seed.update({k: Decimal(v) for k, v in data["balance_seed"].items()})
        for raw in data["payments"]:
            state.add_payment(_load(Payment, raw))
        for raw in data["invoices"]:
            record = _load(Invoice, raw)
            state.invoices[record.id] = record
        for raw in data["batches"]:
            record = _load(Batch, raw)
            state.batches[record.id] = record
        for raw in data["withdrawals"]:
            record = _load(Withdrawal, raw)
            state.withdrawals[record.id] = record
        state.events = [tuple(event) for event in data["events"]]  # type: ignore[misc]
        heapq.heapify(state.events)
        for raw in data["deliveries"]:
            delivery = _load(IpnDelivery, {**raw, "payload": None})
            delivery.payload = json.loads(delivery.body, parse_float=Decimal)
            state.deliveries[delivery.id] = delivery
            # unsent, or cut off mid-attempt by the stop: send (again) after the restart
            if not delivery.delivered and delivery.attempts <= state.config.ipn_retries:
                state.queue_delivery(delivery, delivery.next_attempt_at or state.now())
        state.quirk_generation += 1


def load(path: Path) -> dict[str, Any] | None:
    """The snapshot in ``path``; None if the file is missing or empty."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    if not text.strip():
        return None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"sandbox state file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"sandbox state file {path} does not hold a JSON object")
    return data


def write_atomic(path: Path, text: str) -> None:
    """Write to a temporary file in the same directory, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


class Persister(threading.Thread):
    """Saves the state whenever its revision moved (checked every SAVE_INTERVAL); stop()
    writes a last time, so a clean shutdown (SIGTERM, Ctrl-C) loses nothing."""

    def __init__(self, state: SandboxState, path: Path, interval: float = SAVE_INTERVAL) -> None:
        super().__init__(name="sandbox-persist", daemon=True)
        self.state = state
        self.path = path
        self.interval = interval
        self.stopping = threading.Event()
        self._saved: int | None = None  # nothing written yet: the first check writes
        self._write_lock = threading.Lock()

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            try:
                self.flush()
            except Exception:
                logger.exception("could not save the sandbox state to %s", self.path)

    def flush(self) -> bool:
        """Write the state if it changed since the last write; True if it wrote."""
        with self._write_lock:
            if self._saved is not None and self._saved == self.state.revision:
                return False
            revision, data = snapshot(self.state)
            write_atomic(self.path, json.dumps(data, ensure_ascii=False, separators=(",", ":")))
            self._saved = revision
            return True

    def stop(self) -> None:
        self.stopping.set()
        if self.is_alive():
            self.join(5)
        self.flush()
