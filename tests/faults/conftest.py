"""Fixtures of the fault suite: a private redis-server per test, and the stack running on it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.faults.private_redis import PrivateRedis
from tests.faults.stack import FaultStack, fault_stack
from tests.workers.processes import app_database_url


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture
def stack(transactional_db: Any, sandbox: Any, private_redis: PrivateRedis) -> Iterator[FaultStack]:
    """Nothing started yet: the scenario sets intervals and env, then starts what it needs.

    The test database as the application role, the private redis-server as the broker, the
    sandbox as NowPayments, payouts enabled. Stopped before the database is flushed.
    """
    sandbox.control.set_balance("usdttrc20", "1000000")
    with fault_stack(
        database_url=app_database_url(),
        broker_url=private_redis.url,
        sandbox=sandbox,
        PAYMENTS_PAYOUTS_ENABLED="1",
        PAYMENTS_PAYOUT_FAILED_SETTLE_SECONDS="1",
        PAYMENTS_PAYOUT_UNSENT_RETRY_SECONDS="5",  # a claim cut before its call is sent again
    ) as running:
        yield running
