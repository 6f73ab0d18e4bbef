#!/usr/bin/env python
"""What one round trip costs the server, and what batching saves (docs/scaling.md, "Reconnect
storms"): the CPU of this process per ask, through the service's own broker reads, stats cache
and stats query, when asks go k at a time (k = 1: alone; larger k: one round trip shared).

Runs the app in process (uvloop) on Redis and a fresh SQLite file, pinned to one core if asked:

    taskset -c 0 .venv/bin/python bench/batch_cost.py [--asks 3000] [--sizes 1,3,10,50]

CPU is ``getrusage`` of this process (the SQLite worker thread included, Redis's own excluded).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import tempfile
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(args) -> None:
    from quart_app import create_app
    from quart_app.config import load_settings
    from quart_app.dashboard.stats import stats_batch
    from quart_app.server import tune_gc

    work = tempfile.mkdtemp(prefix="pulse-batch-")
    app = create_app(load_settings({
        "JWT_SECRET": "b" * 40, "PULSE_API_KEY": "bench", "DATABASE_URL": f"sqlite:///{work}/b.db",
        "REDIS_URL": args.redis_url, "PULSE_REDIS_PREFIX": f"pulse-bench:{uuid.uuid4().hex[:8]}:"}))
    async with app.test_app():
        svc = app.extensions["pulse"]
        tune_gc()
        user = iter(range(1_000_000, 10_000_000))
        kinds = {
            "broker latest offset": lambda i: svc.broker.latest("dashboard"),
            "stats cache get (2 keys)": lambda i: svc.cache.get_many([f"a{i}", f"b{i}"]),
            "stats cache set": lambda i: svc.cache.set(f"a{i}", {"x": 1, "y": [1, 2]}, 10),
            "stats query (cold user)": lambda i: stats_batch(svc).compute(next(user)),
        }
        print(f"{'ask':28s}" + "".join(f"{'k=' + str(k):>10s}" for k in args.sizes)
              + "   (µs of CPU per ask)")
        for name, ask in kinds.items():
            row = []
            for k in args.sizes:
                await asyncio.gather(*(ask(i) for i in range(k)))  # warm
                started = cpu()
                for i in range(0, args.asks, k):
                    await asyncio.gather(*(ask(i + j) for j in range(k)))
                row.append((cpu() - started) / args.asks * 1e6)
            print(f"{name:28s}" + "".join(f"{v:10.1f}" for v in row))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--asks", type=int, default=3000)
    parser.add_argument("--sizes", default="1,3,10,50",
                        type=lambda v: [int(x) for x in v.split(",")])
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL",
                                                              "redis://127.0.0.1:6379/0"))
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(measure(args))


if __name__ == "__main__":
    main()
