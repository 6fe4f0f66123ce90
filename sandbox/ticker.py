"""Applies what falls due on the sandbox clock: case steps, expiries, payout auto-rejection."""

from __future__ import annotations

import logging
import threading

from sandbox import payment_flow, payout_flow
from sandbox.state import SandboxState

logger = logging.getLogger(__name__)


def process_due(state: SandboxState) -> int:
    """Apply every event due by now, oldest first; returns how many were applied."""
    applied = 0
    with state.lock:
        now = state.now()
        while (event := state.pop_due(now)) is not None:
            due, kind, object_id, token = event
            if kind == "payout_reject":
                payout_flow.reject_unverified(state, object_id, due)
            else:
                payment = state.payments.get(object_id)
                if payment is None:
                    continue
                if kind == "payment_step":
                    payment_flow.autoplay_step(state, payment, due, token)
                elif kind == "payment_expire":
                    payment_flow.expire_due(state, payment, due)
            applied += 1
        if applied:
            state.mark_changed()
    return applied


class Ticker(threading.Thread):
    """Calls process_due every ``interval`` seconds until stopped."""

    def __init__(self, state: SandboxState, interval: float) -> None:
        super().__init__(name="sandbox-ticker", daemon=True)
        self.state = state
        self.interval = interval
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            try:
                process_due(self.state)
            except Exception:
                logger.exception("sandbox ticker failed to apply an event")

    def stop(self) -> None:
        self.stopping.set()
