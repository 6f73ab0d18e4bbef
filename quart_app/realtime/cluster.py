"""This process in the cluster: its id, its heartbeat, and the stats of every live process
(``GET /admin/stats``'s ``cluster``; docs/operations.md, "Cluster stats and presence").

Every ``PULSE_HEARTBEAT_TTL_SECONDS / 3`` (5 s by default) a process sends, in one pipelined
round trip, a fresh deadline for each of its presence entries (:mod:`.presence`) and its report:

* ``{prefix}stats:{cluster}:<process id>``: the report as JSON, expiring
  ``PULSE_HEARTBEAT_TTL_SECONDS`` (15 s) after it was written;
* ``{prefix}stats:{cluster}``: a set of process ids, so a reader finds the reports without a
  ``SCAN`` (ids whose report has expired are removed by the reader that notices).

(``{cluster}`` is a Redis Cluster hash tag: every report lives in one slot, so one ``MGET``
reads them all.)

A process killed without a goodbye therefore drops out of the cluster stats, and its clients
out of presence, at most ``PULSE_HEARTBEAT_TTL_SECONDS`` after its last heartbeat. A clean stop
(SIGTERM) removes both at once. With the in-process broker the cluster is this process alone.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import socket
import time
from typing import Any

from .metrics import TRANSPORTS
from .presence import MemoryStore, Presence, RedisStore

log = logging.getLogger("pulse.cluster")

MAX_REPORTED_CHANNELS = 1000   # a report names at most this many channels, the largest first
GOODBYE_TIMEOUT_SECONDS = 3.0
SUMMED = ("total_connections", "subscriptions", "sockets_open", "deliveries", "publications",
          "presence_entries")


class Cluster:
    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.process = secrets.token_hex(6)
        self.started_at = time.time()
        self.ttl = engine.settings.heartbeat_ttl_seconds
        self.interval = self.ttl / 3
        self.host = socket.gethostname()
        self.presence = Presence(self.process, self._make_store)
        self.heartbeats = 0
        engine.metrics.gauge("presence_entries", "Presence entries this process holds (one per "
                             "connection and channel of a namespace with presence)",
                             lambda: self.presence.entry_count)

    def _make_store(self) -> Any:
        if self.engine.using_redis:
            return RedisStore(self.engine.broker, self.ttl)
        return MemoryStore(self.engine.hub)

    def _key(self, process: str | None = None) -> str:
        """The set of process ids, or one process's report."""
        base = f"{self.engine.broker.prefix}stats:{{cluster}}"
        return base if process is None else f"{base}:{process}"

    # -- this process --------------------------------------------------------------------------
    def report(self) -> dict:
        """This process's figures, as it writes them into Redis."""
        engine = self.engine
        hub, metrics = engine.hub, engine.metrics
        stats = hub.get_stats()
        channels = stats["channels"]
        if len(channels) > MAX_REPORTED_CHANNELS:
            channels = dict(sorted(channels.items(), key=lambda kv: -kv[1])
                            [:MAX_REPORTED_CHANNELS])
        now = time.time()
        return {
            "process": self.process, "host": self.host, "pid": os.getpid(),
            "started_at": round(self.started_at, 3), "reported_at": round(now, 3),
            "expires_at": round(now + self.ttl, 3),
            "total_connections": stats["total_connections"],
            "connections": hub.count_by_transport(),
            "unique_users": stats["unique_users"],
            "subscriptions": hub.subscription_count(),
            "sockets_open": engine.sockets_open,
            "deliveries": metrics.messages_out,
            "publications": metrics.publications,
            "presence_entries": self.presence.entry_count,
            "channels": channels,
        }

    def _queue_report(self, pipe: Any) -> None:
        pipe.set(self._key(self.process), json.dumps(self.report()),
                 px=max(1, int(self.ttl * 1000)))
        pipe.sadd(self._key(), self.process)

    def _queue_goodbye(self, pipe: Any) -> None:
        pipe.delete(self._key(self.process))
        pipe.srem(self._key(), self.process)

    # -- the heartbeat ---------------------------------------------------------------------------
    async def beat(self) -> bool:
        """One heartbeat: presence deadlines and this process's report, one round trip."""
        done = await self.presence.heartbeat(
            self._queue_report if self.engine.using_redis else None)
        self.heartbeats += done
        return done

    async def heartbeat_forever(self, _engine: Any = None) -> None:
        """The background job (Redis only: in process there is nothing to keep alive)."""
        if not self.engine.using_redis:
            return
        while True:
            await self.beat()
            await asyncio.sleep(self.interval)

    async def leave(self) -> None:
        """The shutdown hook: this process's presence entries and report go at once."""
        try:
            await asyncio.wait_for(self.presence.close(
                self._queue_goodbye if self.engine.using_redis else None), GOODBYE_TIMEOUT_SECONDS)
        except asyncio.TimeoutError:
            log.warning("cluster goodbye timed out: entries expire within %.0f s", self.ttl)

    # -- every process ---------------------------------------------------------------------------
    async def reports(self) -> list[dict]:
        """The report of every live process, this one's fresh, the others' as last written."""
        own = self.report()
        if not self.engine.using_redis:
            return [own]
        redis = self.engine.broker.redis
        ids = sorted(i.decode() if isinstance(i, bytes) else i
                     for i in await redis.smembers(self._key()))
        ids = [i for i in ids if i != self.process]
        found = [own]
        if not ids:
            return found
        values = await redis.mget([self._key(i) for i in ids])
        dead = []
        for process, raw in zip(ids, values):
            if raw is None:
                dead.append(process)
                continue
            try:
                found.append(json.loads(raw))
            except ValueError:
                dead.append(process)
        if dead:
            await redis.srem(self._key(), *dead)
        return found

    async def stats(self) -> dict:
        """The figures summed over every live process, and the processes' own (this process's
        alone, with ``detail``, while Redis cannot be read)."""
        detail = None
        try:
            reports = await self.reports()
        except Exception as exc:  # Redis down: /admin/stats still answers for this process
            reports, detail = [self.report()], f"Broker unavailable: {type(exc).__name__}"
        total: dict[str, Any] = {"processes": len(reports)}
        if detail is not None:
            total["detail"] = detail
        for name in SUMMED:
            total[name] = sum(int(r.get(name) or 0) for r in reports)
        total["connections"] = {t: sum(int(r.get("connections", {}).get(t, 0)) for r in reports)
                                for t in TRANSPORTS}
        channels: dict[str, int] = {}
        for report in reports:
            for channel, count in (report.get("channels") or {}).items():
                channels[channel] = channels.get(channel, 0) + int(count)
        total["channels"] = channels
        total["heartbeat_seconds"] = round(self.interval, 3)
        total["expiry_seconds"] = self.ttl
        total["per_process"] = [{k: v for k, v in r.items() if k != "channels"}
                                for r in sorted(reports, key=lambda r: r.get("started_at", 0))]
        return total
