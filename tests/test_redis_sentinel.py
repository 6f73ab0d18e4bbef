"""Pulse on a master, a replica and three sentinels (tests/redis_cluster.py): the listener
follows a failover and the hub recovers, as after a Redis restart."""
from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from quart_app.realtime.broker import RESYNC
from quart_app.realtime.broker_ha import REWIND_GAP
from quart_app.realtime.redis_urls import redis_broker
from quart_app.realtime.broker_sentinel import SentinelBroker

from .ha_support import traffic_through_a_failover, two_servers
from .redis_cluster import wait_replicated

pytestmark = pytest.mark.integration

CHANNELS = ["competition", "leaderboard:wpm", "leaderboard:accuracy", "activity:feed"]


def _prefix() -> str:
    return f"pulse-test:{uuid.uuid4().hex[:12]}:"


async def test_the_url_picks_the_sentinel_broker(redis_sentinel):
    broker = redis_broker(redis_sentinel.url, "p:")
    assert isinstance(broker, SentinelBroker)
    assert broker.topology.master == "pulsemaster" and broker.topology.db == 0
    await broker.connect()
    try:
        await broker.ping()
        publication = await broker.publish("competition", {"type": "x"})
        assert publication.offset == 1
        # the master the sentinels name is where it went
        info = await broker.redis.info("replication")
        assert info["role"] == "master"
        assert broker.redis.connection_pool.master_address[1] == redis_sentinel.master_port()
    finally:
        await broker.close()


async def test_a_burst_of_commands_waits_for_connections(redis_sentinel):
    broker = redis_broker(redis_sentinel.url, _prefix())
    await broker.connect()
    try:
        channels = [f"leaderboard:burst{i}" for i in range(60)]
        await asyncio.gather(*(broker.publish(c, {"type": "x"}) for c in channels * 5))
        latest = await asyncio.gather(*(broker.latest(c) for c in channels * 5))
        assert {offset for offset, _ in latest} == {5}
        assert broker.redis.connection_pool.max_connections == 32
    finally:
        await broker.close()


async def test_the_listener_follows_a_failover_and_says_resync(redis_sentinel):
    """SIGKILL the master: the sentinels promote the replica; the listener reconnects to it,
    resubscribes and yields RESYNC; the next publication there starts a new epoch and jumps
    its offset."""
    prefix = _prefix()
    broker = redis_broker(redis_sentinel.url, prefix)
    await broker.connect()
    stream = broker.listen()
    old_master = redis_sentinel.master_port()
    try:
        first = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0.2)
        await broker.subscribe_upstream("competition")
        await broker.publish("competition", {"type": "x"})
        assert (await asyncio.wait_for(first, 5)).offset == 1
        _, old_epoch = await broker.latest("competition")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, wait_replicated, old_master)
        await loop.run_in_executor(None, _crash, redis_sentinel, old_master)
        assert await asyncio.wait_for(stream.__anext__(), 20) is RESYNC
        after = await broker.publish("competition", {"type": "x"})
        assert after.offset == 2 + REWIND_GAP          # the replica had 1; a new writer jumps
        assert (await asyncio.wait_for(stream.__anext__(), 5)).offset == after.offset
        _, new_epoch = await broker.latest("competition")
        assert new_epoch != old_epoch
        assert not (await broker.history("competition", 1, epoch=old_epoch)).complete
        assert not (await broker.history("competition", 1)).complete
        assert broker.reconnects == 1
    finally:
        await stream.aclose()
        await broker.close()
        await asyncio.get_running_loop().run_in_executor(None, redis_sentinel.restart,
                                                         old_master)


async def test_a_master_killed_mid_traffic_loses_nothing_silently(redis_sentinel, tmp_path):
    """Two server processes, subscribers on both, publishing through both; SIGKILL the master
    mid-traffic: every subscriber has every acknowledged publication in order or was told
    ``recovered: false``, and publications flow again within seconds."""
    victim = redis_sentinel.master_port()
    try:
        async with two_servers(redis_sentinel.url, tmp_path, _prefix()) as bases:
            _, _, flowing_after = await traffic_through_a_failover(
                bases, CHANNELS, lambda: _crash(redis_sentinel, victim, 0.15), tmp_path)
        assert redis_sentinel.master_port() != victim
        assert flowing_after < 30
    finally:
        await asyncio.get_running_loop().run_in_executor(None, redis_sentinel.restart, victim)


def _crash(topology, port: int, delay: float = 0.0) -> None:
    time.sleep(delay)
    topology.kill(port)
    topology.wait_for_new_master(port)
