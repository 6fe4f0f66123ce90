"""The throttle state is shared by every web worker: two gunicorn workers on Redis count one
lockout and one create rate between them. And the cache settings read from the environment."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from payments.services.api_keys import api_key_create
from project.caches import cache_config, cache_url
from tests.workers.processes import (
    BIN,
    REDIS_HOST,
    Processes,
    broker_url,
    flush_broker,
    free_port,
    process_env,
    redis_db,
    wait_until,
)

WORKERS = 2


@pytest.fixture
def web(sandbox: Any) -> Iterator[str]:
    """gunicorn with two workers, its cache the test's Redis database."""
    flush_broker()
    port = free_port()
    procs = Processes(
        process_env(
            sandbox,
            CACHE_URL=broker_url(),
            PAYMENTS_AUTH_FAILURE_LIMIT="4",
            PAYMENTS_THROTTLE_DEPOSIT_CREATE="3/min",
        )
    )
    procs._start(
        "web",
        [
            str(BIN / "gunicorn"),
            "project.wsgi",
            "--bind",
            f"{REDIS_HOST}:{port}",
            "--workers",
            str(WORKERS),
            "--access-logfile",
            "-",
        ],
    )
    base = f"http://{REDIS_HOST}:{port}"

    def answers() -> bool:
        try:
            urllib.request.urlopen(f"{base}/payments/api/schema/", timeout=2)  # noqa: S310 - ours
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False
        return True

    try:
        wait_until(answers, timeout=30, what="gunicorn", logs=procs)
        yield base
    finally:
        procs.stop_all()
        flush_broker()


def _call(url: str, *, key: str, body: dict[str, Any] | None = None) -> tuple[int, str]:
    """One request on a connection of its own (so gunicorn may hand it to either worker)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(  # noqa: S310 - our own http://127.0.0.1 URL
        url,
        data=data,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST" if body is not None else "GET",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, ""
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())["code"]


@pytest.mark.django_db(transaction=True)
def test_two_workers_share_the_lockout_and_the_create_rate(web, user, usdt):
    key = api_key_create(user_id=user.pk, name="shared")[1]
    wrong = "pk_000000000000_" + "x" * 43
    answers = [_call(f"{web}/payments/api/balance/", key=wrong) for _ in range(6)]
    assert answers == [(401, "authentication_failed")] * 4 + [(429, "throttled")] * 2
    locks = redis.Redis(host=REDIS_HOST, port=6379, db=redis_db()).keys("payments:*authlock*")
    assert locks, "the lockout is in Redis, where every worker sees it"
    flush_broker()  # lift the lockout (and start the rate counts afresh)
    deposit = {"amount_usd": "25.00", "currency": "USDTTRC20"}
    created = [_call(f"{web}/payments/api/payments/", key=key, body=deposit) for _ in range(6)]
    assert [status for status, _ in created] == [201, 201, 201, 429, 429, 429]


def test_the_cache_follows_the_environment(tmp_path: Path):
    assert cache_url(cache="", redis="", broker="redis://h:6379/3") == "redis://h:6379/3"
    assert cache_url(cache="", redis="redis://r/1", broker="redis://h/3") == "redis://r/1"
    assert cache_url(cache="file:///tmp/c", redis="redis://r/1", broker="") == "file:///tmp/c"
    assert cache_url(cache="", redis="", broker="filesystem://localhost/") == ""
    redis_cache = cache_config("redis://h:6379/3", var_dir=tmp_path, testing=False)
    assert redis_cache["BACKEND"].endswith("RedisCache")
    embedded = cache_config("", var_dir=tmp_path, testing=False)
    assert embedded["BACKEND"].endswith("FileBasedCache")
    assert embedded["LOCATION"] == str(tmp_path / "cache")
    assert (tmp_path / "cache").is_dir()
    assert cache_config("", var_dir=tmp_path, testing=True)["BACKEND"].endswith("LocMemCache")
    with pytest.raises(RuntimeError, match="CACHE_URL"):
        cache_config("memcached://h", var_dir=tmp_path, testing=False)
