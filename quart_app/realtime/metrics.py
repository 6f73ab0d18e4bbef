"""A minimal Prometheus registry: counters, gauges and one latency histogram, text exposition.

Hot-path updates are plain attribute increments; nothing is formatted until ``/metrics`` is read.
"""
from __future__ import annotations

import bisect
from typing import Callable

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


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
        "connections_accepted": "Connections accepted (WebSocket and SSE)",
        "auth_failures": "Connections refused for a missing, invalid or expired token",
        "ingested_events": "Events accepted by POST /api/events",
        "connections_refused": "Connections refused at the connection cap (503)",
        "head_timeouts": "Connections closed before sending a request head in time",
        "origin_refusals": "Requests refused for their Origin (403)",
        "edge_fallbacks": "Times the direct endpoints could not be installed (Quart serves all)",
    }

    def __init__(self) -> None:
        for name in self.COUNTERS:
            setattr(self, name, 0)
        self.delivery_latency = Histogram()
        self._gauges: dict[str, tuple[str, Callable[[], float]]] = {}

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        self._gauges[name] = (help_text, read)

    def render(self) -> str:
        lines: list[str] = []
        for name, help_text in self.COUNTERS.items():
            lines += [f"# HELP pulse_{name}_total {help_text}",
                      f"# TYPE pulse_{name}_total counter",
                      f"pulse_{name}_total {getattr(self, name)}"]
        for name, (help_text, read) in self._gauges.items():
            lines += [f"# HELP pulse_{name} {help_text}", f"# TYPE pulse_{name} gauge",
                      f"pulse_{name} {read()}"]
        h = self.delivery_latency
        lines += ["# HELP pulse_delivery_latency_seconds Publish to outbox hand-off latency",
                  "# TYPE pulse_delivery_latency_seconds histogram"]
        cumulative = 0
        for bound, count in zip(h.bounds, h.counts):
            cumulative += count
            lines.append(f'pulse_delivery_latency_seconds_bucket{{le="{bound}"}} {cumulative}')
        lines.append(f'pulse_delivery_latency_seconds_bucket{{le="+Inf"}} {h.count}')
        lines.append(f"pulse_delivery_latency_seconds_sum {h.total}")
        lines.append(f"pulse_delivery_latency_seconds_count {h.count}")
        return "\n".join(lines) + "\n"
