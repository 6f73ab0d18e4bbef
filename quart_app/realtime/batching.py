"""Asks answered together (docs/scaling.md, "Reconnect storms"): a reconnect storm's reads reach
Redis or the database in a few round trips instead of one or two per client.

Batches form by themselves (as a database driver's or Centrifugo's Redis pipelining does): the
asks of one loop iteration go together, and while ``depth`` batches are in flight new asks wait
and go as one batch when one comes back. Idle, an ask costs no wait beyond its loop iteration;
busy, a batch is as large as what arrived during one round trip.
"""
from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

Asked = list[tuple[Any, asyncio.Future]]


class IterationBatch:
    """:meth:`ask` returns a future; the items asked go, with their futures, to ``run(asked)``
    in a task of their own (``most`` items at a time, each part in its own task), at most
    ``depth`` runs at once. ``run`` answers the futures; if it raises, every future it left
    unanswered gets the exception."""

    def __init__(self, run: Callable[[Asked], Awaitable[None]], most: int = 0,
                 depth: int = 1) -> None:
        self._run = run
        self._most = most
        self._depth = max(1, depth)
        self._asked: Asked = []
        self._scheduled = False
        self._running: set[asyncio.Task] = set()

    def ask(self, item: Any) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._asked.append((item, future))
        if not self._scheduled and len(self._running) < self._depth:
            self._scheduled = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._scheduled = False
        asked, self._asked = self._asked, []
        if not asked:
            return
        step = self._most or len(asked)
        loop = asyncio.get_running_loop()
        for start in range(0, len(asked), step):
            task = loop.create_task(self._answer(asked[start:start + step]))
            self._running.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self._running.discard(task)
        if self._asked and not self._scheduled and len(self._running) < self._depth:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    async def _answer(self, asked: Asked) -> None:
        try:
            await self._run(asked)
        except BaseException as exc:
            for _item, future in asked:
                if not future.done():
                    future.set_exception(exc)
                    future.exception()  # retrieved: an asker that went away is no error
            if not isinstance(exc, Exception):
                raise
