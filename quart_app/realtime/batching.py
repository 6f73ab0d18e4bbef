"""Asks answered together (docs/scaling.md, "Reconnect storms"): a reconnect storm's reads reach
Redis or the database in a few round trips instead of one or two per client.

Batches form by themselves (as a database driver's or Centrifugo's Redis pipelining does): the
asks of one loop iteration go together, and while ``depth`` batches are in flight new asks wait
and go as one batch when one comes back. A batch also starts no sooner than ``linger`` seconds
after the one before it: idle, an ask goes in its own loop iteration, but under a steady stream
of asks (connects arriving one by one, a few per iteration) they gather for up to ``linger``
and share one round trip. An ask that goes alone costs the process 300–600 µs of CPU, one in
a batch of 50 costs 8–30 (``bench/batch_cost.py``, bench/RESULTS.md).
"""
from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

Asked = list[tuple[Any, asyncio.Future]]


class IterationBatch:
    """:meth:`ask` returns a future; the items asked go, with their futures, to ``run(asked)``
    in a task of their own (``most`` items at a time, each part in its own task), at most
    ``depth`` runs at once, one start at most every ``linger`` seconds. ``run`` answers the
    futures; if it raises, every future it left unanswered gets the exception."""

    def __init__(self, run: Callable[[Asked], Awaitable[None]], most: int = 0,
                 depth: int = 1, linger: float = 0.0) -> None:
        self._run = run
        self._most = most
        self._depth = max(1, depth)
        self._linger = max(0.0, linger)
        self._asked: Asked = []
        self._scheduled = False
        self._started = float("-inf")  # loop time of the last flush
        self._running: set[asyncio.Task] = set()

    def ask(self, item: Any) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._asked.append((item, future))
        if not self._scheduled and len(self._running) < self._depth:
            self._schedule(loop)
        return future

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        self._scheduled = True
        wait = self._started + self._linger - loop.time()
        if wait > 0:
            loop.call_later(wait, self._flush)
        else:
            loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        asked, self._asked = self._asked, []
        if not asked:
            return
        loop = asyncio.get_running_loop()
        self._started = loop.time()
        step = self._most or len(asked)
        for start in range(0, len(asked), step):
            task = loop.create_task(self._answer(asked[start:start + step]))
            self._running.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self._running.discard(task)
        if self._asked and not self._scheduled and len(self._running) < self._depth:
            self._schedule(asyncio.get_running_loop())

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
