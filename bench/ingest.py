"""Ingest throughput: ``POST /api/events`` at a paced rate for a while, zero loss checked.

Starts one Pulse server (pinned like ``run.py``: server on core 0, this process on core 1), opens
``--connections`` keep-alive HTTP connections and a WebSocket subscribed to the events'
channel, offers ``--rate`` events/s for ``--seconds`` (open loop: a request that answers late
delays only its own connection), and reports what was reached: events/s, POST latency
p50/p99/max, server CPU per event, and whether every event arrived on the WebSocket in offset
order with no gap.

    .venv/bin/python bench/ingest.py --rate 1000 --seconds 30                       # SQLite
    .venv/bin/python bench/ingest.py --rate 1000 --seconds 30 \\
        --postgres postgresql://postgres@127.0.0.1:5432/test                        # PG + Redis
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import procstat  # noqa: E402
from run import (API_KEY, SECRET, Server, finish_profile, free_port, pg_create,  # noqa: E402
                 pg_drop, start_profile)

BODIES = {
    # An event for nobody in particular: one insert-free publication (competition).
    "match_update": lambda i: {"type": "match_update", "data": {"match_id": f"m{i % 50}", "i": i}},
    # A miner's share: worker and per-day rows, a hashrate-free stats push (1/s per user).
    "share_submitted": lambda i: {"type": "share_submitted", "user_id": 1 + i % 200,
                                  "data": {"worker": "rig-1", "shares": 1, "difficulty": 5.0}},
}
CHANNEL = {"match_update": "competition", "share_submitted": "mining"}
# What user 1 (the WebSocket subscriber) receives: mining is sent-to-user (DESIGN §7).
MINE = {"match_update": lambda i: True, "share_submitted": lambda i: i % 200 == 0}


async def post_loop(host: str, port: int, seqs: list[int], kind: str, started: float,
                    rate: float, latencies: list[float], statuses: list[int]) -> None:
    """One keep-alive connection: each of ``seqs`` at its slot (``seq / rate``) or when free."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for seq in seqs:
            delay = started + seq / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            raw = json.dumps(BODIES[kind](seq)).encode()
            sent = time.monotonic()
            writer.write(b"POST /api/events HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: "
                         b"application/json\r\nX-API-Key: %s\r\nContent-Length: %d\r\n\r\n%s"
                         % (host.encode(), port, API_KEY.encode(), len(raw), raw))
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            await reader.readexactly(length)
            latencies.append(time.monotonic() - sent)
            statuses.append(int(head.split(b" ", 2)[1]))
    finally:
        writer.close()


async def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rate", type=float, default=1000.0, help="events offered per second")
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--type", default="match_update", choices=sorted(BODIES))
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--postgres", default=None, help="admin URL: a fresh database per run")
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    p.add_argument("--server-cpus", default="0")
    p.add_argument("--client-cpus", default="1")
    p.add_argument("--profile", default="", help="'ingest': py-spy record the server meanwhile")
    p.add_argument("--out", default=os.path.join(HERE, "out"))
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)

    import websockets  # the project's test dependency

    from quart_app.realtime.auth import mint_token

    if args.client_cpus and len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {int(c) for c in args.client_cpus.split(",")})
    work = tempfile.mkdtemp(prefix="pulse-ingest-")
    port = free_port()
    database_url = await pg_create(args.postgres) if args.postgres else None
    # SQLite runs embedded (no Redis), as the demo does; PostgreSQL runs with Redis.
    redis_url = args.redis_url if database_url else ""
    server = Server("pulse", port, args.workers, args.server_cpus if args.workers == 1 else "0,1",
                    sys.executable, work, redis_url, f"pulse-ingest:{uuid.uuid4().hex[:8]}:",
                    database_url=database_url)
    total = int(args.rate * args.seconds)
    result: dict = {"rate_offered": args.rate, "seconds": args.seconds, "events": total,
                    "type": args.type, "workers": args.workers,
                    "database": "postgresql" if database_url else "sqlite",
                    "broker": "redis" if database_url else "memory"}
    try:
        server.wait_ready()
        token = mint_token(SECRET, 1, ttl_seconds=3600)
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws?token={token}",
                                      max_queue=None) as ws:
            await ws.send(json.dumps({"action": "subscribe", "channel": CHANNEL[args.type]}))
            while json.loads(await ws.recv()).get("type") != "subscribed":
                pass
            offsets: list[int] = []
            expected = sum(1 for i in range(total) if MINE[args.type](i))

            async def receive() -> None:
                while len(offsets) < expected:
                    frame = json.loads(await ws.recv())
                    if frame.get("channel") == CHANNEL[args.type] and "offset" in frame:
                        offsets.append(frame["offset"])

            receiver = asyncio.ensure_future(receive())
            latencies: list[float] = []
            statuses: list[int] = []
            profiler = start_profile(args, server, f"{result['database']}-{args.type}",
                                     "ingest", args.seconds)
            cpu0 = procstat.CpuSample.take(server.pids)
            started = time.monotonic() + 0.2
            await asyncio.gather(*[
                post_loop("127.0.0.1", port, list(range(c, total, args.connections)), args.type,
                          started, args.rate, latencies, statuses)
                for c in range(args.connections)])
            answered = time.monotonic()
            try:
                await asyncio.wait_for(receiver, 30)
            except asyncio.TimeoutError:
                pass
            cpu = procstat.CpuSample.take(server.pids).since(cpu0)
            finish_profile(profiler, result, "ingest")
        latencies.sort()
        elapsed = answered - started
        result.update({
            "accepted": statuses.count(202), "statuses": sorted(set(statuses)),
            "events_per_s": round(total / elapsed, 1), "elapsed_s": round(elapsed, 2),
            "post_ms": {q: round(latencies[min(len(latencies) - 1, int(len(latencies) * f))]
                                 * 1e3, 2) for q, f in (("p50", .5), ("p99", .99), ("max", 1))},
            "server_cpu_ms_per_event": round(cpu["cpu_s"] / total * 1e3, 3),
            "server_cpu_pct": round(cpu["cpu_s"] / elapsed * 100 / max(1, args.workers), 1),
            # Every event user 1 may see arrived, in offset order; with no gap where the
            # channel is not sent-to-user (there the others' offsets fall in between).
            "delivered": len(offsets), "expected": expected,
            "in_order": all(a < b for a, b in zip(offsets, offsets[1:])),
            "no_gap": offsets == list(range(offsets[0], offsets[0] + len(offsets)))
            if offsets and args.type == "match_update" else None,
        })
    finally:
        server.stop()
        if database_url:
            await pg_drop(args.postgres, database_url)
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return result


if __name__ == "__main__":
    asyncio.run(main())
