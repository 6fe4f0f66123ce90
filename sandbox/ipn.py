"""IPN delivery: background threads POST queued notifications and retry the failures."""

from __future__ import annotations

import heapq
import logging
import threading
import time

import requests

from sandbox.models import IpnDelivery
from sandbox.state import IPN_LANES, SandboxState

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "x-nowpayments-sig"
IDLE_WAIT = 0.05  # the sandbox clock can jump, so never sleep long on a stale due time


class IpnLane(threading.Thread):
    """Delivers one lane's notifications in order of due time.

    A payment always maps to the same lane, so first attempts for one payment go out in status
    order; retries are rescheduled and may arrive after later statuses, as in real life.
    """

    def __init__(self, state: SandboxState, lane: int) -> None:
        super().__init__(name=f"sandbox-ipn-{lane}", daemon=True)
        self.state = state
        self.lane = lane
        self.stopping = threading.Event()
        self.session = requests.Session()
        self.session.trust_env = False  # never route callbacks through an environment proxy

    def run(self) -> None:
        while not self.stopping.is_set():
            delivery = self._next()
            if delivery is not None:
                self._attempt(delivery)

    def stop(self) -> None:
        self.stopping.set()
        with self.state.changed:
            self.state.changed.notify_all()

    def _next(self) -> IpnDelivery | None:
        state = self.state
        with state.changed:
            queue = state.lanes[self.lane]
            now = state.now()
            if queue and queue[0][0] <= now:
                _, _, delivery_id = heapq.heappop(queue)
                delivery = state.deliveries.get(delivery_id)
                if delivery is not None:
                    delivery.next_attempt_at = None
                return delivery
            wait = IDLE_WAIT if not queue else min(IDLE_WAIT, queue[0][0] - now)
            state.changed.wait(max(wait, 0.001))
            return None

    def _attempt(self, delivery: IpnDelivery) -> None:
        config = self.state.config
        started = time.monotonic()
        outcome: int | str
        try:
            response = self.session.post(
                delivery.url,
                data=delivery.body.encode("utf-8"),
                headers={
                    "Content-Type": "application/json",
                    SIGNATURE_HEADER: delivery.signature,
                    "User-Agent": "NOWPayments-sandbox-simulator",
                },
                timeout=config.ipn_timeout,
                allow_redirects=False,
            )
            outcome = response.status_code
            response.close()
            ok = 200 <= response.status_code < 300
            if time.monotonic() - started > config.ipn_timeout:
                outcome, ok = "timeout", False
        except requests.Timeout:
            outcome, ok = "timeout", False
        except requests.RequestException as exc:
            outcome, ok = f"error: {type(exc).__name__}", False
        with self.state.changed:
            if self.state.deliveries.get(delivery.id) is not delivery:
                return  # the sandbox was reset meanwhile
            delivery.attempts += 1
            delivery.responses.append(outcome)
            delivery.delivered = ok
            self.state.revision += 1  # the delivery log is part of the persisted state
            if not ok and delivery.attempts <= config.ipn_retries:
                due = self.state.now() + config.ipn_retry_interval
                self.state.queue_delivery(delivery, due)
            else:
                self.state.changed.notify_all()
        logger.debug(
            "IPN %s for %s %s: %s", delivery.id, delivery.kind, delivery.object_id, outcome
        )


class IpnDispatcher:
    """Owns the lane threads."""

    def __init__(self, state: SandboxState) -> None:
        self.lanes = [IpnLane(state, lane) for lane in range(IPN_LANES)]

    def start(self) -> None:
        for lane in self.lanes:
            lane.start()

    def stop(self, timeout: float = 5.0) -> None:
        for lane in self.lanes:
            lane.stop()
        deadline = time.monotonic() + timeout
        for lane in self.lanes:
            lane.join(max(deadline - time.monotonic(), 0))
            lane.session.close()
