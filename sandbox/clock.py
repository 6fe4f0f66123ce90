"""The sandbox clock: real time plus an offset that the control API can move forward."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime


class SandboxClock:
    """Seconds since the epoch, like ``time.time()``, but skippable forward for tests."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        return time.time() + self._offset

    @property
    def offset(self) -> float:
        return self._offset

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("the sandbox clock only moves forward")
        with self._lock:
            self._offset += seconds
        return self.now()

    def reset(self) -> None:
        with self._lock:
            self._offset = 0.0


def iso(timestamp: float | None) -> str | None:
    """``2020-12-22T15:00:22.742Z``: UTC, milliseconds, a ``Z`` suffix, as NowPayments writes."""
    if timestamp is None:
        return None
    moment = datetime.fromtimestamp(timestamp, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_date(text: str, *, end_of_day: bool = False) -> float:
    """Parse ``YYYY-MM-DD`` or a full ISO timestamp (``Z`` allowed) to epoch seconds.

    A bare date means the start of that UTC day, or its last millisecond with ``end_of_day``.
    """
    value = text.strip()
    if len(value) == 10:
        day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
        return day.timestamp() + (86400 - 0.001 if end_of_day else 0)
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
