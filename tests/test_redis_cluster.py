"""Pulse on a real 6-node Redis Cluster (tests/redis_cluster.py): sharded pub/sub across shards
and two server processes, and a primary killed mid-traffic."""
from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest

from quart_app.realtime.auth import mint_token
from quart_app.realtime.broker import RESYNC
from quart_app.realtime.broker_cluster import ClusterBroker
from quart_app.realtime.broker_ha import REWIND_GAP
from quart_app.realtime.redis_urls import redis_broker

from .conftest import API_KEY, SECRET, ws_client
from .ha_support import (Producer, Subscriber, describe, traffic_through_a_failover, two_servers,
                         until)
from .redis_cluster import cli, wait_replicated

pytestmark = pytest.mark.integration

# Eight channels of a namespace anyone may subscribe to, whose hash tags fall on all 3 shards
# of any 3-primary cluster made by `redis-cli --cluster create` (slot ranges 0-5460,
# 5461-10922, 10923-16383): checked below, not assumed.
CHANNELS = [f"leaderboard:{name}" for name in
            ("wpm", "accuracy", "streak", "speed", "daily", "weekly", "combo", "marathon")]


def _prefix() -> str:
    return f"pulse-test:{uuid.uuid4().hex[:12]}:"


def shards_of(cluster, prefix: str, channels: list[str]) -> dict[str, int]:
    return {c: cluster.owner_of(f"{prefix}ch:{{{c}}}") for c in channels}


async def test_the_url_picks_the_cluster_broker_and_keys_share_a_slot(redis_cluster):
    broker = redis_broker(redis_cluster.url, "p:")
    assert isinstance(broker, ClusterBroker)
    keys, args, _, _ = broker._call("mining", {"type": "x"}, 7, "id-1", "", 30.0, None, None)
    assert keys == ["p:offset:{mining}#7", "p:history:{mining}#7", "p:epoch:{mining}#7",
                    "p:pubid:{mining}:id-1", "p:writer:{mining}#7"]
    assert args[0] == "p:ch:{mining}"      # a user's publication goes out on its channel
    with pytest.raises(ValueError):
        ClusterBroker(redis_cluster.url, "p:{x}:")


async def test_a_burst_of_commands_waits_for_connections(redis_cluster):
    """redis-py's cluster pools raise when a node's connections run out; the broker queues
    its commands instead, as the single-Redis broker's blocking pool does."""
    broker = redis_broker(redis_cluster.url, _prefix())
    await broker.connect()
    try:
        channels = [f"leaderboard:burst{i}" for i in range(60)]
        await asyncio.gather(*(broker.publish(c, {"type": "x"}) for c in channels * 5))
        latest = await asyncio.gather(*(broker.latest(c) for c in channels * 5))
        assert {offset for offset, _ in latest} == {5}
    finally:
        await broker.close()


async def test_many_channels_over_shards_reach_two_processes_in_order(redis_cluster, tmp_path):
    prefix = _prefix()
    owners = shards_of(redis_cluster, prefix, CHANNELS)
    assert len(set(owners.values())) >= 2, owners
    async with two_servers(redis_cluster.url, tmp_path, prefix) as (a, b):
        subs = [await Subscriber(address, CHANNELS, user).start()
                for user, address in enumerate((a, b, a, b), start=1)]
        producer = Producer([a, b], CHANNELS)
        try:
            async with httpx.AsyncClient(timeout=5) as http:
                deadline = time.monotonic() + 30
                for _ in range(5):
                    await producer.publish_round(http, deadline)
            await until(lambda: all(len(s.received[c]) == 5 for s in subs for c in CHANNELS),
                        10, "5 publications on every channel",
                        lambda: describe(subs, producer, tmp_path))
        finally:
            for sub in subs:
                await sub.stop()
    for sub in subs:
        for channel in CHANNELS:
            assert sub.received[channel] == [(o, o - 1) for o in range(1, 6)], channel
            assert not sub.not_recovered[channel]


async def test_a_primary_killed_mid_traffic_loses_nothing_silently(redis_cluster, tmp_path):
    """SIGKILL the primary of two channels while publishing: its replica takes over; every
    subscriber either has every acknowledged publication in order or was told to recover,
    and publications flow again within seconds."""
    prefix = _prefix()
    owners = shards_of(redis_cluster, prefix, CHANNELS)
    victim = owners[CHANNELS[0]]

    def crash() -> None:
        time.sleep(0.15)
        redis_cluster.kill(victim)
        redis_cluster.wait_for_primary_gone(victim)

    try:
        async with two_servers(redis_cluster.url, tmp_path, prefix) as bases:
            _, _, flowing_after = await traffic_through_a_failover(bases, CHANNELS, crash,
                                                                   tmp_path)
        assert victim not in redis_cluster.primaries()
        assert flowing_after < 25
    finally:
        await asyncio.get_running_loop().run_in_executor(None, redis_cluster.restart, victim)


async def test_the_listener_resyncs_after_a_failover(redis_cluster):
    """The broker alone: a takeover by the replica drops the shard subscription (sunsubscribe),
    the listener resubscribes on the new primary and says RESYNC; the next publication on the
    new primary starts a new epoch and jumps its offset, so a resume from before is refused."""
    prefix = _prefix()
    channel = CHANNELS[1]
    broker = redis_broker(redis_cluster.url, prefix)
    await broker.connect()
    stream = broker.listen()
    try:
        first = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0.2)
        await broker.subscribe_upstream(channel)
        before = await broker.publish(channel, {"type": "x"})
        assert (await asyncio.wait_for(first, 5)).offset == before.offset == 1
        _, old_epoch = await broker.latest(channel)
        primary = redis_cluster.owner_of(f"{prefix}ch:{{{channel}}}")
        replica = redis_cluster.replica_of(primary)
        # the replica has it all: a takeover then loses nothing, and offsets go on
        await asyncio.get_running_loop().run_in_executor(None, wait_replicated, primary)
        assert cli(replica, "cluster", "failover", "takeover") == "OK"
        assert await asyncio.wait_for(stream.__anext__(), 15) is RESYNC
        after = await broker.publish(channel, {"type": "x"})
        assert after.offset == 2 + REWIND_GAP    # the replica had 1; a new writer jumps
        item = await asyncio.wait_for(stream.__anext__(), 5)
        assert item.offset == after.offset
        offset, new_epoch = await broker.latest(channel)
        assert new_epoch != old_epoch
        assert not (await broker.history(channel, 1, epoch=old_epoch)).complete
        assert not (await broker.history(channel, 1)).complete   # 2 … 1,000,001 never were
        assert (await broker.history(channel, after.offset - 1)).publications[0].offset == \
            after.offset
        assert broker.reconnects == 1
    finally:
        await stream.aclose()
        await broker.close()
    await asyncio.get_running_loop().run_in_executor(None, redis_cluster.wait_healthy, 30)


async def test_a_slot_moved_by_resharding_resubscribes_and_recovers(redis_cluster):
    """Resharding a channel's slot to another primary: the old owner drops the shard
    subscription (sunsubscribe), the listener resubscribes on the new one and says RESYNC, and
    the channel's next publication there (new writer) jumps its offset."""
    prefix = _prefix()
    channel = CHANNELS[2]
    key = f"{prefix}ch:{{{channel}}}"
    broker = redis_broker(redis_cluster.url, prefix)
    await broker.connect()
    stream = broker.listen()
    try:
        first = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0.2)
        await broker.subscribe_upstream(channel)
        await broker.publish(channel, {"type": "x"})
        assert (await asyncio.wait_for(first, 5)).offset == 1
        slot = int(cli(redis_cluster.ports[0], "cluster", "keyslot", key))
        source = redis_cluster.owner_of(key)
        target = next(p for p in redis_cluster.primaries() if p != source)
        await asyncio.get_running_loop().run_in_executor(None, redis_cluster.move_slot, slot,
                                                         target)
        assert redis_cluster.owner_of(key) == target
        assert await asyncio.wait_for(stream.__anext__(), 10) is RESYNC
        after = await broker.publish(channel, {"type": "x"})      # MOVED, then the new owner
        assert after.offset == 2 + REWIND_GAP
        assert (await asyncio.wait_for(stream.__anext__(), 5)).offset == after.offset
        assert not (await broker.history(channel, 1)).complete
    finally:
        await stream.aclose()
        await broker.close()


async def test_raw_channels_are_heard_whichever_node_a_producer_publishes_on(redis_cluster):
    """Seed producers PUBLISH raw JSON on pubsub:* (classic pub/sub, broadcast to every node
    of a cluster): one SUBSCRIBE connection to one node hears them from any node."""
    broker = redis_broker(redis_cluster.url, _prefix(),
                         raw_channels={"pubsub:feed_item": "dashboard"})
    await broker.connect()
    stream = broker.listen()
    try:
        first = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0.3)
        for i, port in enumerate(redis_cluster.ports):
            cli(port, "publish", "pubsub:feed_item", f'{{"user_id": 1, "i": {i}}}')
        got = [await asyncio.wait_for(first, 5)]
        for _ in redis_cluster.ports[1:]:
            got.append(await asyncio.wait_for(stream.__anext__(), 5))
        assert sorted(p.data["i"] for p in got) == list(range(len(redis_cluster.ports)))
        assert {(p.channel, p.offset, p.data["type"]) for p in got} == \
            {("dashboard", None, "feed_item")}
    finally:
        await stream.aclose()
        await broker.close()


async def test_presence_and_cluster_stats_work_across_shards_and_processes(redis_cluster,
                                                                          tmp_path):
    """Presence (main's RedisStore) on the cluster broker: a channel's presence keys and its
    shard channel share the channel's slot, join/leave go out by SPUBLISH, and /admin/stats
    sums both processes from the {cluster} slot."""
    names = tmp_path / "namespaces.toml"
    names.write_text('[namespaces.race]\npattern = "race:{race}"\npresence = true\n'
                     'join_leave = true\n')
    async with two_servers(redis_cluster.url, tmp_path, _prefix(), PULSE_NAMESPACES=str(names),
                           PULSE_HEARTBEAT_TTL_SECONDS="3") as (a, b), \
            httpx.AsyncClient(timeout=5) as http:
        async with ws_client(a, mint_token(SECRET, 9)) as watcher, \
                ws_client(b, mint_token(SECRET, 3)) as racer:
            await watcher.subscribe("race:r1")
            await racer.subscribe("race:r1")
            joined = await watcher.recv_until(
                lambda f: f.get("data", {}).get("type") == "join"
                and f["data"]["user"] == 3, 5)   # made on B, heard on A
            assert "offset" not in joined

            async def present(host):
                answer = await http.get(f"http://{host}/presence", params={
                    "channel": "race:r1", "token": mint_token(SECRET, 9)})
                return sorted(c["user"] for c in answer.json()["clients"])

            async def stats():
                answer = await http.get(f"http://{b}/admin/stats",
                                        headers={"X-API-Key": API_KEY})
                return answer.json()["cluster"]

            await until_async(lambda: present(a), [3, 9], 5)
            await until_async(lambda: present(b), [3, 9], 5)
            await until_async(lambda: _pick(stats(), "processes"), 2, 5)
            await racer.ws.close()
            left = await watcher.recv_until(lambda f: f.get("data", {}).get("type") == "leave", 5)
            assert left["data"] == {"type": "leave", "user": 3}


async def _pick(awaitable, key):
    return (await awaitable)[key]


async def until_async(read, wanted, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (got := await read()) != wanted:
        if time.monotonic() > deadline:
            raise AssertionError(f"{got!r}, not {wanted!r}, after {timeout}s")
        await asyncio.sleep(0.1)
