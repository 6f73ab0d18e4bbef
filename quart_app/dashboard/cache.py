"""A small TTL cache for JSON values: Redis in production, a dict in embedded mode."""
from __future__ import annotations

import json
import time
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ..realtime.batching import Asked, IterationBatch

# How long a get or a set may wait for others to share its round trip (realtime/batching.py).
GET_LINGER_SECONDS = SET_LINGER_SECONDS = 0.004


class Cache(Protocol):
    async def get(self, key: str) -> Any | None: ...

    async def get_many(self, keys: list[str]) -> list[Any | None]: ...

    async def set(self, key: str, value: Any, ttl_seconds: float) -> None: ...

    async def delete(self, key: str) -> None: ...


class MemoryCache:
    def __init__(self) -> None:
        self._items: dict[str, tuple[float, str]] = {}

    async def get(self, key: str) -> Any | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item[0] < time.monotonic():
            self._items.pop(key, None)
            return None
        return json.loads(item[1])

    async def get_many(self, keys: list[str]) -> list[Any | None]:
        return [await self.get(key) for key in keys]

    async def set(self, key: str, value: Any, ttl_seconds: float) -> None:
        if len(self._items) > 10_000:  # bound it: drop expired entries first
            now = time.monotonic()
            self._items = {k: v for k, v in self._items.items() if v[0] >= now}
        self._items[key] = (time.monotonic() + ttl_seconds, json.dumps(value))

    async def delete(self, key: str) -> None:
        self._items.pop(key, None)


# One call for a batch of sets: a pipeline of N SETs costs redis-py a command to pack and a
# reply to parse each, most of a snapshot's CPU in a connect storm (docs/scaling.md).
SET_MANY_LUA = """
-- KEYS[i] = ARGV[2i-1], expiring in ARGV[2i] ms (dashboard/cache.py, RedisCache._set_all)
for i, key in ipairs(KEYS) do
  redis.call('SET', key, ARGV[2 * i - 1], 'PX', ARGV[2 * i])
end
return #KEYS
"""


class RedisCache:
    """Cache in Redis; a Redis error is a miss (the database stays the source of truth).

    Gets asked together (docs/scaling.md, "Reconnect storms") go as one MGET, and sets as one
    script call (a pipeline on a cluster, where keys of different slots cannot share a
    script): 10,000 dashboards reconnecting at once read and refill their stats in a few round
    trips, not 30,000."""

    def __init__(self, redis: aioredis.Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix
        self._cluster = hasattr(redis, "mget_nonatomic")
        self._set_many = None if self._cluster else redis.register_script(SET_MANY_LUA)
        self._gets = IterationBatch(self._mget, linger=GET_LINGER_SECONDS)
        self._sets = IterationBatch(self._set_all, linger=SET_LINGER_SECONDS)

    async def get(self, key: str) -> Any | None:
        return (await self.get_many([key]))[0]

    async def get_many(self, keys: list[str]) -> list[Any | None]:
        raws = await self._gets.ask([self._prefix + key for key in keys])
        return [None if raw is None else json.loads(raw) for raw in raws]

    async def _mget(self, asked: Asked) -> None:
        keys = list(dict.fromkeys(key for wanted, _future in asked for key in wanted))
        # A Redis Cluster client splits the keys by slot (a plain MGET must stay in one slot).
        mget = self._redis.mget_nonatomic if self._cluster else self._redis.mget
        try:
            found = dict(zip(keys, await mget(keys)))
        except (RedisError, OSError):
            found = {}
        for wanted, future in asked:
            if not future.done():
                future.set_result([found.get(key) for key in wanted])

    async def set(self, key: str, value: Any, ttl_seconds: float) -> None:
        if ttl_seconds <= 0:
            return
        await self._sets.ask((self._prefix + key, json.dumps(value),
                              max(1, int(ttl_seconds * 1000))))

    async def _set_all(self, asked: Asked) -> None:
        try:
            if self._set_many is not None:
                keys: list[str] = []
                args: list = []
                for (key, value, px), _future in asked:
                    keys.append(key)
                    args += (value, px)
                await self._set_many(keys=keys, args=args)
            else:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for (key, value, px), _future in asked:
                        pipe.set(key, value, px=px)
                    await pipe.execute()
        except (RedisError, OSError):
            pass  # a cache that cannot be written is a cache that misses
        finally:
            for _item, future in asked:
                if not future.done():
                    future.set_result(None)
