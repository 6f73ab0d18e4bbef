"""The in-process broker: the embedded default (one process, no Redis).

A real implementation of the :class:`~quart_app.realtime.broker.Broker` contract, not a mock: offsets,
bounded history (count and age) and one listener stream, all inside the event loop.
"""
from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from collections import deque
from typing import AsyncIterator

from .broker import (History, Publication, _Resync, encode_json, history_result,
                     publication_frame, stream_name)


class MemoryBroker:
    def __init__(self, history_size: int = 1000, history_ttl_seconds: float = 600.0) -> None:
        self._size = history_size
        self._ttl = history_ttl_seconds
        self._offsets: dict[str, int] = {}          # stream -> last offset
        self._epochs: dict[str, str] = {}           # stream -> epoch
        self._history: dict[str, deque[Publication]] = {}
        self._ttls: dict[str, float] = {}            # streams whose namespace sets its own TTL
        self._ids: dict[str, tuple[int, str, float, Publication]] = {}  # id -> offset, hash, until
        self._pending: deque[Publication] = deque()
        self._wakeup = asyncio.Event()
        self._closed = False
        # Epochs differ across restarts of the process (offsets restart then) and across
        # streams created in it.
        self._epoch_base = f"{secrets.token_hex(4)}{int(time.time()):x}"
        self._epoch_count = itertools.count(1)

    async def connect(self) -> None:
        self._closed = False

    async def close(self) -> None:
        self._closed = True
        self._wakeup.set()

    async def ping(self) -> None:
        if self._closed:
            raise ConnectionError("memory broker is closed")

    async def publish(self, channel: str, data: dict, *, user: int | None = None,
                      publication_id: str | None = None, body_hash: str = "",
                      id_ttl_seconds: float = 600.0, history_size: int | None = None,
                      history_ttl_seconds: float | None = None) -> Publication:
        if self._closed:
            raise ConnectionError("memory broker is closed")
        now = time.time()
        if publication_id is not None:
            seen = self._ids.get(publication_id)
            if seen is not None and seen[2] > now:
                first = seen[3]
                again = Publication(channel, data, seen[0], first.frame, first.published_at,
                                    first.user)
                again.duplicate = True
                again.stored_hash = seen[1]
                return again
        frame_data = encode_json(data)  # before anything changes: a bad value changes nothing
        stream = stream_name(channel, user)
        offset = self._offsets.get(stream, 0) + 1
        self._offsets[stream] = offset
        if offset == 1:
            self._epochs[stream] = f"{self._epoch_base}{next(self._epoch_count):x}"
        publication = Publication(channel, data, offset,
                                  publication_frame(channel, frame_data, offset, user is not None),
                                  now, user)
        size = self._size if history_size is None else history_size
        history = self._history.get(stream)
        if history is None or history.maxlen != size:
            history = self._history[stream] = deque(history or (), maxlen=size)
        if history_ttl_seconds is not None:
            self._ttls[stream] = history_ttl_seconds
        history.append(publication)
        if user is not None or history_ttl_seconds is not None:
            self._trim(stream)  # trimmed as it grows too, not only when read
        if publication_id is not None:
            if len(self._ids) > 100_000:
                self._ids = {k: v for k, v in self._ids.items() if v[2] > now}
            self._ids[publication_id] = (offset, body_hash, now + id_ttl_seconds, publication)
        self._pending.append(publication)
        self._wakeup.set()
        return publication

    async def publish_many(self, requests: list[dict], *, batch_id: str | None = None,
                           batch_id_ttl_seconds: float = 30.0) -> list[Publication]:
        """Several publishes, in order (the same contract as the Redis broker's; in one
        process nothing retries a call, so ``batch_id`` is not needed)."""
        return [await self.publish(r["channel"], r["data"],
                                   **{k: v for k, v in r.items() if k not in ("channel", "data")})
                for r in requests]

    def _trim(self, stream: str) -> deque[Publication] | None:
        history = self._history.get(stream)
        if history is None:
            return None
        horizon = time.time() - self._ttls.get(stream, self._ttl)
        while history and history[0].published_at < horizon:
            history.popleft()
        return history

    async def history(self, channel: str, since: int, *, user: int | None = None,
                      epoch: str | None = None) -> History:
        stream = stream_name(channel, user)
        latest = self._offsets.get(stream, 0)
        held = self._trim(stream) or ()
        missed = [p for p in held if p.offset > since] if since < latest else []  # type: ignore[operator]
        return history_result(missed, latest, since, self._epochs.get(stream, ""), epoch)

    async def latest(self, channel: str, *, user: int | None = None) -> tuple[int, str]:
        stream = stream_name(channel, user)
        return self._offsets.get(stream, 0), self._epochs.get(stream, "")

    async def latest_offset(self, channel: str) -> int:
        return self._offsets.get(channel, 0)

    async def subscribe_upstream(self, channel: str) -> None:
        """Every publication already reaches this process's listener."""

    async def unsubscribe_upstream(self, channel: str) -> None:
        pass

    async def listen(self) -> AsyncIterator[Publication | _Resync]:
        while not self._closed:
            while self._pending:
                yield self._pending.popleft()
            self._wakeup.clear()
            if not self._pending:
                await self._wakeup.wait()
