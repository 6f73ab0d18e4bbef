"""The Redis broker behind Sentinel: ``REDIS_URL=redis+sentinel://host:port[,…]/<master>[/db]``.

It is :class:`RedisBroker` with other connections: both the command pool and the listener ask
the sentinels for the master (redis-py's asyncio ``SentinelConnectionPool``), and a connection
that finds its server demoted to a replica (``READONLY``) drops and asks again. After a
failover the listener's connection to the old master is gone; it reconnects to the new master,
resubscribes and yields RESYNC, so the hub recovers from history exactly as after a Redis
restart. Publishing runs the failover variant of the script (:mod:`broker_ha`): a new epoch,
and a jump in offsets, per stream on the new master, so offsets a dead master handed out are
never trusted again.
"""
from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from . import redis_urls
from .broker_ha import WriterEpochs, failover_lua
from .broker_redis import POOL_SIZE, RedisBroker

# Publishing through a failover: a call is retried (its publication id makes that safe) while
# the sentinels elect a new master, about 2-10 s; the HTTP publish answers 503 after that.
FAILOVER_RETRIES = 8


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):  # type: ignore[misc]
    """Connections to the master the sentinels name, and a burst of commands waits for a free
    one (as RedisBroker's blocking pool does) instead of failing with "Too many connections"."""


class SentinelBroker(WriterEpochs, RedisBroker):
    publish_lua = failover_lua("PUBLISH")

    def __init__(self, url: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(url, *args, **kwargs)
        self.topology = redis_urls.parse(url)
        self._sentinel: Sentinel | None = None

    def _make_clients(self) -> tuple[Any, Any]:
        target = self.topology
        sentinel = self._sentinel = Sentinel(list(target.nodes), socket_timeout=1.0,
                                             socket_connect_timeout=1.0)
        common = {"db": target.db, "username": target.username, "password": target.password,
                  "ssl": target.ssl, "socket_connect_timeout": 2}
        pool = _BlockingSentinelPool(
            target.master, sentinel, max_connections=POOL_SIZE, timeout=5,
            socket_timeout=self._socket_timeout,
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), FAILOVER_RETRIES),
            retry_on_error=[RedisConnectionError, RedisTimeoutError], **common)
        redis = aioredis.Redis(connection_pool=pool)
        # As for one Redis: the listener never reconnects behind our back (broker_redis.py).
        listen_pool = SentinelConnectionPool(target.master, sentinel,
                                             retry=Retry(NoBackoff(), 0), **common)
        return redis, aioredis.Redis(connection_pool=listen_pool)

    async def close(self) -> None:
        await super().close()
        for client in self._sentinel.sentinels if self._sentinel is not None else ():
            await client.aclose()
