"""kombu's Redis transport, whose channel reports a closed connection as a connection error.

When the broker goes away under a running worker, Celery's consumer tears the broken
connection down twice: ``collect()`` and then ``close()``. If the first pass cannot close the
channel (its pending ``BRPOP`` read fails on the dead socket, before the channel is marked
closed), it still detaches the transport from the connection. The second pass then closes
the channel again; to give back the messages it had not acknowledged it asks for a Redis
client, and building one reads the detached transport's URL: ``AttributeError`` on ``None``.
That error is not one of the connection errors Celery ignores while reconnecting, so it ends
the whole worker (seen in ``tests/faults/test_redis_restart.py``).

Here building a client on a detached channel raises Redis's own ``ConnectionError``, which
Celery ignores there; the worker reconnects once Redis is back, and the unacknowledged
messages stay in Redis for the visibility timeout to hand out again. The settings register
this transport for ``redis://`` and ``rediss://`` (``use_redis_transport``).
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis
from redis.exceptions import ConnectionError as RedisConnectionError

TRANSPORT = "project.redis_transport:Transport"


class Channel(redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> Any:
        transport = self.connection
        if transport is None or transport.client is None:
            raise RedisConnectionError("the broker connection of this channel is closed")
        return super()._connparams(asynchronous=asynchronous)  # type: ignore[misc]


class Transport(redis.Transport):
    Channel = Channel


def use_redis_transport() -> None:
    """Make ``redis://`` and ``rediss://`` mean this transport in this process."""
    from kombu.transport import TRANSPORT_ALIASES

    TRANSPORT_ALIASES["redis"] = TRANSPORT
    TRANSPORT_ALIASES["rediss"] = TRANSPORT
