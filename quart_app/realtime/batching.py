"""Asks made in one event-loop iteration, answered together (docs/scaling.md, "Reconnect
storms"): a reconnect storm's reads reach Redis or the database in a few round trips per loop
iteration instead of one or two per client."""
from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

Asked = list[tuple[Any, asyncio.Future]]


class IterationBatch:
    """:meth:`ask` returns a future; the items asked during one loop iteration go, with their
    futures, to ``run(asked)`` on the next, in a task of their own (``most`` items at a time,
    each part in its own task). ``run`` answers the futures; if it raises, every future it left
    unanswered gets the exception."""

    def __init__(self, run: Callable[[Asked], Awaitable[None]], most: int = 0) -> None:
        self._run = run
        self._most = most
        self._asked: Asked = []
        self._running: set[asyncio.Task] = set()

    def ask(self, item: Any) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self._asked:
            loop.call_soon(self._flush)
        self._asked.append((item, future))
        return future

    def _flush(self) -> None:
        asked, self._asked = self._asked, []
        step = self._most or len(asked)
        loop = asyncio.get_running_loop()
        for start in range(0, len(asked), step):
            task = loop.create_task(self._answer(asked[start:start + step]))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

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
