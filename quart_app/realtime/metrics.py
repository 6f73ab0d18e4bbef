"""The engine's metrics: plain counters on the hot path, exposed through ``prometheus_client``.

Hot-path updates stay plain attribute increments (``metrics.messages_out += n``); nothing is
formatted or locked until ``/metrics`` is read, when :class:`PulseCollector` turns the counters
into metric families beside ``prometheus_client``'s ``process_*`` and ``python_*`` collectors.

Several worker processes (``pulse serve --workers N``) share one port, so a scrape reaches one of
them at random. With ``PULSE_METRICS_DIR`` set (``serve`` sets it up for N > 1), every worker
writes a snapshot of its counters there each :data:`SNAPSHOT_SECONDS`, and a scrape answers the
sum over all workers: counters of a worker that has exited still count (totals never go back),
gauges only of the live ones. ``prometheus_client``'s own multiprocess mode would instead lock and
write a memory-mapped file on every increment of the hot path. ``process_*`` metrics are those
of the worker that answered.
"""
from __future__ import annotations

import asyncio
import bisect
import json
import logging
import os
from pathlib import Path
from typing import Callable, Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

log = logging.getLogger("pulse.metrics")

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
SNAPSHOT_SECONDS = 1.0
TRANSPORTS = ("ws", "sse")   # poll is stateless: pulse_poll_requests_total counts it


class Histogram:
    __slots__ = ("bounds", "counts", "total", "count")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float, times: int = 1) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += times
        self.total += value * times
        self.count += times


class Metrics:
    """Every counter Pulse exports. Gauges are read through callables at scrape time."""

    COUNTERS = {
        "messages_in": "Frames received from clients",
        "messages_out": "Publications delivered to client outboxes",
        "publications": "Publications dispatched by this process's listener",
        "conflated": "Queued latest-value events replaced by a newer one for a slow client",
        "dropped": "Messages dropped (rate limit, closed connection)",
        "slow_consumer_closes": "Connections closed with 4008 (slow consumer)",
        "listener_reconnects": "Times the broker listener reconnected",
        "auth_failures": "Connections refused for a missing, invalid or expired token",
        "ingested_events": "Events accepted by POST /api/events",
        "poll_requests": "GET /history requests (the polling transport)",
        "connections_refused": "Connections refused (503) at the connection cap or while "
                               "shutting down",
        "abandoned": "WebSocket upgrades whose client had already left (FIN) when the "
                     "request was read: not served",
        "head_timeouts": "Connections closed before sending a request head in time",
        "origin_refusals": "Requests refused for their Origin (403)",
        "edge_fallbacks": "1 when the direct endpoints could not be installed (Quart serves all)",
    }

    def __init__(self) -> None:
        for name in self.COUNTERS:
            setattr(self, name, 0)
        self.accepted: dict[str, int] = dict.fromkeys(TRANSPORTS, 0)
        self.delivery_latency = Histogram()
        # name -> (help, label name or None, read): read returns a number, or {label: number}.
        self._gauges: dict[str, tuple[str, str | None, Callable]] = {}
        self.directory: Path | None = None
        self._registry: CollectorRegistry | None = None

    @property
    def connections_accepted(self) -> int:
        return sum(self.accepted.values())

    def count_accepted(self, transport: str) -> None:
        self.accepted[transport] = self.accepted.get(transport, 0) + 1

    def gauge(self, name: str, help_text: str, read: Callable, label: str | None = None) -> None:
        """Export ``pulse_<name>``; with ``label``, ``read()`` returns ``{value: number}``."""
        self._gauges[name] = (help_text, label, read)

    # -- exposition --------------------------------------------------------------------
    def snapshot(self) -> dict:
        """This process's values as plain JSON-able data (what a worker shares)."""
        gauges = {}
        for name, (_help, label, read) in self._gauges.items():
            value = read()
            gauges[name] = {str(k): v for k, v in value.items()} if label else {"": value}
        h = self.delivery_latency
        return {"pid": os.getpid(),
                "counters": {name: getattr(self, name) for name in self.COUNTERS},
                "accepted": dict(self.accepted), "gauges": gauges,
                "latency": {"counts": list(h.counts), "sum": h.total, "count": h.count}}

    def render(self) -> str:
        """The Prometheus text exposition (this process, or every worker when shared)."""
        if self._registry is None:
            registry = CollectorRegistry(auto_describe=False)
            registry.register(PulseCollector(self))
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
            self._registry = registry
        return generate_latest(self._registry).decode()

    # -- several processes -------------------------------------------------------------
    def share(self, directory: str | os.PathLike) -> None:
        """Publish snapshots under ``directory`` and answer scrapes for every worker there."""
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def write_snapshot(self) -> None:
        if self.directory is None:
            return
        path = self.directory / f"pulse_{os.getpid()}.json"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.snapshot()))
        os.replace(temporary, path)  # a reader never sees half a file

    async def share_forever(self) -> None:
        """Write a snapshot every SNAPSHOT_SECONDS until cancelled, then a last one."""
        try:
            while True:
                self.write_snapshot()
                await asyncio.sleep(SNAPSHOT_SECONDS)
        finally:
            try:
                self.write_snapshot()
            except OSError:  # pragma: no cover - the directory went away at shutdown
                pass

    def snapshots(self) -> list[tuple[dict, bool]]:
        """(snapshot, alive) for this process and every other worker sharing the directory."""
        own = self.snapshot()
        found = [(own, True)]
        if self.directory is None:
            return found
        for path in self.directory.glob("pulse_*.json"):
            try:
                other = json.loads(path.read_text())
            except (OSError, ValueError):  # removed or being replaced: the next scrape has it
                continue
            if other.get("pid") != own["pid"]:
                found.append((other, _alive(other.get("pid"))))
        return found


def _alive(pid) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - someone else's process: it exists
        return True
    return True


class PulseCollector(Collector):
    """``pulse_*`` metric families summed over the snapshots :meth:`Metrics.snapshots` finds."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable:
        found = self.metrics.snapshots()
        every = [snap for snap, _alive in found]
        live = [snap for snap, alive in found if alive]
        for name, help_text in Metrics.COUNTERS.items():
            yield CounterMetricFamily(f"pulse_{name}", help_text,
                                      value=sum(s["counters"].get(name, 0) for s in every))
        accepted = CounterMetricFamily("pulse_connections_accepted",
                                       "Connections accepted, by transport",
                                       labels=["transport"])
        for transport, value in _sum_by_key(s["accepted"] for s in every).items():
            accepted.add_metric([transport], value)
        yield accepted
        for name, (help_text, label, _read) in self.metrics._gauges.items():
            family = GaugeMetricFamily(f"pulse_{name}", help_text,
                                       labels=[label] if label else None)
            for key, value in _sum_by_key(s["gauges"].get(name, {}) for s in live).items():
                family.add_metric([key] if label else [], value)
            yield family
        yield GaugeMetricFamily("pulse_workers", "Worker processes answering for this service",
                                value=len(live))
        yield self._latency(every)

    def _latency(self, snapshots: list[dict]) -> HistogramMetricFamily:
        bounds = self.metrics.delivery_latency.bounds
        counts = [0] * (len(bounds) + 1)
        total = 0.0
        for snap in snapshots:
            latency = snap["latency"]
            for index, count in enumerate(latency["counts"][:len(counts)]):
                counts[index] += count
            total += latency["sum"]
        buckets, cumulative = [], 0
        for bound, count in zip(bounds + (float("inf"),), counts):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else str(bound), cumulative))
        return HistogramMetricFamily("pulse_delivery_latency_seconds",
                                     "Publish to outbox hand-off latency", buckets=buckets,
                                     sum_value=total)


def _sum_by_key(mappings: Iterable[dict]) -> dict:
    total: dict = {}
    for mapping in mappings:
        for key, value in mapping.items():
            total[key] = total.get(key, 0) + value
    return total
