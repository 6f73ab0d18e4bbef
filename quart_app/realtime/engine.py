"""The realtime engine as one object: broker, hub, listener, flusher, metrics and the sessions
they serve, started and stopped with the app.

It knows channels, offsets and sockets, and nothing of any application. An application plugs in
through the attributes documented below (``docs/scaling.md``): its namespaces
(``namespaces.install``), background jobs, readiness checks, shutdown hooks, the snapshot sent on
subscribe and raw Redis channels.
"""
from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Awaitable, Callable

from ..config import Settings
from .auth import TokenVerifier
from . import namespaces
from .broker import Broker, Publication, user_of
from .broker_memory import MemoryBroker
from .cluster import Cluster
from .hub import Hub
from .listener import Listener
from .metrics import Metrics
from .outbox import Flusher

log = logging.getLogger("pulse")

# How long a publication id is remembered: long enough to cover the Redis client's retries of
# one call (auto ids), or a producer's retries of one request (ids it chose).
AUTO_ID_TTL_SECONDS = 30.0
KEY_ID_TTL_SECONDS = 24 * 3600.0

StatsProvider = Callable[[int], Awaitable[dict]]
Probe = Callable[[], Awaitable[None]]


async def _share_metrics(engine: "Engine") -> None:
    await engine.metrics.share_forever()


class Engine:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.tokens = TokenVerifier(settings.jwt_secret, settings.auth)
        self.subscribe_proxy = (namespaces.SubscribeProxy(
            settings.subscribe_proxy_url, settings.subscribe_proxy_timeout_seconds,
            settings.subscribe_proxy_cache_seconds) if settings.subscribe_proxy_url else None)
        self.broker: Broker
        # Raw Redis pub/sub channels -> Pulse channels, served best-effort without offsets; the
        # application fills it before start (the built-in app: seed 000's 12 channels).
        self.raw_channels: dict[str, str] = {}
        if settings.redis_url:  # redis://, rediss://, unix://, redis+cluster://, redis+sentinel://
            from .redis_urls import redis_broker

            self.broker = redis_broker(
                settings.redis_url, settings.redis_prefix, settings.history.size,
                settings.history.ttl_seconds, raw_channels=self.raw_channels)
        else:
            self.broker = MemoryBroker(settings.history.size, settings.history.ttl_seconds)
        self.hub = Hub(self.broker, self.metrics, settings.limits.max_connections_per_user,
                       settings.limits.max_subscriptions)
        self.flusher = Flusher(settings.limits.outbox_high_water_bytes)
        self.listener = Listener(self.broker, self.hub, self.metrics)
        # Presence per namespace, and this process's heartbeat into the cluster (cluster.py).
        self.cluster = Cluster(self)
        self.presence = self.hub.presence = self.cluster.presence
        # Extension points for the application (and the edge).
        # Snapshots on subscribe: channel -> async (user_id) -> data of one publication (with
        # its "type") queued right after the ack, without an offset; the app registers them.
        self.snapshots: dict[str, StatsProvider] = {}
        self._snapshotting: dict[tuple[str, int], asyncio.Future] = {}
        self.background: list[Callable[["Engine"], Awaitable[None]]] = []
        self.readiness: dict[str, Probe] = {
            "redis" if self.using_redis else "broker": self.broker.ping}
        self.shutdown_hooks: list[Callable[[], Awaitable[None]]] = []
        self._tasks: list[asyncio.Task] = []
        self.background.append(self.cluster.heartbeat_forever)
        self.shutdown_hooks.append(self.cluster.leave)
        if settings.metrics_dir:  # several workers: each shares its counters (metrics.py)
            self.metrics.share(settings.metrics_dir)
            self.background.append(_share_metrics)
        self.shutting_down = False
        self.ws_sessions: dict = {}          # conn id -> session.Session
        self.sse_heartbeats: set = set()     # callables(now) of open SSE streams
        self.sse_closers: set = set()        # callables() that end an SSE stream
        self.edge_connections: set = set()   # the edge's direct endpoints (protocol objects)
        self.edge_pending: set = set()       # connections still sending their first request
        self.sockets_open = 0                # client sockets the edge holds, any kind
        self.metrics.gauge("connections", "Open client connections, by transport",
                           self.hub.count_by_transport, label="transport")
        self.metrics.gauge("subscriptions", "Channel subscriptions held by open connections",
                           self.hub.subscription_count)

    async def snapshot(self, channel: str, user_id: int) -> dict | None:
        """The registered snapshot of ``channel`` for ``user_id``; concurrent asks for the same
        pair share one call of the provider (its exception too). The first ask calls the
        provider itself, with no task made for it (a connect storm makes thousands of asks);
        the others wait for its answer."""
        key = (channel, user_id)
        pending = self._snapshotting.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        pending = self._snapshotting[key] = asyncio.get_running_loop().create_future()
        try:
            data = await self.snapshots[channel](user_id)
        except BaseException as exc:
            # The others get the error (a cancelled first ask: a RuntimeError, not their own
            # cancellation); retrieved here, so none left waiting is no error.
            pending.set_exception(exc if isinstance(exc, Exception) else
                                  RuntimeError("snapshot abandoned"))
            pending.exception()
            raise
        else:
            pending.set_result(data)
            return data
        finally:
            del self._snapshotting[key]

    def release_socket(self, protocol) -> None:
        """A socket the edge served directly has closed."""
        self.edge_connections.discard(protocol)
        self.sockets_open -= 1

    @property
    def using_redis(self) -> bool:
        return self.settings.redis_url is not None

    async def start(self) -> None:
        if self.tokens.jwks_url:
            await self.tokens.refresh()
            self.background.append(self.tokens.refresh_forever)
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
        for pending in list(self.edge_pending):  # no task of theirs for Hypercorn to cancel
            pending.close()
        await self.listener.stop()
        await self.broker.close()
        if self.subscribe_proxy is not None:
            await self.subscribe_proxy.close()

    async def publish(self, channel: str, data: dict, *, publication_id: str | None = None,
                      body_hash: str = "", id_ttl_seconds: float | None = None) -> Publication:
        """Publish through the broker: next offset, history, every process (docs/protocol.md).

        On a user-targeted channel, data with a ``user_id`` goes to that user's own offset
        space. Every publish carries an id, so a broker call retried after a timeout cannot
        give one publication two offsets; a caller's own id (an ``Idempotency-Key``) is kept
        longer and makes the whole publish idempotent (``duplicate`` on the result)."""
        return await self.broker.publish(**publish_request(channel, data, publication_id,
                                                           body_hash, id_ttl_seconds))

    async def publish_many(self, requests: list[tuple[str, dict, str | None, str]],
                           id_ttl_seconds: float | None = None) -> list[Publication]:
        """``(channel, data, publication_id, body_hash)`` each, in one broker round trip and in
        order; otherwise as :meth:`publish`."""
        return await publish_many(self.broker, requests, id_ttl_seconds)


def publish_request(channel: str, data: dict, publication_id: str | None, body_hash: str,
                    id_ttl_seconds: float | None, auto_id: bool = True) -> dict:
    """The broker's ``publish`` arguments for ``data`` on ``channel``, as the namespaces say
    (a user's own space, history size and TTL), with an automatic id unless ``auto_id`` is
    false. Shared with backends that publish straight into Redis (quart_app/publisher.py)."""
    user = user_of(data) if namespaces.targets_user(channel) else None
    if publication_id is None:
        publication_id = uuid.uuid4().hex if auto_id else None
        ttl = AUTO_ID_TTL_SECONDS
    else:
        ttl = id_ttl_seconds or KEY_ID_TTL_SECONDS
    size, keep = namespaces.history_limits(channel)
    return {"channel": channel, "data": data, "user": user,
            "publication_id": publication_id, "body_hash": body_hash,
            "id_ttl_seconds": ttl, "history_size": size, "history_ttl_seconds": keep}


async def publish_many(broker: Broker, requests: list[tuple[str, dict, str | None, str]],
                       id_ttl_seconds: float | None = None) -> list[Publication]:
    """:meth:`Engine.publish_many` on ``broker``. Requests without ids of their own go as one
    batch under one id (a retried broker call cannot publish them twice)."""
    if not any(pid for _channel, _data, pid, _digest in requests):
        return await broker.publish_many(
            [publish_request(channel, data, None, "", None, auto_id=False)
             for channel, data, _pid, _digest in requests],
            batch_id=uuid.uuid4().hex, batch_id_ttl_seconds=AUTO_ID_TTL_SECONDS)
    return await broker.publish_many(
        [publish_request(channel, data, pid, digest, id_ttl_seconds)
         for channel, data, pid, digest in requests])
