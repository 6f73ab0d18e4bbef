"""Generic publish throughput, in one process: ``POST /api/publish`` single publications and
batches through Quart's test client (the whole handler: body read, parse, validation, publish,
answer; no socket), on the embedded broker and on real Redis, plus
:class:`quart_app.publisher.RedisPublisher` straight into Redis. Zero loss is counted by offsets: every channel's last offset must equal what was sent to
it, and the answers must hold every offset once.

    .venv/bin/python bench/publish.py                        # 10 x 1000-item batches per case
    .venv/bin/python bench/publish.py --batches 20 --channels 1,100 --key
    taskset -c 0 .venv/bin/python bench/publish.py --singles 2000   # one core, as RESULTS.md
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from quart_app import create_app  # noqa: E402
from quart_app.config import load_settings  # noqa: E402
from quart_app.publisher import RedisPublisher  # noqa: E402

API_KEY = "bench-api-key"
SECRET = "bench-secret-0123456789abcdef-0123456789"


def batch(number: int, size: int, channels: int) -> list[dict]:
    return [{"channel": f"session:s{i % channels}:live",
             "data": {"type": "score.updated", "batch": number, "i": i, "user": f"u{i % 37}",
                      "wpm": 40 + i % 80}} for i in range(size)]


def check(answers: list[list[dict]], latest: dict[str, int], sent: dict[str, int]) -> str:
    """'ok', or what was lost or doubled."""
    seen: dict[str, set[int]] = {}
    for results in answers:
        for result in results:
            for ref in result["published"]:
                seen.setdefault(ref["channel"], set()).add(ref["offset"])
    for channel, count in sent.items():
        if latest.get(channel) != count or seen.get(channel) != set(range(1, count + 1)):
            return f"LOSS on {channel}: sent {count}, latest {latest.get(channel)}"
    return "ok"


def make_app(redis_url: str | None):
    env = {"JWT_SECRET": SECRET, "PULSE_API_KEY": API_KEY,
           "DATABASE_URL": f"sqlite:///{tempfile.mkdtemp()}/bench.db"}
    if redis_url:
        env.update(REDIS_URL=redis_url, PULSE_REDIS_PREFIX=f"pulse-bench:{uuid.uuid4().hex}:")
    return create_app(load_settings(env))


async def via_http_single(redis_url: str | None, args, channels: int) -> tuple[float, str]:
    """One publication per request, one request at a time (the latency-bound path)."""
    app = make_app(redis_url)
    async with app.test_app():
        client = app.test_client()
        items = [item for n in range(args.singles // args.size + 1)
                 for item in batch(n, args.size, channels)][:args.singles]
        headers = {"X-API-Key": API_KEY, "Content-Type": "application/json"}
        bodies = [json.dumps(item) for item in items]
        answers = []
        started = time.perf_counter()
        for body in bodies:
            response = await client.post("/api/publish", data=body, headers=headers)
            assert response.status_code == 202, await response.get_data()
            answers.append([await response.get_json()])
        elapsed = time.perf_counter() - started
        broker = app.extensions["pulse"].broker
        latest = {f"session:s{c}:live": (await broker.latest(f"session:s{c}:live"))[0]
                  for c in range(channels)}
    sent: dict[str, int] = {}
    for item in items:
        sent[item["channel"]] = sent.get(item["channel"], 0) + 1
    return len(items) / elapsed, check(answers, latest, sent)


async def via_http(redis_url: str | None, args, channels: int) -> tuple[float, str]:
    app = make_app(redis_url)
    async with app.test_app():
        client = app.test_client()
        bodies = [json.dumps(batch(n, args.size, channels)) for n in range(args.batches)]
        answers = []
        started = time.perf_counter()
        for n, body in enumerate(bodies):
            headers = {"X-API-Key": API_KEY, "Content-Type": "application/json"}
            if args.key:
                headers["Idempotency-Key"] = f"bench-{n}"
            response = await client.post("/api/publish", data=body, headers=headers)
            assert response.status_code == 202, await response.get_data()
            answers.append((await response.get_json())["results"])
        elapsed = time.perf_counter() - started
        broker = app.extensions["pulse"].broker
        latest = {f"session:s{c}:live": (await broker.latest(f"session:s{c}:live"))[0]
                  for c in range(channels)}
    return args.batches * args.size / elapsed, check(answers, latest, sent_per(args, channels))


async def via_redis(redis_url: str, args, channels: int) -> tuple[float, str]:
    prefix = f"pulse-bench:{uuid.uuid4().hex}:"
    async with RedisPublisher(redis_url, prefix) as publisher:
        items = [batch(n, args.size, channels) for n in range(args.batches)]
        answers = []
        started = time.perf_counter()
        for n, body in enumerate(items):
            key = f"bench-{n}" if args.key else None
            answers.append((await publisher.batch(body, idempotency_key=key))["results"])
        elapsed = time.perf_counter() - started
        latest = {f"session:s{c}:live": (await publisher.broker.latest(f"session:s{c}:live"))[0]
                  for c in range(channels)}
    return args.batches * args.size / elapsed, check(answers, latest, sent_per(args, channels))


def sent_per(args, channels: int) -> dict[str, int]:
    sent: dict[str, int] = {}
    for i in range(args.size):
        channel = f"session:s{i % channels}:live"
        sent[channel] = sent.get(channel, 0) + args.batches
    return sent


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--channels", default="100,1", help="channels per batch, comma-separated")
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--key", action="store_true", help="send an Idempotency-Key per batch")
    parser.add_argument("--singles", type=int, default=2000,
                        help="single-publication requests per case (0: skip)")
    args = parser.parse_args()
    logging.disable(logging.INFO)
    print(f"{args.batches} x {args.size}-item batches, Idempotency-Key: {args.key}")
    for channels in (int(c) for c in args.channels.split(",")):
        cases = []
        if args.singles:
            cases += [("HTTP single, embedded", lambda: via_http_single(None, args, channels)),
                      ("HTTP single, Redis", lambda: via_http_single(args.redis, args, channels))]
        for name, run in cases + [("HTTP, embedded broker", lambda: via_http(None, args, channels)),
                          ("HTTP, Redis", lambda: via_http(args.redis, args, channels)),
                          ("RedisPublisher", lambda: via_redis(args.redis, args, channels))]:
            rate, loss = await run()
            print(f"  {name:22} {channels:4} channel(s): {rate:9,.0f} publications/s  {loss}")


if __name__ == "__main__":
    asyncio.run(main())
