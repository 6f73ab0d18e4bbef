"""The Python part of a delivery, without sockets: ``Hub.dispatch`` + ``Flusher`` per client.

Builds the real Hub, Outbox and Flusher with N subscribers whose transports only count bytes
(``write`` is a no-op), then times dispatching publications one at a time, as at 10/s where
nothing coalesces. What it prints is the user-space cost per delivery that remains once the
kernel's ``send()`` (bench/sendcost.py) is taken away.

It also times ``tight``: a prototype of the same work for the common case (no pending buffer,
an offset, a direct outbox below its limit) written as one loop, to estimate what inlining
``_deliver``/``push``/``mark`` and ``flush_direct`` into two loops would save. The prototype
lives here only; quart_app/ is not changed.

    .venv/bin/python bench/dispatch_micro.py [--clients 10000] [--publications 200]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from quart_app.realtime.auth import Principal  # noqa: E402
from quart_app.realtime.broker import Publication, encode_json  # noqa: E402
from quart_app.realtime.broker_memory import MemoryBroker  # noqa: E402
from quart_app.realtime.hub import Connection, Hub  # noqa: E402
from quart_app.realtime.metrics import Metrics  # noqa: E402
from quart_app.realtime.outbox import Flusher, Outbox  # noqa: E402

HIGH_WATER = 1024 * 1024


class CountingTransport:
    __slots__ = ("bytes", "writes")

    def __init__(self) -> None:
        self.bytes = 0
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        self.bytes += len(data)

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0


def tight_dispatch(hub: Hub, publication: Publication) -> list:
    """Prototype: the common case in one loop; returns the outboxes to flush."""
    channel = publication.channel
    offset = publication.offset
    dirty: list = []
    add = dirty.append
    for conn in hub._channels.get(channel, ()):
        sub = conn.subs[channel]
        if sub.pending is not None:
            sub.pending.append(publication)
            continue
        if offset is not None:
            if offset <= sub.last:
                continue
            sub.last = offset
        outbox = conn.outbox
        if outbox.closed:
            continue
        items = outbox._items
        items.append(publication)
        if len(items) == 1 and outbox._direct is not None:
            add(outbox)
        elif len(items) > outbox._limit:
            outbox._compact()
    return dirty


def tight_flush(dirty: list, frame: bytes) -> None:
    for outbox in dirty:
        items = outbox._items
        transport = outbox._direct
        if len(items) == 1 and not transport.is_closing() \
                and transport.get_write_buffer_size() <= HIGH_WATER:
            outbox._items = []
            transport.write(frame)
        else:
            outbox.flush_direct(HIGH_WATER)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=10000)
    parser.add_argument("--publications", type=int, default=200)
    args = parser.parse_args()
    broker = MemoryBroker()
    await broker.connect()
    hub = Hub(broker, Metrics(), max_connections_per_user=20)
    flusher = Flusher(HIGH_WATER)
    transports = []
    for user in range(args.clients):
        outbox = Outbox(1000, lambda: None)
        conn = Connection(Principal(user_id=user + 1, expires_at=time.time() + 3600), outbox, "ws")
        hub.connect(conn)
        transport = CountingTransport()
        transports.append(transport)
        outbox.use_transport(transport, flusher)
        await hub.subscribe(conn, "dashboard")
    flusher._flush()
    for transport in transports:  # forget the acks
        transport.writes = transport.bytes = 0
    data = {"type": "feed_item", "ts": time.time(), "text": "x" * 200}

    def publication(i: int) -> Publication:
        body = {"channel": "dashboard", "data": data, "offset": i}
        return Publication("dashboard", data, i, encode_json(body).encode(), time.time())

    results = {}
    offset = 10
    for name in ("current", "tight", "current", "tight"):
        dispatch_ns = flush_ns = 0
        for _ in range(args.publications):
            offset += 1
            pub = publication(offset)
            t0 = time.perf_counter_ns()
            if name == "current":
                hub.dispatch(pub)
                t1 = time.perf_counter_ns()
                flusher._flush()
            else:
                dirty = tight_dispatch(hub, pub)
                t1 = time.perf_counter_ns()
                tight_flush(dirty, pub.ws_frame())
            t2 = time.perf_counter_ns()
            dispatch_ns += t1 - t0
            flush_ns += t2 - t1
            flusher._dirty.clear()
        deliveries = args.publications * args.clients
        results[name] = (dispatch_ns / deliveries, flush_ns / deliveries)
        print(f"{name:8s} dispatch {dispatch_ns / deliveries / 1000:.3f} us + flush "
              f"{flush_ns / deliveries / 1000:.3f} us = "
              f"{(dispatch_ns + flush_ns) / deliveries / 1000:.3f} us per delivery "
              f"({args.clients} clients, {args.publications} publications one at a time)")
    writes = sum(t.writes for t in transports)
    assert writes == 4 * args.publications * args.clients, writes  # every delivery written once
    await asyncio.sleep(0)


if __name__ == "__main__":
    if len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {0})
    asyncio.run(main())
