"""The three ways the bench publishes a feed item, each stamping ``"ts"`` (unix seconds) into it.

* ``lua``  - the service's own path: :meth:`quart_app.realtime.broker_redis.RedisBroker.publish` with the
  server's prefix (offset + history + PUBLISH in one Lua script), channel ``dashboard``.
* ``raw``  - seed 000's path: ``PUBLISH pubsub:feed_item <json>``; the bridge delivers it on
  ``dashboard`` as ``{"type":"feed_item", ...}``. The only path the seed baseline understands.
* ``api``  - ``POST /api/events`` with ``X-API-Key`` (``{"type":"feed_item","data":{...}}``),
  over one keep-alive HTTP/1.1 connection. Absent (404/405) until ingest lands: reported as such.

The payload is a realistic feed item whose publication frame is ~250 bytes. It never carries
``user_id``: on ``dashboard`` that would make it a send-to-user message (DESIGN §7).
"""
from __future__ import annotations

import asyncio
import json
import time

import redis.asyncio as aioredis


def feed_item(seq: int, ts: float) -> dict:
    return {
        "type": "feed_item",
        "ts": ts,
        "seq": seq,
        "id": 100000 + seq,
        "event_type": "block_found",
        "username": "miner-4242",
        "title": "Block #881234 found!",
        "text": "Block #881234 found by miner-4242",
        "description": "at difficulty 1.2T (reward 3.125 BTC)",
        "icon": "block",
        "created_at": "2026-01-01T12:00:00Z",
    }


class Unavailable(Exception):
    """The publish path does not exist on this server (e.g. /api/events not built yet)."""


class Publisher:
    def __init__(self, mode: str, redis_url: str, prefix: str, host: str = "127.0.0.1",
                 port: int = 0, api_key: str = "") -> None:
        self.mode = mode
        self.redis_url = redis_url
        self.prefix = prefix
        self.host, self.port, self.api_key = host, port, api_key
        self._broker = None
        self._redis: aioredis.Redis | None = None
        self._http: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def open(self) -> None:
        if self.mode == "lua":
            from quart_app.realtime.broker_redis import RedisBroker

            self._broker = RedisBroker(self.redis_url, self.prefix)
            await self._broker.connect()
        elif self.mode == "raw":
            self._redis = aioredis.Redis.from_url(self.redis_url)
        elif self.mode == "api":
            self._http = await asyncio.open_connection(self.host, self.port)
        else:
            raise ValueError(f"unknown publish mode {self.mode!r}")

    async def close(self) -> None:
        if self._broker is not None:
            await self._broker.close()
        if self._redis is not None:
            await self._redis.aclose()
        if self._http is not None:
            self._http[1].close()

    async def publish(self, seq: int) -> None:
        ts = time.time()
        item = feed_item(seq, ts)
        if self.mode == "lua":
            await self._broker.publish("dashboard", item)  # type: ignore[union-attr]
        elif self.mode == "raw":
            del item["type"]  # the bridge adds {"type": "feed_item"} from the channel name
            await self._redis.publish("pubsub:feed_item", json.dumps(item))  # type: ignore
        else:
            # Ingest publishes the stored feed row (id, text, description, feed_type, metadata,
            # created_at), not the body: the stamp rides in ``metadata``.
            await self._post({"type": "feed_item", "data": {
                "text": item["text"], "description": item["description"],
                "feed_type": "block_found", "metadata": {"ts": ts, "seq": seq}}})

    async def _post(self, body: dict) -> None:
        reader, writer = self._http  # type: ignore[misc]
        raw = json.dumps(body).encode()
        writer.write(b"POST /api/events HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json"
                     b"\r\nX-API-Key: %s\r\nContent-Length: %d\r\n\r\n%s" % (
                         self.host.encode(), self.port, self.api_key.encode(), len(raw), raw))
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        payload = await reader.readexactly(length) if length else b""
        if status in (404, 405):
            raise Unavailable(f"POST /api/events answered {status}")
        if status >= 300:
            raise RuntimeError(f"POST /api/events answered {status}: {payload[:200]!r}")

    async def burst(self, count: int, start_seq: int = 0, concurrency: int = 1) -> float:
        """Publish ``count`` items back to back, up to ``concurrency`` in flight (the Lua script
        gives offsets in the order Redis runs it, so listeners still see them in order); return
        the start time. ``api`` has one HTTP connection: always one at a time."""
        started = time.time()
        if concurrency <= 1 or self.mode == "api":
            for i in range(count):
                await self.publish(start_seq + i)
            return started
        queue = iter(range(start_seq, start_seq + count))

        async def worker() -> None:
            for seq in queue:
                await self.publish(seq)

        await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))
        return started

    async def paced(self, rate: float, seconds: float, start_seq: int = 0) -> int:
        """Publish ``rate`` items per second for ``seconds`` on an absolute schedule."""
        count = max(1, int(rate * seconds))
        t0 = time.monotonic()
        for i in range(count):
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.publish(start_seq + i)
        return count
