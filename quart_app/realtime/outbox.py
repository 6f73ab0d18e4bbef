"""The bounded per-connection queue between the hub and a socket (DESIGN §10).

``push`` never blocks and never awaits: the hub hands every recipient its frame and moves on, so a
slow client can only ever fill its own outbox. When it overflows, latest-value events are
conflated to the newest per key; if that does not make room the connection is closed as a slow
consumer (4008) and recovers from history when it comes back.

Two ways to empty an outbox:

* **direct** (a socket Pulse serves itself: see direct.py): the :class:`Flusher` writes
  everything queued during this loop iteration as one ``transport.write`` of pre-framed bytes —
  no task, no ASGI message, no per-client framing (for an SSE stream: one HTTP chunk of SSE
  records). While the kernel buffer is above the high-water mark it stops writing and lets the
  outbox fill instead.
* **awaited** (streams served through Quart): a consumer coroutine awaits
  :meth:`Outbox.drain` and gets everything queued so far as one batch.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

from .namespaces import latest_value_key

def conflation_key(item: Any) -> tuple | None:
    """Items with the same key supersede each other (the channel's namespace says which event
    types are latest-value, and their key fields); None for everything that must be kept."""
    channel = item.channel
    if channel is None:
        return None
    return latest_value_key(channel, item.event_type, item.data)


class Outbox:
    __slots__ = ("_items", "_limit", "_waiter", "_direct", "_flusher", "_render", "_on_overflow",
                 "closed", "conflated", "_metrics", "_held")

    def __init__(self, limit: int, on_overflow: Callable[[], None], metrics: Any = None) -> None:
        """``on_overflow`` runs inside ``Hub.dispatch``: it must not change the hub (defer)."""
        self._items: list = []
        self._limit = limit
        self._waiter: asyncio.Future | None = None
        self._direct: Any = None          # a transport, for the direct path
        self._flusher: Flusher | None = None
        self._render: Callable[[list], bytes] | None = None
        self._on_overflow = on_overflow
        self._metrics = metrics
        self.closed = False
        self.conflated = 0
        self._held: Any = None  # a TimerHandle while held (see hold)

    def use_transport(self, transport: Any, flusher: "Flusher",
                      render: Callable[[list], bytes] | None = None) -> None:
        """Switch to the direct path: ``transport.write`` of the queued items' pre-framed
        WebSocket bytes, or of ``render(items)`` (an SSE stream's HTTP chunk)."""
        self._direct = transport
        self._flusher = flusher
        self._render = render
        if self._items:
            flusher.mark(self)

    def __len__(self) -> int:
        return len(self._items)

    def push(self, item: Any) -> bool:
        """Queue ``item``; False if the outbox is closed or had to close (slow consumer)."""
        if self.closed:
            return False
        items = self._items
        items.append(item)
        if len(items) > self._limit and not self._compact():
            return False
        if self._held is not None:
            return True
        if self._direct is not None:
            if len(items) == 1:
                self._flusher.mark(self)  # type: ignore[union-attr]
        elif self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        return True

    def push_replay(self, items: list) -> bool:
        """Queue a subscribe's replay (history the client asked for) and its ack. They may
        take the outbox past its limit: a client recovering everything history holds is not
        a slow consumer. The limit applies again from the next live publication on."""
        if self.closed:
            return False
        was_empty = not self._items
        self._items.extend(items)
        if self._held is not None:
            return True
        if self._direct is not None:
            if was_empty and self._items:
                self._flusher.mark(self)  # type: ignore[union-attr]
        elif self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        return True

    def hold(self, seconds: float) -> None:
        """Queue without sending until :meth:`release`, for at most ``seconds``: a subscribe's
        ack and the snapshot that follows it leave in one write (docs/scaling.md). Frames keep
        their order; a close still goes out at once (``flush_direct``)."""
        if self._held is None and not self.closed:
            self._held = asyncio.get_running_loop().call_later(seconds, self.release)

    def release(self) -> None:
        held, self._held = self._held, None
        if held is None:
            return
        held.cancel()
        if self._items and not self.closed:
            if self._direct is not None:
                self._flusher.mark(self)  # type: ignore[union-attr]
            elif self._waiter is not None and not self._waiter.done():
                self._waiter.set_result(None)

    def _compact(self) -> bool:
        seen: set = set()
        kept: list = []
        for item in reversed(self._items):
            key = conflation_key(item)
            if key is not None:
                if key in seen:
                    self.conflated += 1
                    if self._metrics is not None:
                        self._metrics.conflated += 1
                    continue
                seen.add(key)
            kept.append(item)
        kept.reverse()
        self._items = kept
        if len(kept) <= self._limit:
            return True
        self.close()
        self._on_overflow()
        return False

    async def drain(self) -> list:
        """Wait until something is queued (or the outbox closes); return it all, oldest first."""
        while (not self._items or self._held is not None) and not self.closed:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        items, self._items = self._items, []
        return items

    def take(self) -> list:
        items, self._items = self._items, []
        return items

    def close(self) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def flush_direct(self, high_water: int) -> bool:
        """Write what is queued in one call; False if the socket is backed up (try later)."""
        transport = self._direct
        if transport is None or not self._items:
            return True
        if transport.is_closing():
            self._items = []
            return True
        if transport.get_write_buffer_size() > high_water:
            return False
        items, self._items = self._items, []
        if self._render is not None:
            transport.write(self._render(items))
        elif len(items) == 1:
            transport.write(items[0].ws_frame())
        else:
            transport.write(b"".join([item.ws_frame() for item in items]))
        return True


class Flusher:
    """Writes every direct outbox touched in this loop iteration once, after the dispatch loop.

    Coalescing happens for free: publications dispatched in the same iteration (a burst read from
    Redis in one go) leave in one write per client. Under load it goes further: while the
    process is saturated (it used ``SATURATED_SHARE`` of a core or more over the last
    ``SAMPLE_SECONDS``), a pass that took ``BUSY_SECONDS`` or more makes the next one start no
    sooner than ``COALESCE_SECONDS`` after it, so what was published meanwhile leaves in one
    write per client instead of one per publication. A loopback send costs ~7 µs of kernel time
    whatever it carries (bench/RESULTS.md): a saturated process writes the same messages with
    fewer calls, at the cost of at most that much delay; one with CPU to spare never waits.
    """

    RETRY_SECONDS = 0.05
    BUSY_SECONDS = 0.005
    COALESCE_SECONDS = 0.1
    SATURATED_SHARE = 0.9
    SAMPLE_SECONDS = 0.1

    def __init__(self, high_water_bytes: int) -> None:
        self.high_water = self._high_water = high_water_bytes
        self._dirty: list[Outbox] = []
        self._scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._not_before = 0.0  # loop time before which no pass starts (after a busy one)
        self._sample = (time.monotonic(), time.process_time())  # (wall, CPU) at the last look
        self._saturated = False

    def mark(self, outbox: Outbox) -> None:
        self._dirty.append(outbox)
        if not self._scheduled:
            self._scheduled = True
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            wait = self._not_before - loop.time()
            if wait > 0:
                loop.call_later(wait, self._flush)
            else:
                loop.call_soon(self._flush)

    def saturated(self, now: float) -> bool:
        """Did the process use SATURATED_SHARE of a core since the last look (at most every
        SAMPLE_SECONDS)?"""
        wall, used = self._sample
        if now - wall >= self.SAMPLE_SECONDS:
            cpu = time.process_time()
            self._saturated = cpu - used >= self.SATURATED_SHARE * (now - wall)
            self._sample = (now, cpu)
        return self._saturated

    def _flush(self) -> None:
        self._scheduled = False
        dirty, self._dirty = self._dirty, []
        started = time.monotonic()
        backed_up = []
        for outbox in dirty:
            if not outbox.closed and not outbox.flush_direct(self._high_water):
                backed_up.append(outbox)
        finished = time.monotonic()
        if finished - started >= self.BUSY_SECONDS and self.saturated(finished):
            self._not_before = self._loop.time() + self.COALESCE_SECONDS  # type: ignore[union-attr]
        if backed_up:
            self._loop.call_later(self.RETRY_SECONDS, self._retry, backed_up)  # type: ignore

    def _retry(self, outboxes: list[Outbox]) -> None:
        for outbox in outboxes:
            if not outbox.closed and len(outbox):
                self.mark(outbox)
