"""The Redis transport our processes use keeps a worker alive when Redis goes away.

Celery's consumer tears a broken connection down twice (``collect()``, then ``close()``). When
the first pass fails to close the channel (its pending BRPOP read fails on the dead socket), it
still detaches the transport; the second pass asks for a Redis client to give back the
unacknowledged messages. kombu's own channel then raises ``AttributeError``, which ended the
worker under ``tests/faults/test_redis_restart.py``; ours raises a connection error, which
Celery ignores while it reconnects.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from kombu import Connection, Consumer, Exchange, Queue
from kombu.transport import redis as kombu_redis

from project import redis_transport
from tests.faults.private_redis import PrivateRedis


@pytest.fixture
def server() -> Iterator[PrivateRedis]:
    private = PrivateRedis()
    private.start()
    try:
        yield private
    finally:
        private.remove()


def torn_down_twice(url: str, server: PrivateRedis, transport: Any) -> Connection:
    """A connection holding an unacknowledged message and waiting on BRPOP when Redis stops,
    torn down the way Celery's consumer does after the loss; returns it for the second close."""
    conn = Connection(url, transport=transport)
    queue = Queue("t", Exchange("t"), "t")
    with conn.Producer() as producer:
        producer.publish({"i": 1}, exchange=queue.exchange, routing_key="t", declare=[queue])
    got: list[Any] = []
    channel = conn.default_channel
    Consumer(
        channel, [queue], callbacks=[lambda body, m: got.append(m)], prefetch_count=2
    ).consume()
    conn.drain_events(timeout=5)
    assert got, "a message delivered and not acknowledged"
    channel._brpop_start()  # the worker's loop waits on BRPOP (the queue is empty)
    server.stop()

    def read_fails(**options: Any) -> None:  # the read on the dead socket, as kombu's fails
        raise redis.exceptions.ConnectionError("Error 111 connecting. Connection refused.")

    channel._brpop_read = read_fails
    conn.collect(socket_timeout=1)  # Celery's first pass
    assert channel.closed is False
    assert channel.connection.client is None
    channel._in_poll = None  # kombu's failed read leaves no read pending
    return conn


def test_the_second_teardown_raises_a_connection_error_that_celery_ignores(
    server: PrivateRedis,
) -> None:
    conn = torn_down_twice(server.url, server, redis_transport.Transport)
    conn.release()  # would raise AttributeError with kombu's channel
    server.start()
    # Nothing lost: the unacknowledged message waits in Redis for the visibility timeout.
    client = server.client()
    assert client.hlen("unacked") == 1


def test_kombus_own_channel_fails_there_as_the_worker_did(server: PrivateRedis) -> None:
    # The reason for project/redis_transport.py: if kombu fixes it, this fails and it can go.
    conn = torn_down_twice(server.url, server, kombu_redis.Transport)
    with pytest.raises(AttributeError, match="hostname"):
        conn.release()
