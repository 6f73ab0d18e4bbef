import asyncio
import time

from quart_app.realtime.broker import Publication
from quart_app.realtime.metrics import Metrics
from quart_app.realtime.outbox import Flusher, Outbox


class FakeTransport:
    def __init__(self, buffered=0):
        self.writes: list[bytes] = []
        self.buffered = buffered
        self.closing = False

    def write(self, data):
        self.writes.append(data)

    def get_write_buffer_size(self):
        return self.buffered

    def is_closing(self):
        return self.closing


def pub(kind, offset, **data):
    return Publication("dashboard", {"type": kind, **data}, offset)


def test_overflow_conflates_latest_value_events_per_key():
    closed = []
    metrics = Metrics()
    box = Outbox(3, lambda: closed.append(True), metrics)
    for i in range(1, 6):
        assert box.push(pub("stats_update", i, user_id=1))
    # the 4th push overflows: 1..3 are superseded by 4; the 5th fits again
    assert [p.offset for p in box.take()] == [4, 5]
    assert box.conflated == 3 and metrics.conflated == 3 and not closed


def test_overflow_keeps_order_and_distinct_keys():
    box = Outbox(3, lambda: None)
    box.push(pub("feed_item", 1))
    box.push(pub("stats_update", 2, user_id=1))
    box.push(pub("stats_update", 3, user_id=2))
    box.push(pub("stats_update", 4, user_id=1))  # overflow: offset 2 superseded by 4
    assert [p.offset for p in box.take()] == [1, 3, 4]


def test_overflow_without_conflatable_events_closes_slow_consumer():
    closed = []
    box = Outbox(2, lambda: closed.append(True))
    assert box.push(pub("feed_item", 1)) and box.push(pub("feed_item", 2))
    assert not box.push(pub("feed_item", 3))
    assert closed == [True] and box.closed
    assert not box.push(pub("feed_item", 4))


async def test_drain_waits_and_returns_batches():
    box = Outbox(10, lambda: None)
    waiter = asyncio.ensure_future(box.drain())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    box.push(pub("feed_item", 1))
    box.push(pub("feed_item", 2))
    assert [p.offset for p in await asyncio.wait_for(waiter, 1)] == [1, 2]
    box.close()
    assert await asyncio.wait_for(box.drain(), 1) == []


async def test_direct_path_coalesces_one_write_per_iteration():
    transport = FakeTransport()
    flusher = Flusher(high_water_bytes=1024)
    box = Outbox(10, lambda: None)
    box.use_transport(transport, flusher)
    items = [pub("feed_item", i) for i in (1, 2, 3)]
    for item in items:
        box.push(item)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert transport.writes == [b"".join(i.ws_frame() for i in items)]


async def test_direct_path_backs_off_above_high_water_then_overflows():
    transport = FakeTransport(buffered=10_000)
    closed = []
    flusher = Flusher(high_water_bytes=1024)
    box = Outbox(3, lambda: closed.append(True))
    box.use_transport(transport, flusher)
    for i in range(3):
        box.push(pub("feed_item", i + 1))
    await asyncio.sleep(0.01)
    assert transport.writes == [] and len(box) == 3
    transport.buffered = 0
    await asyncio.sleep(Flusher.RETRY_SECONDS * 2)
    assert len(transport.writes) == 1 and len(box) == 0
    transport.buffered = 10_000
    for i in range(5):
        box.push(pub("feed_item", 10 + i))
    assert closed == [True]


def test_same_bytes_shared_by_every_recipient():
    p = pub("feed_item", 1)
    assert p.ws_frame() is p.ws_frame() and p.sse_data() is p.sse_data()


async def test_a_held_outbox_sends_nothing_until_released_then_all_in_one_write():
    """A subscribe's ack waits for its snapshot (session._subscribe): what is queued while
    held leaves, in order, in one write at release, or when the hold runs out."""
    flusher = Flusher(high_water_bytes=1 << 20)
    transport = FakeTransport()
    box = Outbox(10, lambda: None)
    box.use_transport(transport, flusher)
    box.hold(5.0)
    box.push(pub("feed_item", 1))
    box.push_replay([pub("feed_item", 2)])
    for _ in range(3):
        await asyncio.sleep(0)
    assert transport.writes == []
    box.release()
    await asyncio.sleep(0)
    assert transport.writes == [pub("feed_item", 1).ws_frame() + pub("feed_item", 2).ws_frame()]
    box.release()  # twice: nothing more
    box.hold(0.05)  # a hold that is never released ends by itself
    box.push(pub("feed_item", 3))
    await asyncio.sleep(0.02)
    assert len(transport.writes) == 1
    await asyncio.sleep(0.1)
    assert transport.writes[1] == pub("feed_item", 3).ws_frame()


async def test_a_held_awaited_outbox_wakes_its_consumer_at_release():
    box = Outbox(10, lambda: None)
    box.hold(5.0)
    box.push(pub("feed_item", 1))
    drained = asyncio.ensure_future(box.drain())
    await asyncio.sleep(0.01)
    assert not drained.done()
    box.release()
    assert [p.offset for p in await asyncio.wait_for(drained, 1)] == [1]


async def test_after_a_busy_pass_the_flusher_waits_and_coalesces_what_comes_meanwhile():
    """A busy pass (a saturated process) makes the next one wait COALESCE_SECONDS:
    publications in between leave in one write per client; quick passes keep the
    one-write-per-iteration behaviour."""
    flusher = Flusher(high_water_bytes=1 << 20)
    flusher.BUSY_SECONDS, flusher.COALESCE_SECONDS = 0.0, 0.2
    flusher.saturated = lambda now: True                          # every pass counts as busy
    transport = FakeTransport()
    box = Outbox(10, lambda: None)
    box.use_transport(transport, flusher)
    box.push(pub("feed_item", 1))
    await asyncio.sleep(0)
    assert transport.writes == [pub("feed_item", 1).ws_frame()]  # the first pass: at once
    box.push(pub("feed_item", 2))
    await asyncio.sleep(0.05)
    box.push(pub("feed_item", 3))
    await asyncio.sleep(0.05)
    assert len(transport.writes) == 1                             # waiting for the window
    await asyncio.sleep(0.2)
    assert transport.writes[1:] == [pub("feed_item", 2).ws_frame() + pub("feed_item", 3).ws_frame()]

    quick = Flusher(high_water_bytes=1 << 20)
    quick.BUSY_SECONDS = 60.0                                     # never busy
    transport = FakeTransport()
    box = Outbox(10, lambda: None)
    box.use_transport(transport, quick)
    for i in (1, 2):
        box.push(pub("feed_item", i))
        await asyncio.sleep(0)
    assert transport.writes == [pub("feed_item", 1).ws_frame(), pub("feed_item", 2).ws_frame()]


def test_the_process_is_saturated_when_it_used_most_of_a_core_lately():
    flusher = Flusher(high_water_bytes=1 << 20)
    flusher.SAMPLE_SECONDS = 0.05
    started = time.monotonic()
    while time.monotonic() - started < 0.1:  # spin: a core's worth
        pass
    assert flusher.saturated(time.monotonic())
    time.sleep(0.1)                          # idle
    assert not flusher.saturated(time.monotonic())
    assert not flusher.saturated(time.monotonic())  # within the sample: the last answer


class SlowTransport(FakeTransport):
    def write(self, data):
        time.sleep(0.02)  # a pass of one write takes 20 ms
        super().write(data)


async def test_long_passes_wait_only_while_the_process_is_saturated():
    """A pass over BUSY_SECONDS makes the next wait only if the process has no CPU to spare:
    a server whose writes are slow but whose core is free keeps writing at once."""
    flusher = Flusher(high_water_bytes=1 << 20)
    flusher.BUSY_SECONDS, flusher.COALESCE_SECONDS = 0.01, 0.3
    saturated = []
    flusher.saturated = lambda now: bool(saturated)
    transport = SlowTransport()
    box = Outbox(10, lambda: None)
    box.use_transport(transport, flusher)
    for i in (1, 2, 3):  # 20 ms passes back to back, CPU to spare: each at once
        box.push(pub("feed_item", i))
        await asyncio.sleep(0)
        assert len(transport.writes) == i
    saturated.append(True)
    box.push(pub("feed_item", 4))  # this pass is long and the process saturated...
    await asyncio.sleep(0)
    assert len(transport.writes) == 4
    box.push(pub("feed_item", 5))  # ...so the next waits for the window
    await asyncio.sleep(0.1)
    assert len(transport.writes) == 4
    await asyncio.sleep(0.3)
    assert transport.writes[4] == pub("feed_item", 5).ws_frame()
