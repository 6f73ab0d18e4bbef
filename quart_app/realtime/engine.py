"""The realtime engine as one object: broker, hub, listener, flusher, metrics and the sessions
they serve, started and stopped with the app.

It knows channels, offsets and sockets, and nothing of any application. An application plugs in
through the attributes documented below (``docs/scaling.md``): background jobs, readiness checks,
shutdown hooks and the snapshot sent on subscribe.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from ..config import Settings
from .broker import Broker, Publication
from .broker_memory import MemoryBroker
from .hub import Hub
from .listener import Listener
from .metrics import Metrics, count_by_transport
from .outbox import Flusher

log = logging.getLogger("pulse")

StatsProvider = Callable[[int], Awaitable[dict]]
Probe = Callable[[], Awaitable[None]]


async def _share_metrics(engine: "Engine") -> None:
    await engine.metrics.share_forever()


class Engine:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.broker: Broker
        if settings.redis_url:
            from .broker_redis import RedisBroker

            self.broker = RedisBroker(
                settings.redis_url, settings.redis_prefix, settings.history.size,
                settings.history.ttl_seconds)
        else:
            self.broker = MemoryBroker(settings.history.size, settings.history.ttl_seconds)
        self.hub = Hub(self.broker, self.metrics, settings.limits.max_connections_per_user,
                       settings.limits.max_subscriptions)
        self.flusher = Flusher(settings.limits.outbox_high_water_bytes)
        self.listener = Listener(self.broker, self.hub, self.metrics)
        # Extension points for the application (and the edge).
        self.stats_provider: StatsProvider | None = None   # the `dashboard` snapshot
        self.background: list[Callable[["Engine"], Awaitable[None]]] = []
        self.readiness: dict[str, Probe] = {
            "redis" if self.using_redis else "broker": self.broker.ping}
        self.shutdown_hooks: list[Callable[[], Awaitable[None]]] = []
        self._tasks: list[asyncio.Task] = []
        if settings.metrics_dir:  # several workers: each shares its counters (metrics.py)
            self.metrics.share(settings.metrics_dir)
            self.background.append(_share_metrics)
        self.shutting_down = False
        self.ws_sessions: dict = {}          # conn id -> session.Session
        self.sse_heartbeats: set = set()     # callables(now) of open SSE streams
        self.sse_closers: set = set()        # callables() that end an SSE stream
        self.metrics.gauge("connections", "Open client connections, by transport",
                           lambda: count_by_transport(self.hub.connections()), label="transport")
        self.metrics.gauge("subscriptions", "Channel subscriptions held by open connections",
                           self.hub.subscription_count)

    @property
    def using_redis(self) -> bool:
        return self.settings.redis_url is not None

    async def start(self) -> None:
        await self.broker.connect()
        await self.broker_connected()
        self.listener.start()
        loop = asyncio.get_running_loop()
        for job in self.background:
            self._tasks.append(loop.create_task(job(self), name=getattr(job, "__name__", "job")))

    async def broker_connected(self) -> None:
        """Called once the broker is connected, before the listener and jobs start."""

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

    async def publish(self, channel: str, data: dict) -> Publication:
        """Publish through the broker: next offset, history, every process (docs/protocol.md)."""
        return await self.broker.publish(channel, data)
