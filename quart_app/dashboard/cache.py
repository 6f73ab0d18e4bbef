"""A small TTL cache for JSON values: Redis in production, a dict in embedded mode."""
from __future__ import annotations

import json
import time
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError


class Cache(Protocol):
    async def get(self, key: str) -> Any | None: ...

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

    async def set(self, key: str, value: Any, ttl_seconds: float) -> None:
        if len(self._items) > 10_000:  # bound it: drop expired entries first
            now = time.monotonic()
            self._items = {k: v for k, v in self._items.items() if v[0] >= now}
        self._items[key] = (time.monotonic() + ttl_seconds, json.dumps(value))

    async def delete(self, key: str) -> None:
        self._items.pop(key, None)


class RedisCache:
    """Cache in Redis; a Redis error is a miss (the database stays the source of truth)."""

    def __init__(self, redis: aioredis.Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix

    async def get(self, key: str) -> Any | None:
        try:
            raw = await self._redis.get(self._prefix + key)
        except (RedisError, OSError):
            return None
        return None if raw is None else json.loads(raw)

    async def set(self, key: str, value: Any, ttl_seconds: float) -> None:
        if ttl_seconds <= 0:
            return
        try:
            await self._redis.set(self._prefix + key, json.dumps(value),
                                  px=max(1, int(ttl_seconds * 1000)))
        except (RedisError, OSError):
            pass

    async def delete(self, key: str) -> None:
        try:
            await self._redis.delete(self._prefix + key)
        except (RedisError, OSError):
            pass
