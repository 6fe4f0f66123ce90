"""The cache behind the API's throttles and the sign-in lockouts, from one URL setting.

Throttle counters must be shared by every web worker, so the cache is a server (Redis) or, in
the embedded default, files under var/: never one process's memory, except in the tests' own
process, where each xdist worker keeps its counters to itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

KEY_PREFIX = "payments"
_REDIS_SCHEMES = ("redis", "rediss", "unix")


def cache_url(*, cache: str, redis: str, broker: str) -> str:
    """The URL in force: CACHE_URL, else REDIS_URL, else the broker's when it is Redis."""
    for url in (cache, redis):
        if url.strip():
            return url.strip()
    if urlsplit(broker).scheme in _REDIS_SCHEMES:
        return broker
    return ""


def cache_config(url: str, *, var_dir: Path, testing: bool) -> dict[str, Any]:
    """Django's settings of the default cache for ``url``.

    ``redis://``, ``rediss://`` and ``unix://`` name a Redis server, ``file:///abs/path`` a
    folder, ``locmem://`` this process's memory (tests and single-process runs only). With no
    URL: memory in tests, ``var/cache`` otherwise.
    """
    scheme = urlsplit(url).scheme if url else ""
    if scheme in _REDIS_SCHEMES:
        return {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "KEY_PREFIX": KEY_PREFIX,
            # A throttle check must not hang a request when Redis is slow or gone.
            "OPTIONS": {"socket_connect_timeout": 1.0, "socket_timeout": 1.0},
        }
    if scheme == "file":
        return _file_cache(Path(urlsplit(url).path))
    if scheme == "locmem" or (not url and testing):
        return {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "payments",
            "KEY_PREFIX": KEY_PREFIX,
        }
    if url:
        raise RuntimeError(
            f"CACHE_URL must start with redis://, rediss://, unix://, file:// or locmem://; "
            f"got {url.split(':', 1)[0]!r}."
        )
    return _file_cache(var_dir / "cache")


def _file_cache(folder: Path) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
        "LOCATION": str(folder),
        "KEY_PREFIX": KEY_PREFIX,
        # Throttle windows are short; culling keeps the folder small under a flood.
        "OPTIONS": {"MAX_ENTRIES": 20000},
    }
