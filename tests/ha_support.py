"""End-to-end traffic through real Pulse processes on a Redis Cluster or behind Sentinel.

* :func:`two_servers` runs two ``python -m quart_app serve`` processes on one ``REDIS_URL``.
* :class:`Subscriber` is a WebSocket client that behaves like the packaged one where it matters
  here: on a close (4010: "recover from history") or a hole in a channel's offsets it
  reconnects at once and resubscribes each channel with ``since`` and ``epoch``; it records
  every publication, every hole and every ``recovered``.
* :class:`Producer` publishes numbered events with ``POST /api/publish``, one channel at a time
  in order, each with an ``Idempotency-Key`` that it reuses until the publish is acknowledged
  (202), so a retry through a failover never publishes twice.
* :func:`check_delivery` is the verdict: a subscriber got every acknowledged publication of a
  channel, in order, with contiguous offsets, or it was told ``recovered: false`` for it.
"""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import httpx
import websockets

from quart_app.realtime.auth import mint_token

from .conftest import API_KEY, SECRET, free_port
from .processes import pulse_process


@asynccontextmanager
async def two_servers(redis_url: str, tmp_path: Path, prefix: str, **extra_env: str):
    async with AsyncExitStack() as stack:
        bases = []
        for name in ("a", "b"):
            port = free_port()
            env = {"REDIS_URL": redis_url, "DATABASE_URL": f"sqlite:///{tmp_path}/{name}.db",
                   "JWT_SECRET": SECRET, "PULSE_API_KEY": API_KEY,
                   "PULSE_REDIS_PREFIX": prefix, "PULSE_LOG_LEVEL": "WARNING", **extra_env}
            await stack.enter_async_context(
                pulse_process(port, env, log_path=tmp_path / f"pulse-{name}.log"))
            bases.append(f"127.0.0.1:{port}")
        yield bases


class Subscriber:
    def __init__(self, address: str, channels: list[str], user: int) -> None:
        self.address = address
        self.channels = channels
        self.token = mint_token(SECRET, user)
        self.received: dict[str, list[tuple[int, int]]] = {c: [] for c in channels}
        self.offset: dict[str, int] = {}
        self.epoch: dict[str, str] = {}
        self.not_recovered: dict[str, int] = {c: 0 for c in channels}
        self.reconnects = 0
        self.holes = 0
        self.closes: list[int | str | None] = []
        self._subscribed: dict[str, asyncio.Event] = {c: asyncio.Event() for c in channels}
        self._task: asyncio.Task | None = None
        self._stop = False
        self._resuming: set[str] = set()   # channels of this connection subscribed with since

    async def start(self) -> "Subscriber":
        self._task = asyncio.get_running_loop().create_task(self._run())
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in self._subscribed.values())),
                               10)
        return self

    async def stop(self) -> None:
        self._stop = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while not self._stop:
            try:
                async with websockets.connect(f"ws://{self.address}/ws?token={self.token}",
                                              max_size=2**22) as ws:
                    self._resuming = set(self.offset)
                    for channel in self.channels:
                        frame = {"action": "subscribe", "channel": channel}
                        if channel in self.offset:
                            frame["since"] = self.offset[channel]
                            if self.epoch.get(channel):
                                frame["epoch"] = self.epoch[channel]
                        await ws.send(json.dumps(frame))
                    async for raw in ws:
                        if not self._take(json.loads(raw)):
                            self.closes.append("hole")
                            break   # recover, as the packaged client does
                    else:
                        self.closes.append(ws.close_code)
            except websockets.ConnectionClosed as closed:
                self.closes.append(closed.rcvd.code if closed.rcvd else None)
            except OSError:
                await asyncio.sleep(0.2)
            self.reconnects += 1

    def _take(self, frame: dict) -> bool:
        """Record a frame; False for a publication after a hole (it is not recorded)."""
        channel = frame.get("channel")
        if frame.get("type") == "subscribed" and channel in self.received:
            if frame.get("recovered") is False and channel in self._resuming:
                self.not_recovered[channel] += 1  # (a first subscribe always says false)
            self.offset[channel] = frame["offset"]
            self.epoch[channel] = frame.get("epoch", "")
            self._subscribed[channel].set()
        elif "offset" in frame and "data" in frame and channel in self.received:
            if channel in self.offset and frame["offset"] != self.offset[channel] + 1:
                self.holes += 1
                return False
            self.received[channel].append((frame["offset"], frame["data"]["n"]))
            self.offset[channel] = frame["offset"]
        return True

    def numbers(self, channel: str) -> list[int]:
        return [n for _, n in self.received[channel]]


class Producer:
    """Publishes ``n`` = 0, 1, 2 … on every channel in turn, through the given servers."""

    def __init__(self, bases: list[str], channels: list[str]) -> None:
        self.bases = bases
        self.channels = channels
        self.acked: dict[str, list[int]] = {c: [] for c in channels}
        self.next: dict[str, int] = {c: 0 for c in channels}
        self.offset: dict[str, int] = {}   # the last acknowledged offset per channel
        self.failures = 0
        self._turn = 0

    async def publish_round(self, http: httpx.AsyncClient, deadline: float) -> None:
        for channel in self.channels:
            await self.publish(http, channel, deadline)

    async def publish(self, http: httpx.AsyncClient, channel: str, deadline: float) -> None:
        n = self.next[channel]
        key = f"{channel}-{n}-{uuid.uuid4().hex[:8]}"
        body = {"channel": channel, "data": {"type": "tick", "n": n}}
        while True:
            base = self.bases[self._turn % len(self.bases)]
            self._turn += 1
            try:
                answer = await http.post(f"http://{base}/api/publish", json=body,
                                         headers={"X-API-Key": API_KEY, "Idempotency-Key": key})
                if answer.status_code == 202:
                    self.acked[channel].append(n)
                    self.offset[channel] = answer.json()["offset"]
                    self.next[channel] = n + 1
                    return
            except httpx.HTTPError:
                pass
            self.failures += 1
            if time.monotonic() > deadline:
                raise AssertionError(f"publish on {channel} not acknowledged in time")
            await asyncio.sleep(0.1)


def check_delivery(subscriber: Subscriber, producer: Producer, channel: str) -> None:
    """Every acknowledged publication, in order, offsets contiguous; or ``recovered: false``.

    Whatever was received is in publishing order with increasing offsets and no repeat, in any
    case. A subscriber told ``recovered: false`` for the channel may have missed publications;
    one that was not must have all acknowledged ones, each exactly once, offsets contiguous."""
    got = subscriber.received[channel]
    numbers = [n for _, n in got]
    offsets = [o for o, _ in got]
    assert numbers == sorted(set(numbers)), (channel, numbers)
    assert offsets == sorted(set(offsets)), (channel, offsets)
    if subscriber.not_recovered[channel]:
        return
    missing = sorted(set(producer.acked[channel]) - set(numbers))
    assert not missing, f"{channel}: acknowledged {missing} never arrived, no recovered:false"
    assert offsets == list(range(offsets[0], offsets[0] + len(offsets))), (channel, offsets)


def caught_up(subscribers: list[Subscriber], producer: Producer) -> bool:
    """Every subscriber is at the last acknowledged offset of every channel (by a publication,
    or by the ack of a resubscription)."""
    return all(sub.offset.get(c, -1) >= producer.offset.get(c, 0)
               for sub in subscribers for c in producer.channels)


def describe(subscribers: list[Subscriber], producer: Producer, logs: Path) -> str:
    """What each side saw, and the servers' logs: the message of a failed wait."""
    lines = [f"acked: { {c: (producer.acked[c][-3:], producer.offset.get(c)) for c in producer.channels} }"]
    for sub in subscribers:
        lines.append(f"{sub.address}: closes {sub.closes} not recovered {sub.not_recovered} "
                     f"last { {c: sub.received[c][-3:] for c in sub.channels} }")
    for log in sorted(logs.glob("pulse-*.log")):
        lines.append(f"--- {log.name}\n" + log.read_text(errors="replace")[-3000:])
    return "\n".join(lines)


async def until(predicate, timeout: float, what: str, explain=lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s\n{explain()}")
        await asyncio.sleep(0.05)


async def traffic_through_a_failover(bases: list[str], channels: list[str], crash,
                                     logs: Path) -> tuple[list[Subscriber], Producer, float]:
    """Subscribers on both servers; publish; run ``crash`` (blocking: kill a node and wait for
    the promotion) in a thread while publishing goes on; publish until every subscriber has
    caught up; then one more round, which must reach everyone. Returns the subscribers, the
    producer and the seconds from the crash to that last round's delivery."""
    subs = [await Subscriber(address, channels, user).start()
            for user, address in enumerate(bases, start=1)]
    producer = Producer(bases, channels)
    explain = lambda: describe(subs, producer, logs)  # noqa: E731
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            deadline = time.monotonic() + 45
            for _ in range(3):
                await producer.publish_round(http, deadline)
            crashed = asyncio.get_running_loop().run_in_executor(None, crash)
            started = time.monotonic()
            while time.monotonic() < started + 1.0 or not crashed.done():
                await producer.publish_round(http, deadline)
            await crashed
            await producer.publish_round(http, deadline)
            await until(lambda: caught_up(subs, producer), 20, "subscribers caught up", explain)
            await producer.publish_round(http, deadline)
            last = {c: producer.acked[c][-1] for c in channels}
            await until(lambda: all(s.numbers(c) and s.numbers(c)[-1] == last[c]
                                    for s in subs for c in channels), 10,
                        "the last round delivered", explain)
            flowing_after = time.monotonic() - started
    finally:
        for sub in subs:
            await sub.stop()
    for sub in subs:
        for channel in channels:
            check_delivery(sub, producer, channel)
    print(f"failover: publishes retried {producer.failures}, flowing again after "
          f"{flowing_after:.1f}s; " + "; ".join(
              f"{s.address} closes {s.closes}, holes {s.holes}, recovered:false on "
              f"{sorted(c for c, k in s.not_recovered.items() if k)}" for s in subs))
    return subs, producer, flowing_after
