"""One contract, run against the in-process broker and against real Redis."""
import asyncio
import json

import pytest
import redis.asyncio as aioredis

from quart_app.realtime.broker import RESYNC, Publication, frame_text
from quart_app.realtime.broker_memory import MemoryBroker
from quart_app.dashboard.channels import SEED_CHANNEL_MAP
from quart_app.realtime.broker_cluster import ClusterBroker
from quart_app.realtime.broker_redis import RedisBroker, parse_raw_message
from quart_app.realtime.redis_urls import redis_broker

from .conftest import SEED_MAPPINGS


@pytest.fixture(params=["memory", "redis", "cluster", "sentinel"])
async def make_broker(request):
    """The contract's broker: in-process, one Redis, a Redis Cluster (ClusterBroker) and a
    master behind Sentinel (SentinelBroker); the last two are chosen by their URL."""
    made = []

    async def make(size=1000, ttl=600.0):
        if request.param == "memory":
            broker = MemoryBroker(size, ttl)
        else:
            url = {"redis": lambda: request.getfixturevalue("redis_url"),
                   "cluster": lambda: request.getfixturevalue("redis_cluster").url,
                   "sentinel": lambda: request.getfixturevalue("redis_sentinel").url,
                   }[request.param]()
            prefix = request.getfixturevalue("redis_prefix")
            broker = redis_broker(url, prefix, size, ttl)
        await broker.connect()
        made.append(broker)
        return broker

    yield make
    for broker in made:
        await broker.close()


async def _take(stream, n, timeout=3.0):
    items = []

    async def run():
        async for item in stream:
            if item is RESYNC:
                continue
            items.append(item)
            if len(items) == n:
                return

    await asyncio.wait_for(run(), timeout)
    return items


async def test_offsets_increase_per_channel(make_broker):
    broker = await make_broker()
    offsets = [(await broker.publish("mining", {"type": "x", "i": i})).offset for i in range(3)]
    other = await broker.publish("dashboard", {"type": "y"})
    assert offsets == [1, 2, 3] and other.offset == 1
    assert await broker.latest_offset("mining") == 3
    assert await broker.latest_offset("never") == 0


async def test_frame_is_the_wire_shape(make_broker):
    broker = await make_broker()
    publication = await broker.publish("mining", {"type": "share_submitted", "diff": 1.5, "n": "ü"})
    assert json.loads(publication.frame) == {
        "channel": "mining", "data": {"type": "share_submitted", "diff": 1.5, "n": "ü"},
        "offset": 1}
    assert publication.ws_frame() == frame_text(publication.frame)


async def test_history_since(make_broker):
    broker = await make_broker()
    for i in range(5):
        await broker.publish("mining", {"type": "x", "i": i})
    history = await broker.history("mining", 2)
    assert history.complete and history.latest == 5
    assert [p.offset for p in history.publications] == [3, 4, 5]
    assert [p.data["i"] for p in history.publications] == [2, 3, 4]
    assert (await broker.history("mining", 5)).publications == []
    assert (await broker.history("mining", 5)).complete


async def test_history_bounded_by_count(make_broker):
    broker = await make_broker(size=3)
    for i in range(6):
        await broker.publish("mining", {"type": "x", "i": i})
    assert [p.offset for p in (await broker.history("mining", 3)).publications] == [4, 5, 6]
    gone = await broker.history("mining", 1)
    assert not gone.complete and gone.publications == [] and gone.latest == 6


async def test_history_bounded_by_age(make_broker):
    broker = await make_broker(ttl=1.0)
    await broker.publish("mining", {"type": "x"})
    await asyncio.sleep(1.2)
    await broker.publish("mining", {"type": "x"})
    assert not (await broker.history("mining", 0)).complete
    assert [p.offset for p in (await broker.history("mining", 1)).publications] == [2]


async def test_since_ahead_of_channel_is_not_recovered(make_broker):
    broker = await make_broker()
    await broker.publish("mining", {"type": "x"})
    result = await broker.history("mining", 50)
    assert not result.complete and result.latest == 1


async def test_listen_delivers_in_offset_order(make_broker):
    broker = await make_broker()
    stream = broker.listen()
    await broker.subscribe_upstream("mining")
    listener = asyncio.ensure_future(_take(stream, 20))
    await asyncio.sleep(0.2)  # the listener has (re)connected
    await broker.subscribe_upstream("mining")
    for i in range(20):
        await broker.publish("mining", {"type": "x", "i": i})
    items = await listener
    assert [p.offset for p in items] == list(range(1, 21))
    assert all(isinstance(p, Publication) for p in items)
    await stream.aclose()


async def test_a_batch_keeps_order_spaces_history_and_reaches_listeners(make_broker):
    """publish_many as one batch: offsets per stream in request order (a user's own space
    apart), the same frames in history and on the listener, each stream trimmed to its size."""
    broker = await make_broker()
    stream = broker.listen()
    listener = asyncio.ensure_future(_take(stream, 7))
    await asyncio.sleep(0.2)
    for channel in ("mining", "leaderboard:x"):
        await broker.subscribe_upstream(channel)
    requests = [{"channel": "mining", "data": {"type": "a", "i": 0}},
                {"channel": "leaderboard:x", "data": {"type": "b", "i": 1}, "history_size": 1},
                {"channel": "mining", "data": {"type": "a", "i": 2, "user_id": 7}, "user": 7},
                {"channel": "mining", "data": {"type": "a", "i": 3}},
                {"channel": "leaderboard:x", "data": {"type": "b", "i": 4}, "history_size": 1},
                {"channel": "mining", "data": {"type": "a", "i": 5, "user_id": 7}, "user": 7},
                {"channel": "mining", "data": {"type": "a", "i": 6}}]
    published = await broker.publish_many(requests, batch_id="b1")
    assert [(p.channel, p.offset, p.user) for p in published] == [
        ("mining", 1, None), ("leaderboard:x", 1, None), ("mining", 1, 7), ("mining", 2, None),
        ("leaderboard:x", 2, None), ("mining", 2, 7), ("mining", 3, None)]
    assert [p.data["i"] for p in published] == list(range(7))
    heard = await listener

    def by_stream(publications):  # the order a broker keeps is per stream (a cluster's shards
        streams: dict = {}         # are heard side by side)
        for p in publications:
            streams.setdefault((p.channel, p.user), []).append(json.loads(p.frame))
        return streams
    assert by_stream(heard) == by_stream(published)
    if not isinstance(broker, ClusterBroker):
        assert [json.loads(p.frame) for p in heard] == [json.loads(p.frame) for p in published]
    assert json.loads(published[2].frame)["user_offset"] == 1
    assert [p.data["i"] for p in (await broker.history("mining", 0)).publications] == [0, 3, 6]
    mine = await broker.history("mining", 0, user=7)
    assert [p.offset for p in mine.publications] == [1, 2]
    kept = await broker.history("leaderboard:x", 1)
    assert [p.data["i"] for p in kept.publications] == [4]
    await stream.aclose()


@pytest.mark.integration
async def test_concurrent_reads_share_one_trip_and_each_gets_its_own_answer(
        redis_url, redis_prefix):
    """A reconnect storm's reads: resumes from 50 different offsets, latest offsets of a
    user's space and of a channel, all asked at once, go to Redis as one pipeline; each answer
    is what a read of its own would have been (history holds the newest 30 of 60)."""
    broker = RedisBroker(redis_url, redis_prefix, history_size=30)
    await broker.connect()
    try:
        await broker.publish_many([{"channel": "mining", "data": {"type": "a", "i": i}}
                                   for i in range(60)], batch_id="fill")
        await broker.publish("mining", {"type": "mine", "user_id": 4}, user=4)
        trips = broker.read_trips
        answers = await asyncio.gather(*(broker.history("mining", since)
                                         for since in range(20, 70)),
                                       broker.latest("mining", user=4), broker.latest("mining"))
        assert broker.read_trips == trips + 1
        for since, answer in zip(range(20, 70), answers):
            alone = await broker.history("mining", since)
            assert (answer.complete, answer.latest) == (alone.complete, alone.latest)
            assert [p.offset for p in answer.publications] == \
                [p.offset for p in alone.publications]
            assert answer.complete == (30 <= since <= 60)
            if 30 <= since < 60:
                assert [p.offset for p in answer.publications] == list(range(since + 1, 61))
        assert [a[0] for a in answers[-2:]] == [1, 60]
    finally:
        await broker.close()


@pytest.mark.integration
async def test_a_retried_batch_call_publishes_nothing_twice(redis_url, redis_prefix):
    """A batch call run again under its id (redis-py retrying after a timeout) answers the
    first run's offsets, marked duplicate, and publishes nothing more."""
    broker = RedisBroker(redis_url, redis_prefix)
    await broker.connect()
    try:
        requests = [{"channel": "mining", "data": {"type": "a", "i": i}} for i in range(3)]
        first = await broker.publish_many(requests, batch_id="same")
        again = await broker.publish_many(requests, batch_id="same")
        assert [p.offset for p in again] == [p.offset for p in first] == [1, 2, 3]
        assert all(p.duplicate for p in again) and not any(p.duplicate for p in first)
        assert (await broker.latest("mining"))[0] == 3
        other = await broker.publish_many(requests, batch_id="other")
        assert [p.offset for p in other] == [4, 5, 6]
    finally:
        await broker.close()


@pytest.mark.integration
async def test_pipelines_run_scripts_redis_forgot_once_and_ask_nothing_first(redis_url,
                                                                            redis_prefix):
    """Batched reads and pipelined publishes send EVALSHA alone (no SCRIPT EXISTS before each
    pipeline); after SCRIPT FLUSH (a restarted Redis) the calls answered NOSCRIPT, which did
    not run, are sent again once the scripts are loaded: each publication exactly once."""
    broker = RedisBroker(redis_url, redis_prefix)
    await broker.connect()
    try:
        await broker.publish("mining", {"type": "a"})
        await broker.redis.script_flush()
        requests = [{"channel": "mining", "data": {"type": "b", "i": i},
                     "publication_id": f"id{i}"} for i in range(3)]
        published = await broker.publish_many(requests)
        assert [p.offset for p in published] == [2, 3, 4]
        await broker.redis.script_flush()
        history, latest = await asyncio.gather(broker.history("mining", 1),
                                               broker.latest("mining"))
        assert [p.offset for p in history.publications] == [2, 3, 4]
        assert latest[0] == 4 and history.complete
        before = int((await broker.redis.info("commandstats")).get(
            "cmdstat_script|exists", {}).get("calls", 0))
        await asyncio.gather(*(broker.latest("mining") for _ in range(5)),
                             broker.history("mining", 2))
        after = int((await broker.redis.info("commandstats")).get(
            "cmdstat_script|exists", {}).get("calls", 0))
        assert after == before
    finally:
        await broker.close()


async def test_a_listener_with_nothing_to_hear_yet_starts_without_a_reconnect(make_broker):
    """Before: with no raw channels and nothing wanted, the Redis listener sent a SUBSCRIBE of
    nothing, failed, and reconnected (a RESYNC first, and subscribes waiting meanwhile)."""
    broker = await make_broker()
    stream = broker.listen()
    first = asyncio.ensure_future(stream.__anext__())
    await asyncio.sleep(0.2)
    await broker.subscribe_upstream("mining")
    await broker.publish("mining", {"type": "x"})
    item = await asyncio.wait_for(first, 3)
    assert item is not RESYNC and item.offset == 1
    assert getattr(broker, "reconnects", 0) == 0
    await stream.aclose()


@pytest.mark.integration
async def test_two_brokers_on_one_redis_share_offsets(redis_url, redis_prefix):
    a, b = RedisBroker(redis_url, redis_prefix), RedisBroker(redis_url, redis_prefix)
    await a.connect()
    await b.connect()
    try:
        results = await asyncio.gather(*[(a if i % 2 else b).publish("mining", {"i": i})
                                         for i in range(40)])
        assert sorted(p.offset for p in results) == list(range(1, 41))
        assert await a.latest_offset("mining") == await b.latest_offset("mining") == 40
    finally:
        await a.close()
        await b.close()


@pytest.mark.parametrize("channel, ws_channel", SEED_MAPPINGS)
def test_seed_mapping(channel, ws_channel):
    """The built-in app's raw channels are seed 000's 12 (copied from the seed in conftest)."""
    assert dict(SEED_MAPPINGS) == SEED_CHANNEL_MAP
    publication = parse_raw_message(SEED_CHANNEL_MAP, channel, b'{"user_id": 3, "value": 9}')
    assert publication.channel == ws_channel and publication.offset is None
    assert publication.data == {"type": channel.split(":")[1], "user_id": 3, "value": 9}


@pytest.mark.parametrize("raw", [b"not json", b"[1,2]", b"\xff\xfe", b'"str"',
                                 # before: these became Publications the listener could not
                                 # encode (surrogate) or sent as bare NaN/Infinity tokens
                                 b'{"v": NaN}', b'{"v": -Infinity}', b'{"v": "\\ud800"}',
                                 b'{"v":' * 5000 + b'1' + b'}' * 5000])
def test_seed_garbage_is_skipped(raw):
    assert parse_raw_message(SEED_CHANNEL_MAP, "pubsub:feed_item", raw) is None
    assert parse_raw_message(SEED_CHANNEL_MAP, "pubsub:unknown", b"{}") is None


@pytest.mark.integration
async def test_redis_listener_reconnects_and_says_resync(redis_url, redis_prefix):
    from .proxy import TcpProxy

    proxy = await TcpProxy("127.0.0.1", 6379).start()
    broker = RedisBroker(f"redis://127.0.0.1:{proxy.port}/0", redis_prefix)
    direct = RedisBroker(redis_url, redis_prefix)
    await broker.connect()
    await direct.connect()
    stream = broker.listen()
    try:
        await broker.subscribe_upstream("mining")
        first = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0.2)
        await direct.publish("mining", {"type": "x"})
        assert (await asyncio.wait_for(first, 3)).offset == 1
        proxy.cut()
        await asyncio.sleep(0.3)
        proxy.restore()
        assert await asyncio.wait_for(stream.__anext__(), 10) is RESYNC
        await asyncio.sleep(0.1)
        await direct.publish("mining", {"type": "x"})
        assert (await asyncio.wait_for(stream.__anext__(), 3)).offset == 2
        assert broker.reconnects == 1
    finally:
        await stream.aclose()
        await broker.close()
        await direct.close()
        await proxy.close()


async def test_the_sweeper_leaves_a_channel_that_regained_a_subscriber_subscribed(
        redis_url, redis_prefix):
    """Before: the sweeper listed idle channels, then unsubscribed them one by one; a channel
    that gained a subscriber during the earlier awaits was unsubscribed anyway and went silent
    in this process until restart."""
    import asyncio

    from quart_app.realtime.auth import Principal
    from quart_app.realtime.broker_redis import RedisBroker
    from quart_app.realtime.hub import Connection, Hub
    from quart_app.realtime.listener import Listener
    from quart_app.realtime.metrics import Metrics
    from quart_app.realtime.outbox import Outbox

    broker = RedisBroker(redis_url, redis_prefix, 100, 60)
    await broker.connect()
    hub = Hub(broker, Metrics(), 10, 10)
    listener = Listener(broker, hub, Metrics())
    listener.start()
    try:
        def conn():
            c = Connection(Principal(user_id=1, expires_at=2e9), Outbox(100, lambda: None), "t")
            hub.connect(c)
            return c
        first = conn()
        assert await hub.subscribe(first, "competition") and await hub.subscribe(first, "mining")
        hub.disconnect(first)
        real, gate = broker.unsubscribe_upstream, asyncio.Event()

        async def slow(channel):
            await gate.wait()
            await real(channel)
        broker.unsubscribe_upstream = slow
        sweep = asyncio.create_task(listener.sweep_once())
        await asyncio.sleep(0.05)                 # the sweeper waits on its first channel
        second = conn()
        idle = {"competition", "mining"}
        assert await hub.subscribe(second, "mining") and await hub.subscribe(second, "competition")
        gate.set()
        await sweep
        assert idle <= broker._wanted
        second.outbox.take()
        await broker.publish("mining", {"type": "hashrate_update", "hashrate": 1.0})
        for _ in range(100):
            items = second.outbox.take()
            if items:
                break
            await asyncio.sleep(0.02)
        assert items and items[0].channel == "mining"
    finally:
        await listener.stop()
        await broker.close()
