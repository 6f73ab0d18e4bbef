"""Where the memory of an idle connection goes: tracemalloc around N WebSocket clients.

Runs Pulse (or the seed baseline) in this process on Hypercorn + uvloop with tracemalloc on,
connects N clients with bench/wsclient (subscribed to ``dashboard``), and prints the allocation
sites that grew, in bytes per connection, grouped by file:line (``--group file`` for files).
Python-level allocations only: the kernel's socket buffers are not in RSS anyway, and uvloop's
C-level objects (libuv handles) show up in RSS but not here — the gap between this total and
run.py's RSS figure is that, plus allocator overhead.

    .venv/bin/python bench/memprofile.py --clients 2000 [--server baseline] [--top 30]
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from run import SECRET, build_client, free_port, write_tokens  # noqa: E402


def _short(path: str) -> str:
    for marker in ("site-packages/", "lib/python3.11/", "/work/main/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--server", default="pulse", choices=["pulse", "baseline"])
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--group", default="lineno", choices=["lineno", "filename", "traceback"])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="pulse-mem-")
    os.environ.update(REDIS_URL=args.redis_url, JWT_SECRET=SECRET,
                      PULSE_REDIS_PREFIX=f"pulse-bench:{uuid.uuid4().hex[:10]}:",
                      DATABASE_URL=f"sqlite:///{work}/bench.db")
    import logging

    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    if args.server == "pulse":
        from quart_app import create_app

        app = create_app()
    else:
        import baseline_seed

        app = baseline_seed.app
    logging.getLogger().setLevel(logging.WARNING)
    port = free_port()
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    stop = asyncio.Event()
    server = asyncio.get_running_loop().create_task(serve(app, config, shutdown_trigger=stop.wait))
    await asyncio.sleep(2)
    binary = build_client(os.path.join(HERE, "out"))
    tokens = os.path.join(work, "tokens.txt")
    write_tokens(tokens, args.clients + 20)

    async def connect(n: int):
        proc = await asyncio.create_subprocess_exec(
            binary, "--port", str(port), "--n", str(n), "--tokens", tokens,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        line = await asyncio.wait_for(proc.stdout.readline(), 120)
        return proc, line

    warm, _ = await connect(20)  # first connections import and allocate shared things
    await asyncio.sleep(2)
    gc.collect()
    tracemalloc.start(25 if args.group == "traceback" else 1)
    before = tracemalloc.take_snapshot()
    proc, line = await connect(args.clients)
    print(line.decode().strip())
    await asyncio.sleep(5)  # the snapshot query and acks are done
    gc.collect()
    after = tracemalloc.take_snapshot()
    stats = after.compare_to(before, args.group)
    total = sum(s.size_diff for s in stats)
    print(f"\n{args.server}: python allocations grew {total / 1024 / args.clients:.1f} KiB per "
          f"connection ({args.clients} clients)\n")
    for stat in stats[: args.top]:
        frame = stat.traceback[0]
        where = f"{_short(frame.filename)}:{frame.lineno}"
        if args.group == "traceback":
            where = " <- ".join(f"{_short(f.filename)}:{f.lineno}" for f in
                                list(stat.traceback)[:6])
        print(f"{stat.size_diff / args.clients:9.0f} B/conn  {stat.count_diff / args.clients:5.1f}"
              f" blocks/conn  {where}")
    for p in (proc, warm):
        p.stdin.write(b"quit\n")
        await p.stdin.drain()
        await asyncio.wait_for(p.wait(), 30)
    stop.set()
    await asyncio.wait_for(server, 30)


if __name__ == "__main__":
    import uvloop

    uvloop.install()
    t0 = time.time()
    asyncio.run(main())
    print(f"\n({time.time() - t0:.0f} s)")
