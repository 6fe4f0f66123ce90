"""Rate limits of the interface: lockouts after failed sign-ins (the pages' login form, the
API's keys) and the per-user rates of the creates (deposits, withdrawals, API keys).

Counters live in the default cache (project/caches.py), shared by every web worker, in fixed
windows: a key names its window, so a count never outlives it. A cache that cannot be reached
lets requests through (and says so in the log) rather than refusing every sign-in.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache
from django.http import HttpRequest
from redis.exceptions import RedisError
from rest_framework.throttling import BaseThrottle

logger = logging.getLogger(__name__)

_CACHE_ERRORS = (RedisError, OSError)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([smhd])[a-z]*\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Rate:
    count: int
    seconds: int


def parse_rate(text: str) -> Rate:
    """``"10/min"``, ``"5/15m"``, ``"100/day"`` -> a count per period."""
    match = _RATE.match(text or "")
    if match is None or int(match[1]) < 1:
        raise ValueError(f"A rate reads like 10/min or 100/day, not {text!r}.")
    periods = int(match[2] or 1)
    return Rate(count=int(match[1]), seconds=max(periods, 1) * _UNITS[match[3].lower()])


def client_address(request: HttpRequest) -> str:
    """The client's address as the nearest trusted proxy saw it (REST_FRAMEWORK NUM_PROXIES)."""
    return str(BaseThrottle().get_ident(request))  # type: ignore[arg-type]


# --- the creates ---------------------------------------------------------------------------


def create_rate_wait(request: HttpRequest, scope: str) -> float | None:
    """Count one create of ``scope`` by this user (or client); the seconds to wait if it is
    over the scope's rate (PAYMENTS_THROTTLE_RATES), else None."""
    rates: dict[str, str] = getattr(settings, "PAYMENTS_THROTTLE_RATES", {})
    if scope not in rates:
        return None
    rate = parse_rate(rates[scope])
    user_id = getattr(request.user, "pk", None) if hasattr(request, "user") else None
    who = f"user:{user_id}" if user_id is not None else f"addr:{client_address(request)}"
    return _window_hit(f"rate:{scope}:{who}", rate)


# --- failed sign-ins -------------------------------------------------------------------------


def auth_failures_exceeded(request: HttpRequest, username: str | None) -> bool:
    """Whether sign-ins from this client (or for this username) are locked out for now."""
    return auth_lockout_remaining(request, username) > 0


def auth_lockout_remaining(request: HttpRequest, username: str | None) -> float:
    """Seconds until this client and this username may sign in again (0: they may now)."""
    now = time.time()
    try:
        ends = _cache().get_many([_lock_key(s) for s in _subjects(request, username)])
    except _CACHE_ERRORS:
        logger.warning("the cache is unreachable: sign-in lockouts are not checked")
        return 0.0
    return max([0.0, *(float(end) - now for end in ends.values())])


def auth_failure_record(request: HttpRequest, username: str | None) -> None:
    """Count one failed sign-in of this client and this username; at the limit
    (PAYMENTS_AUTH_FAILURE_LIMIT in PAYMENTS_AUTH_FAILURE_WINDOW_SECONDS) lock them out for
    PAYMENTS_AUTH_LOCKOUT_SECONDS."""
    limit = max(int(settings.PAYMENTS_AUTH_FAILURE_LIMIT), 1)
    # The failure that reaches the limit is the one that locks.
    window = Rate(
        count=limit - 1, seconds=max(int(settings.PAYMENTS_AUTH_FAILURE_WINDOW_SECONDS), 1)
    )
    lockout = max(int(settings.PAYMENTS_AUTH_LOCKOUT_SECONDS), 1)
    for subject in _subjects(request, username):
        if _window_hit(f"authfail:{subject}", window) is None:
            continue
        try:
            _cache().set(_lock_key(subject), time.time() + lockout, timeout=lockout)
        except _CACHE_ERRORS:
            logger.warning("the cache is unreachable: a sign-in lockout was not stored")
            continue
        logger.warning("sign-in locked out for %d s: %s", lockout, subject.split(":", 1)[0])


def _subjects(request: HttpRequest, username: str | None) -> list[str]:
    """What failures are counted against: the client address, and the username if any."""
    subjects = [f"addr:{_digest(client_address(request))}"]
    name = (username or "").strip().casefold()
    if name:
        subjects.append(f"user:{_digest(name)}")
    return subjects


def _cache() -> BaseCache:
    return caches["default"]


def _lock_key(subject: str) -> str:
    return f"authlock:{subject}"


def _digest(text: str) -> str:
    """Cache keys stay short and printable whatever the client sent."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


# --- fixed-window counters -------------------------------------------------------------------


def _window_hit(name: str, rate: Rate) -> float | None:
    """Count one event in the current window of ``rate``; the seconds left in the window if
    this event is over the count, else None."""
    now = time.time()
    window = int(now // rate.seconds)
    left = (window + 1) * rate.seconds - now
    key = f"{name}:{window}"
    timeout = math.ceil(left) + 1
    cache = _cache()
    try:
        cache.add(key, 0, timeout=timeout)
        try:
            count = cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, timeout=timeout)
            count = 1
        if not isinstance(cache, RedisCache | LocMemCache):
            # Other backends' incr is a get and a set that resets the expiry: put it back.
            cache.touch(key, timeout=timeout)
    except _CACHE_ERRORS:
        logger.warning("the cache is unreachable: %s is not rate-limited", name.split(":", 1)[0])
        return None
    if count > rate.count:
        return float(max(math.ceil(left), 1))
    return None
