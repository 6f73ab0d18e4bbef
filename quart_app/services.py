"""The service container: built from Settings, started and stopped with the app.

Every blueprint reaches the database, broker, cache, hub and metrics through ``services()``
(:mod:`quart_app.web`); nothing else holds module-level state.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from .broker import Broker, Publication
from .broker_memory import MemoryBroker
from .cache import Cache, MemoryCache, RedisCache
from .config import Settings
from .db import Database, migrate
from .hub import Hub
from .listener import Listener
from .metrics import Metrics
from .outbox import Flusher

log = logging.getLogger("pulse")

StatsProvider = Callable[[int], Awaitable[dict]]


class Services:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.db = Database(settings.database_url)
        self.broker: Broker
        if settings.redis_url:
            from .broker_redis import RedisBroker

            self.broker = RedisBroker(
                settings.redis_url, settings.redis_prefix, settings.history.size,
                settings.history.ttl_seconds)
        else:
            self.broker = MemoryBroker(settings.history.size, settings.history.ttl_seconds)
        self.cache: Cache = MemoryCache()
        self.hub = Hub(self.broker, self.metrics, settings.limits.max_connections_per_user,
                       settings.limits.max_subscriptions)
        self.flusher = Flusher(settings.limits.outbox_high_water_bytes)
        self.listener = Listener(self.broker, self.hub, self.metrics)
        # Set by the dashboard module: the caller's current stats, for the `dashboard` snapshot.
        self.stats_provider: StatsProvider | None = None
        self.background: list[Callable[["Services"], Awaitable[None]]] = []
        self._tasks: list[asyncio.Task] = []
        self.shutting_down = False
        self.shutdown_hooks: list[Callable[[], Awaitable[None]]] = []
        self.ws_sessions: dict = {}          # conn id -> session.Session
        self.sse_heartbeats: set = set()     # callables(now) of open SSE streams
        self.sse_closers: set = set()        # callables() that end an SSE stream
        self.metrics.gauge("connections", "Open client connections",
                           lambda: self.hub.connection_count)
        self.metrics.gauge("subscriptions", "Channel subscriptions held by open connections",
                           self.hub.subscription_count)

    @property
    def using_redis(self) -> bool:
        return self.settings.redis_url is not None

    async def start(self) -> None:
        await self.db.connect()
        applied = await migrate(self.db)
        if applied:
            log.info("migrations applied: %s", ", ".join(applied))
        await self.broker.connect()
        if self.using_redis:
            self.cache = RedisCache(self.broker.redis, self.settings.redis_prefix + "cache:")
        self.listener.start()
        loop = asyncio.get_running_loop()
        for job in self.background:
            self._tasks.append(loop.create_task(job(self), name=getattr(job, "__name__", "job")))

    async def stop(self) -> None:
        self.shutting_down = True
        for hook in self.shutdown_hooks:
            try:
                await hook()
            except Exception:  # pragma: no cover - shutdown must go on
                log.exception("shutdown hook failed")
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:  # pragma: no cover
                log.exception("background task failed during shutdown")
        self._tasks.clear()
        await self.listener.stop()
        await self.broker.close()
        await self.db.close()

    async def publish(self, channel: str, data: dict) -> Publication:
        """Publish through the broker: next offset, history, every process (DESIGN §8)."""
        return await self.broker.publish(channel, data)
