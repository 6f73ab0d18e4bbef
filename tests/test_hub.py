import asyncio

import pytest

from quart_app.realtime.auth import Principal
from quart_app.realtime.broker_memory import MemoryBroker
from quart_app.realtime.hub import Connection, Hub, LimitExceeded
from quart_app.realtime.metrics import Metrics
from quart_app.realtime.outbox import Outbox

from .conftest import without_epoch


def who(user_id, projects=()):
    return Principal(user_id=user_id, expires_at=2e9, projects=frozenset(projects))


@pytest.fixture
async def hub():
    broker = MemoryBroker()
    await broker.connect()
    yield Hub(broker, Metrics(), max_connections_per_user=3, max_subscriptions=2)
    await broker.close()


def connect(hub, user_id=1, limit=100):
    conn = Connection(who(user_id), Outbox(limit, lambda: None), "test")
    hub.connect(conn)
    return conn


def frames(conn):
    import json

    return [json.loads(item.frame) for item in conn.outbox.take()]


async def test_subscribe_ack_and_broadcast_shares_one_encoding(hub):
    a, b = connect(hub, 1), connect(hub, 2)
    assert await hub.subscribe(a, "mining") and await hub.subscribe(b, "mining")
    assert frames(a) == [{"type": "subscribed", "channel": "mining", "offset": 0, "user_offset": 0,
                          "recovered": False}]
    frames(b)
    publication = await hub.broker.publish("mining", {"type": "share_submitted"})
    assert hub.dispatch(publication) == 2
    [item_a], [item_b] = a.outbox.take(), b.outbox.take()
    assert item_a is item_b is publication  # encoded once, shared


async def test_send_to_user_targeting(hub):
    a, b = connect(hub, 1), connect(hub, 2)
    for conn in (a, b):
        await hub.subscribe(conn, "gamification")
        await hub.subscribe(conn, "competition")
        frames(conn)
    hub.dispatch(await hub.broker.publish("gamification", {"type": "badge_earned", "user_id": 2}))
    hub.dispatch(await hub.broker.publish("competition", {"type": "leaderboard_update",
                                                          "user_id": 2}))
    assert [f["channel"] for f in frames(a)] == ["competition"]  # not targeted: everyone
    assert [f["channel"] for f in frames(b)] == ["gamification", "competition"]


async def test_disconnect_leaves_nothing_behind(hub):
    conns = [connect(hub, 1) for _ in range(3)]
    for conn in conns:
        await hub.subscribe(conn, "mining")
        await hub.subscribe(conn, "dashboard")
    for conn in conns:
        hub.disconnect(conn)
        hub.disconnect(conn)  # idempotent
    assert hub.get_stats() == {"total_connections": 0, "unique_users": 0, "channels": {}}
    assert hub._channels == {} and hub._users == {} and hub._connections == {}
    assert all(conn.outbox.closed for conn in conns)


async def test_unsubscribe_removes_empty_channel(hub):
    conn = connect(hub)
    await hub.subscribe(conn, "mining")
    hub.unsubscribe(conn, "mining")
    assert frames(conn)[-1] == {"type": "unsubscribed", "channel": "mining"}
    assert hub.get_stats()["channels"] == {}
    hub.dispatch(await hub.broker.publish("mining", {"type": "x"}))
    assert frames(conn) == []


async def test_limits(hub):
    conns = [connect(hub, 9) for _ in range(3)]
    with pytest.raises(LimitExceeded, match="max 3"):
        connect(hub, 9)
    conn = conns[0]
    assert await hub.subscribe(conn, "mining") and await hub.subscribe(conn, "dashboard")
    assert not await hub.subscribe(conn, "gamification")
    assert frames(conn)[-1]["message"].startswith("Subscription limit reached")
    assert set(conn.subs) == {"mining", "dashboard"}


async def test_recovery_replays_in_order_then_acks(hub):
    for i in range(5):
        await hub.broker.publish("mining", {"type": "x", "i": i})
    conn = connect(hub)
    await hub.subscribe(conn, "mining", since=2)
    got = frames(conn)
    assert [f.get("offset") for f in got[:3]] == [3, 4, 5]
    assert without_epoch(got[3]) == {"type": "subscribed", "channel": "mining", "offset": 5,
                                     "recovered": True, "user_offset": 0}


async def test_seam_race_no_gap_no_duplicate(hub):
    """Publications dispatched while the replay is being read arrive once, in order."""
    broker = hub.broker
    for i in range(3):
        await broker.publish("mining", {"type": "x"})
    conn = connect(hub)
    original = broker.history

    async def slow_history(channel, since, **kwargs):
        result = await original(channel, since, **kwargs)
        # two publications race the replay: one already in history (dup), one new
        hub.dispatch(result.publications[-1])
        hub.dispatch(await broker.publish("mining", {"type": "x"}))
        return result

    broker.history = slow_history
    await hub.subscribe(conn, "mining", since=1)
    offsets = [f.get("offset") for f in frames(conn) if "channel" in f and "data" in f]
    assert offsets == [2, 3, 4]


async def test_expired_history_acks_not_recovered(hub):
    hub.broker._size = 2
    hub.broker._history.clear()
    for i in range(6):
        await hub.broker.publish("mining", {"type": "x"})
    hub.broker._history["mining"] = type(hub.broker._history.get("mining", []))(
        list(hub.broker._history.get("mining", []))[-2:])
    conn = connect(hub)
    await hub.subscribe(conn, "mining", since=1)
    assert without_epoch(frames(conn)) == [{"type": "subscribed", "channel": "mining",
                                            "offset": 6, "recovered": False, "user_offset": 0}]


async def test_broker_failure_undoes_the_subscription(hub):
    conn = connect(hub)

    async def broken(channel, **kwargs):
        raise ConnectionError("down")

    hub.broker.latest = broken
    with pytest.raises(ConnectionError):
        await hub.subscribe(conn, "mining")
    assert conn.subs == {} and hub.get_stats()["channels"] == {}


async def test_replay_respects_user_targeting(hub):
    await hub.broker.publish("gamification", {"type": "badge_earned", "user_id": 2})
    await hub.broker.publish("gamification", {"type": "badge_earned", "user_id": 1})
    conn = connect(hub, 1)
    await hub.subscribe(conn, "gamification", since=0)
    got = [f for f in frames(conn) if "data" in f]
    assert [f["data"]["user_id"] for f in got] == [1]


async def test_resync_dispatches_missed_publications(hub):
    conn = connect(hub)
    await hub.subscribe(conn, "mining")
    frames(conn)
    for i in range(3):  # published while "disconnected": not dispatched
        await hub.broker.publish("mining", {"type": "x"})
    assert await hub.resync() == 3
    assert [f["offset"] for f in frames(conn)] == [1, 2, 3]
    assert await hub.resync() == 0


async def test_a_users_own_space_is_forgotten_once_its_last_subscriber_is_gone(hub):
    """The sweep forgets ``dashboard#<user>`` offsets nobody here follows any more, and walks
    them only when a subscription has ended since the last sweep."""
    a, b, other = connect(hub, 1), connect(hub, 1), connect(hub, 2)
    for conn in (a, b, other):
        assert await hub.subscribe(conn, "dashboard")
    assert {"dashboard#1", "dashboard#2"} <= set(hub.last_offset)
    hub.idle_upstream()
    assert {"dashboard#1", "dashboard#2"} <= set(hub.last_offset)
    hub.disconnect(a)
    hub.idle_upstream()
    assert "dashboard#1" in hub.last_offset  # b still follows it
    hub.unsubscribe(b, "dashboard")
    hub.last_offset["dashboard#9"] = 5  # stale, but nothing ended since: not walked
    hub.idle_upstream()
    assert "dashboard#1" not in hub.last_offset and "dashboard#2" in hub.last_offset
    assert "dashboard#9" not in hub.last_offset  # the same pass found it too
    hub.last_offset["dashboard#8"] = 5
    hub.idle_upstream()
    assert "dashboard#8" in hub.last_offset  # no subscription ended since: left alone
    hub.disconnect(other)
    hub.idle_upstream()
    assert not any("#" in stream for stream in hub.last_offset)
