"""The one task per process that feeds the hub from the broker (DESIGN §8).

It never awaits a client. It closes gaps itself: after a reconnect (``RESYNC``) it re-reads every
upstream channel's history from the last offset it dispatched, and if a publication arrives with
an offset beyond the next one expected, it fills the hole from history first. Either way a
subscriber ends up with every publication, or is told to recover.
"""
from __future__ import annotations

import asyncio
import logging

from .broker import RESYNC, Broker
from .hub import Hub

log = logging.getLogger("pulse.listener")

SWEEP_SECONDS = 30.0


class Listener:
    def __init__(self, broker: Broker, hub: Hub, metrics) -> None:
        self.broker = broker
        self.hub = hub
        self.metrics = metrics
        self._task: asyncio.Task | None = None
        self._sweeper: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="pulse-listener")
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep(),
                                                               name="pulse-upstream-sweep")

    async def stop(self) -> None:
        for task in (self._task, self._sweeper):
            if task is not None:
                task.cancel()
        for task in (self._task, self._sweeper):
            # redis-py (8.1) can swallow a cancellation that lands while the pub/sub connection
            # is subscribing, and the listen loop then goes on: cancel again until it ends.
            while task is not None and not task.done():
                await asyncio.wait({task}, timeout=0.5)
                task.cancel()
            if task is not None and not task.cancelled() and task.exception() is not None:
                log.warning("listener task ended with %r", task.exception())
        self._task = self._sweeper = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _run(self) -> None:
        hub = self.hub
        while True:
            try:
                async for item in self.broker.listen():
                    if item is RESYNC:
                        self.metrics.listener_reconnects += 1
                        await self._resync()
                        continue
                    offset = item.offset
                    if offset is not None:
                        last = hub.last_offset.get(hub.stream_of(item))
                        if last is not None and offset > last + 1:
                            await self._fill(item.channel, last, offset, item.user)
                    hub.dispatch(item)
                return
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not end fan-out for the whole process
                log.exception("listener failed; restarting")
                await asyncio.sleep(0.5)

    async def _resync(self) -> None:
        try:
            replayed = await self.hub.resync()
            if replayed:
                log.info("resynced %d publications after reconnect", replayed)
        except Exception as exc:
            log.warning("resync failed (%s): recovering subscribers", type(exc).__name__)
            for conn in self.hub.connections():
                if conn.subs:
                    self.hub.on_recover(conn)

    async def _fill(self, channel: str, last: int, offset: int, user: int | None = None) -> None:
        try:
            history = await self.broker.history(channel, last, user=user)
        except Exception as exc:
            log.warning("gap fill on %s failed: %s", channel, type(exc).__name__)
            history = None
        if history is None or not history.complete:
            for conn in list(self.hub.subscribers(channel)):
                if user is None or conn.user_id == user:
                    self.hub.on_recover(conn)
            return
        for publication in history.publications:
            if publication.offset < offset:  # type: ignore[operator]
                self.hub.dispatch(publication)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            await self.sweep_once()

    async def sweep_once(self) -> None:
        """Unsubscribe upstream from channels nobody here subscribes to any more."""
        for channel in self.hub.idle_upstream():
            if self.hub.wants_upstream(channel):
                continue  # a subscriber came back while earlier channels were unsubscribed
            try:
                await self.broker.unsubscribe_upstream(channel)
                if self.hub.wants_upstream(channel):
                    # Subscribed again during that await: its upstream subscription may have
                    # been undone by ours. Restore it; a publication missed meanwhile shows as
                    # an offset hole, which the listener fills from history.
                    await self.broker.subscribe_upstream(channel)
            except Exception as exc:  # pragma: no cover - logged, retried next sweep
                log.warning("upstream unsubscribe %s failed: %s", channel, exc)
