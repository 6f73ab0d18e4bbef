"""A small TTL cache for JSON values: Redis in production, a dict in embedded mode."""
from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError


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


class RedisCache:
    """Cache in Redis; a Redis error is a miss (the database stays the source of truth).

    Gets asked in one event-loop iteration go as one MGET, and sets as one pipeline: 10,000
    dashboards reconnecting at once read and refill their stats in a few round trips, not
    30,000."""

    def __init__(self, redis: aioredis.Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix
        self._asked: list[tuple[list[str], asyncio.Future]] = []
        self._setting: list[tuple[str, str, int]] = []
        self._setters: list[asyncio.Future] = []
        self._reading: set[asyncio.Task] = set()

    async def get(self, key: str) -> Any | None:
        return (await self.get_many([key]))[0]

    async def get_many(self, keys: list[str]) -> list[Any | None]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self._asked:
            loop.call_soon(self._flush)
        self._asked.append(([self._prefix + key for key in keys], future))
        raws = await future
        return [None if raw is None else json.loads(raw) for raw in raws]

    def _flush(self) -> None:
        asked, self._asked = self._asked, []
        task = asyncio.get_running_loop().create_task(self._mget(asked))
        self._reading.add(task)
        task.add_done_callback(self._reading.discard)

    async def _mget(self, asked: list[tuple[list[str], asyncio.Future]]) -> None:
        keys = list(dict.fromkeys(key for wanted, _future in asked for key in wanted))
        # A Redis Cluster client splits the keys by slot (a plain MGET must stay in one slot).
        mget = getattr(self._redis, "mget_nonatomic", None) or self._redis.mget
        try:
            found = dict(zip(keys, await mget(keys)))
        except (RedisError, OSError):
            found = {}
        except BaseException:
            for _wanted, future in asked:
                future.cancel()
            raise
        for wanted, future in asked:
            if not future.done():
                future.set_result([found.get(key) for key in wanted])

    async def set(self, key: str, value: Any, ttl_seconds: float) -> None:
        if ttl_seconds <= 0:
            return
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self._setting:
            loop.call_soon(self._flush_sets)
        self._setting.append((self._prefix + key, json.dumps(value),
                              max(1, int(ttl_seconds * 1000))))
        self._setters.append(future)
        await future

    def _flush_sets(self) -> None:
        setting, self._setting = self._setting, []
        setters, self._setters = self._setters, []
        task = asyncio.get_running_loop().create_task(self._set_all(setting, setters))
        self._reading.add(task)
        task.add_done_callback(self._reading.discard)

    async def _set_all(self, setting: list[tuple[str, str, int]],
                       setters: list[asyncio.Future]) -> None:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key, value, px in setting:
                    pipe.set(key, value, px=px)
                await pipe.execute()
        except (RedisError, OSError):
            pass  # a cache that cannot be written is a cache that misses
        finally:
            for future in setters:
                if not future.done():
                    future.set_result(None)

    async def delete(self, key: str) -> None:
        try:
            await self._redis.delete(self._prefix + key)
        except (RedisError, OSError):
            pass
