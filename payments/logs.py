"""Quiet repeats: a warning that recurs every cycle for the same subject is logged once an hour.

A provider refusal that repeats on every poll (NowPayments down, or a payment it no longer
knows) would otherwise print the same lines every few seconds. ``RepeatLimiter`` remembers, per
process, when each (event, subject) pair was last logged at WARNING; repeats within the window
go to DEBUG and are counted, and the count is reported when the window rolls over or the subject
recovers. ``CycleWarnings`` groups one cycle's warnings of one event: the first few new subjects
get a line each, the rest one summary line, and recoveries one line for all of them.
``RepeatFilter`` does the same for a log message emitted by code that cannot hold a limiter.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

HOUR = 3600.0
# Subjects remembered per process; the oldest are forgotten first (and warned about again).
MAX_KEYS = 10_000
# New subjects logged one by one per cycle; the others are summed up in one line.
CYCLE_LINES = 3


@dataclass(frozen=True)
class Hit:
    """One occurrence: whether to log it at WARNING, and the repeats not logged before it."""

    log: bool
    repeats: int = 0


@dataclass
class _Seen:
    logged_at: float
    repeats: int = 0


class RepeatLimiter:
    """Process-local memory of which (event, subject) warnings were logged, and when."""

    def __init__(
        self,
        *,
        window_seconds: float = HOUR,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = MAX_KEYS,
    ) -> None:
        self.window = window_seconds
        self.clock = clock
        self.max_keys = max_keys
        self._seen: OrderedDict[tuple[str, str], _Seen] = OrderedDict()
        self._lock = threading.Lock()

    def hit(self, event: str, subject: str) -> Hit:
        """Record an occurrence: log it if the pair is new or its window has rolled over."""
        now = self.clock()
        key = (event, subject)
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and now - seen.logged_at < self.window:
                seen.repeats += 1
                return Hit(log=False)
            repeats = seen.repeats if seen is not None else 0
            self._seen[key] = _Seen(logged_at=now)
            self._seen.move_to_end(key)
            while len(self._seen) > self.max_keys:
                self._seen.popitem(last=False)
            return Hit(log=True, repeats=repeats)

    def clear(self, event: str, subject: str) -> int | None:
        """The subject is fine again: forget it. Returns the repeats not logged (None: unknown)."""
        with self._lock:
            seen = self._seen.pop((event, subject), None)
        return None if seen is None else seen.repeats

    def active(self, event: str) -> int:
        """How many subjects of ``event`` are being held back (for tests and summaries)."""
        with self._lock:
            return sum(1 for name, _ in self._seen if name == event)


class CycleWarnings:
    """One cycle's warnings of one event, e.g. "status of provider payment %s not read: %s".

    ``refused(subject, reason)`` for each failure, ``recovered(subject)`` for each success of a
    subject that may have failed before, then ``flush()`` once at the end of the cycle.
    """

    def __init__(
        self,
        logger: logging.Logger,
        limiter: RepeatLimiter,
        event: str,
        message: str,
        *,
        lines: int = CYCLE_LINES,
    ) -> None:
        self.logger = logger
        self.limiter = limiter
        self.event = event
        self.message = message  # two %s: the subject, the reason
        self.lines = lines
        self._logged = 0
        self._more: dict[str, list[str]] = {}
        self._recovered = 0
        self._recovered_repeats = 0

    def refused(self, subject: str, reason: str) -> None:
        hit = self.limiter.hit(self.event, subject)
        if not hit.log:
            self.logger.debug(self.message + " (repeat)", subject, reason, stacklevel=2)
            return
        if self._logged < self.lines:
            self._logged += 1
            suffix = f" (and {hit.repeats} times in the last hour)" if hit.repeats else ""
            self.logger.warning(self.message + suffix, subject, reason, stacklevel=2)
            return
        self.logger.debug(self.message, subject, reason, stacklevel=2)
        self._more.setdefault(reason, []).append(subject)

    def recovered(self, subject: str) -> None:
        repeats = self.limiter.clear(self.event, subject)
        if repeats is not None:
            self._recovered += 1
            self._recovered_repeats += repeats

    def flush(self) -> None:
        for reason, subjects in self._more.items():
            self.logger.warning(
                "%s: %d more (%s), e.g. %s; each is logged again after an hour",
                self.event,
                len(subjects),
                reason,
                ", ".join(subjects[:3]),
                stacklevel=2,
            )
        if self._recovered:
            self.logger.info(
                "%s: %d recovered (%d repeated failures were not logged)",
                self.event,
                self._recovered,
                self._recovered_repeats,
                stacklevel=2,
            )
        self._more = {}
        self._logged = self._recovered = self._recovered_repeats = 0


_DIGITS = re.compile(r"\d+")


class RepeatFilter(logging.Filter):
    """A logging filter holding back, for an hour, repeats of one message of one logger.

    For messages logged by code that cannot hold a limiter of its own. ``template``: a message
    template (the NowPayments client's "failed; retry" line, emitted per request); its
    arguments with numbers blanked (ids, retry counts, delays) make the key, so "GET
    /payment/123 failed (ConnectionError); retry 2/3 in 0.51 s" and the same for payment 456
    are one repeat. ``contains``: a fixed part of a message built without a template (Celery's
    own warnings); every such message is one repeat. Other messages pass untouched.
    """

    def __init__(
        self, template: str = "", contains: str = "", window_seconds: float = HOUR
    ) -> None:
        super().__init__()
        self.template = template
        self.contains = contains
        self.limiter = RepeatLimiter(window_seconds=window_seconds)

    def _key(self, record: logging.LogRecord) -> str | None:
        if record.levelno < logging.WARNING:
            return None
        if self.template and record.msg == self.template:
            args = record.args if isinstance(record.args, tuple) else ()
            return _DIGITS.sub("#", " ".join(str(arg) for arg in args))
        if self.contains and self.contains in str(record.msg):
            return self.contains
        return None

    def filter(self, record: logging.LogRecord) -> bool:
        key = self._key(record)
        if key is None:
            return True
        hit = self.limiter.hit(self.template or self.contains, key)
        if hit.log:
            if hit.repeats:
                record.msg = f"{record.msg} (and {hit.repeats} times in the last hour)"
            return True
        # A repeat: kept only where this logger's DEBUG lines are wanted, as a DEBUG line.
        if not logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
            return False
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True
