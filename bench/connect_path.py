#!/usr/bin/env python
"""A WebSocket connect through Pulse's own code with no sockets (bench/RESULTS.md, "Where a
connect's CPU goes"): the edge's first-request protocol reads an upgrade, answers the 101,
verifies the token and opens the session, then a subscribe frame is fed and the ack (and, on
``dashboard``, the snapshot) awaited, on fake transports that only record writes.

Redis (the broker and the stats cache) and SQLite are real; what is left out is the kernel and
uvloop's socket work, so what it prints is the Python CPU a connect costs. Each round connects
``--n`` new users (64 at a time, like the C client), then closes them outside the measured CPU;
writes are awaited, not polled (a poll loop's CPU grew with Redis's latency and was counted as
the server's: before 2026-12-07 this printed 1.5–2.5x the figure). The best round is printed:

    taskset -c 0 .venv/bin/python bench/connect_path.py [--channel dashboard|mining] \
        [--same-token] [--profile]
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import os
import resource
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

SECRET = "connect-path-" + "0" * 32
KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class FakeTransport:
    """What the edge's protocols use of an asyncio transport; writes are kept."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.protocol = None
        self.closing = False
        self.waiter: tuple[int, asyncio.Future] | None = None  # (writes, future) awaited

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        waiter = self.waiter
        if waiter is not None and len(self.writes) >= waiter[0] and not waiter[1].done():
            waiter[1].set_result(None)

    async def written(self, count: int) -> None:
        """Until ``count`` writes were made (awaited, not polled: a poll loop's CPU would be
        counted as the server's)."""
        if len(self.writes) < count:
            self.waiter = (count, asyncio.get_running_loop().create_future())
            await self.waiter[1]
            self.waiter = None

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return self.closing

    def set_protocol(self, protocol) -> None:
        self.protocol = protocol

    def get_extra_info(self, name: str, default=None):
        return ("127.0.0.1", 40000) if name == "peername" else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        self.closing = True

    abort = close

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.closing = True


def client_frame(text: str) -> bytes:
    data, mask = text.encode(), b"\x01\x02\x03\x04"
    return bytes((0x81, 0x80 | len(data))) + mask + bytes(
        b ^ mask[i % 4] for i, b in enumerate(data))


async def measure(args) -> None:
    from hypercorn.config import Config

    from quart_app import create_app
    from quart_app.config import load_settings
    from quart_app.edge.routing import FirstRequest
    from quart_app.realtime.auth import mint_token
    from quart_app.server import tune_gc

    work = tempfile.mkdtemp(prefix="pulse-connect-")
    app = create_app(load_settings({
        "JWT_SECRET": SECRET, "PULSE_API_KEY": "bench", "DATABASE_URL": f"sqlite:///{work}/c.db",
        "REDIS_URL": args.redis_url, "PULSE_REDIS_PREFIX": f"pulse-bench:{uuid.uuid4().hex[:8]}:"}))
    config = Config()
    config.accesslog = None
    subscribe = client_frame('{"action":"subscribe","channel":"%s"}' % args.channel)
    async with app.test_app():
        svc = app.extensions["pulse"]
        loop = asyncio.get_running_loop()
        total = (args.rounds + 2) * args.n
        tokens = [mint_token(SECRET, user) for user in range(1, total + 1)]
        if args.same_token:
            tokens = [tokens[0]] * total
            svc.hub.max_connections_per_user = total
        opened = []

        async def connect(i: int) -> None:
            transport = FakeTransport()
            first = FirstRequest(svc, config, None, loop)
            transport.protocol = first
            first.connection_made(transport)
            first.data_received(
                f"GET /ws?token={tokens[i]} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket"
                f"\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n".encode())
            await transport.written(1)  # the 101, once the endpoint owns the socket
            assert transport.protocol is not first, transport.writes[0][:40]
            transport.protocol.data_received(subscribe)
            await transport.written(2)  # then the ack (with its snapshot)
            opened.append(transport.protocol)

        async def one_round(start: int) -> None:
            for i in range(start, start + args.n, 64):
                await asyncio.gather(*(connect(j) for j in range(i, min(i + 64, start + args.n))))

        async def close_round() -> None:
            """The round's connections go (outside the measured CPU), so any number of rounds
            stays under the process's connection cap."""
            for endpoint in opened:
                endpoint.connection_lost(None)
            opened.clear()
            await asyncio.sleep(0.3)  # what the departures set off (presence, sweeps) runs
            gc.collect()              # and their garbage goes, before the next round

        await one_round(0)  # warm
        await close_round()
        tune_gc()
        best = float("inf")
        for r in range(1, args.rounds + 1):
            started = cpu()
            await one_round(r * args.n)
            best = min(best, cpu() - started)
            await close_round()
        if args.profile:  # one more round, under cProfile (its figures are inflated)
            import cProfile
            import pstats

            profile = cProfile.Profile()
            profile.enable()
            await one_round((args.rounds + 1) * args.n)
            profile.disable()
            pstats.Stats(profile).sort_stats("cumtime").print_stats(40)
        print(f"{args.channel}: {best / args.n * 1e6:.1f} µs of CPU per connect "
              f"(best of {args.rounds} rounds of {args.n}, no sockets)")
        for endpoint in opened:
            endpoint.connection_lost(None)
        await asyncio.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--channel", default="dashboard")
    parser.add_argument("--same-token", action="store_true",
                        help="one token (and user) for every connect: verified once")
    parser.add_argument("--profile", action="store_true", help="cProfile the last round")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL",
                                                              "redis://127.0.0.1:6379/0"))
    args = parser.parse_args()
    import uvloop

    uvloop.install()
    started = time.monotonic()
    asyncio.run(measure(args))
    print(f"({time.monotonic() - started:.1f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
