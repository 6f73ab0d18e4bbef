"""The in-process broker: the embedded default (one process, no Redis).

A real implementation of the :class:`~quart_app.broker.Broker` contract, not a mock: offsets,
bounded history (count and age) and one listener stream, all inside the event loop.
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import AsyncIterator

from .broker import History, Publication, _Resync, encode_json


class MemoryBroker:
    def __init__(self, history_size: int = 1000, history_ttl_seconds: float = 600.0) -> None:
        self._size = history_size
        self._ttl = history_ttl_seconds
        self._offsets: dict[str, int] = {}
        self._history: dict[str, deque[Publication]] = {}
        self._pending: deque[Publication] = deque()
        self._wakeup = asyncio.Event()
        self._closed = False

    async def connect(self) -> None:
        self._closed = False

    async def close(self) -> None:
        self._closed = True
        self._wakeup.set()

    async def ping(self) -> None:
        if self._closed:
            raise ConnectionError("memory broker is closed")

    async def publish(self, channel: str, data: dict) -> Publication:
        if self._closed:
            raise ConnectionError("memory broker is closed")
        offset = self._offsets.get(channel, 0) + 1
        self._offsets[channel] = offset
        frame = b'{"channel":%s,"data":%s,"offset":%d}' % (
            encode_json(channel).encode(), encode_json(data).encode(), offset)
        publication = Publication(channel, data, offset, frame)
        history = self._history.get(channel)
        if history is None:
            history = self._history[channel] = deque(maxlen=self._size)
        history.append(publication)
        self._pending.append(publication)
        self._wakeup.set()
        return publication

    def _trim(self, channel: str) -> deque[Publication] | None:
        history = self._history.get(channel)
        if history is None:
            return None
        horizon = time.time() - self._ttl
        while history and history[0].published_at < horizon:
            history.popleft()
        return history

    async def history(self, channel: str, since: int) -> History:
        latest = self._offsets.get(channel, 0)
        if since > latest:
            return History([], latest, False)
        if since == latest:
            return History([], latest, True)
        history = self._trim(channel) or ()
        missed = [p for p in history if p.offset > since]  # type: ignore[operator]
        complete = bool(missed) and missed[0].offset == since + 1
        return History(missed if complete else [], latest, complete)

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
