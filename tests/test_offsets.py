"""Offsets every subscriber can trust (docs/protocol.md, "Offsets"): a user's own space on
user-targeted channels (no false gaps), epochs (no wrong messages after offsets restart) and
idempotent publishes (no second offset for one event under retries). Real Redis and the
embedded broker alike."""

import httpx
import pytest

from quart_app.realtime.broker_redis import RedisBroker

from .conftest import without_epoch, ws_client
from .proxy import TcpProxy
from .test_transport_sse import SseReader, sse_url


async def _interleave(svc, n=6):
    """Events for users 1 and 2 on mining, interleaved, and shared ones between them."""
    for i in range(n):
        await svc.publish("mining", {"type": "share_submitted", "user_id": 1 + i % 2, "i": i})
        if i % 3 == 0:
            await svc.publish("mining", {"type": "best_diff", "i": i})   # for everyone


def _check_contiguous(frames, user):
    shared = [f["offset"] for f in frames if "user_offset" not in f]
    mine = [f["user_offset"] for f in frames if "user_offset" in f]
    assert all(f["data"].get("user_id") in (None, user) for f in frames)
    assert shared == list(range(shared[0], shared[0] + len(shared))) if shared else True
    assert mine == list(range(mine[0], mine[0] + len(mine))) if mine else True
    return shared, mine


async def test_two_users_on_mining_see_contiguous_offsets_over_ws(live_server, token):
    address, app = live_server
    svc = app.extensions["pulse"]
    async with ws_client(address, token(1)) as one, ws_client(address, token(2)) as two:
        ack1, ack2 = await one.subscribe("mining"), await two.subscribe("mining")
        assert ack1["user_offset"] == 0 and ack2["user_offset"] == 0
        await _interleave(svc)
        got1 = [await one.recv() for _ in range(3 + 2)]
        got2 = [await two.recv() for _ in range(3 + 2)]
        assert _check_contiguous(got1, 1) == ([1, 2], [1, 2, 3])
        assert _check_contiguous(got2, 2) == ([1, 2], [1, 2, 3])
        assert await one.nothing(0.2) and await two.nothing(0.2)
        # Reconnect with both cursors after more events: exactly the missed, nothing else.
        last_shared, last_mine, epoch = 2, 3, None
    await _interleave(svc)
    async with ws_client(address, token(1)) as one:
        first = await one.subscribe("mining")
        await one.send({"action": "subscribe", "channel": "mining", "since": last_shared,
                        "user_since": last_mine, "epoch": first["epoch"]})
        replay = [await one.recv() for _ in range(2 + 3)]
        assert _check_contiguous(replay, 1) == ([3, 4], [4, 5, 6])
        ack = await one.recv()
        assert without_epoch(ack) == {"type": "subscribed", "channel": "mining", "offset": 4,
                                      "recovered": True, "user_offset": 6}
        assert await one.nothing(0.2)


async def test_sse_cursor_and_history_follow_the_same_spaces(live_server, token):
    address, app = live_server
    svc = app.extensions["pulse"]
    await _interleave(svc)
    async with httpx.AsyncClient(timeout=5) as http:
        async with http.stream("GET", sse_url(address, "mining", token(2)),
                               headers={"Last-Event-ID": "mining:0/0"}) as resp:
            reader = SseReader(resp)
            events = [await reader.data() for _ in range(5)]
            ack_event = await reader.data()
            ack = ack_event["data"]
        frames = [e["data"] for e in events]
        assert _check_contiguous(frames, 2) == ([1, 2], [1, 2, 3])
        assert events[-1]["id"] == "mining:2/3"                  # the cursor brought no epoch
        assert ack_event["id"] == f"mining:2/3@{ack['epoch']}"  # the ack's id carries it
        assert ack["recovered"] is True and ack["user_offset"] == 3
        page = (await http.get(f"http://{address}/history", params={
            "channel": "mining", "since": 0, "user_since": 0, "token": token(2)})).json()
        assert page["recovered"] and page["offset"] == 2 and page["user_offset"] == 3
        assert page["epoch"] == ack["epoch"] and page["more"] is False
        assert _check_contiguous(page["publications"], 2) == ([1, 2], [1, 2, 3])
        small = (await http.get(f"http://{address}/history", params={
            "channel": "mining", "since": 0, "user_since": 0, "limit": 2,
            "token": token(2)})).json()
        assert small["more"] is True and len(small["publications"]) == 2
        rest = (await http.get(f"http://{address}/history", params={
            "channel": "mining", "since": small["offset"], "user_since": small["user_offset"],
            "token": token(2)})).json()
        assert [p["data"]["i"] for p in small["publications"] + rest["publications"]] == \
            [p["data"]["i"] for p in page["publications"]]


async def test_a_stale_epoch_is_never_recovered(live_server, token):
    address, app = live_server
    svc = app.extensions["pulse"]
    for i in range(3):
        await svc.publish("competition", {"type": "match_update", "i": i})
    async with ws_client(address, token(1)) as ws:
        await ws.send({"action": "subscribe", "channel": "competition", "since": 1,
                       "epoch": "0stale0"})
        ack = await ws.recv()
        assert ack["type"] == "subscribed" and ack["recovered"] is False and ack["offset"] == 3
        assert ack["epoch"] != "0stale0"
        await ws.send({"action": "subscribe", "channel": "competition", "since": 1,
                       "epoch": ack["epoch"]})
        replay = [await ws.recv() for _ in range(2)]
        assert [f["offset"] for f in replay] == [2, 3]
        assert (await ws.recv())["recovered"] is True
        await ws.send({"action": "subscribe", "channel": "competition", "epoch": "bad,epoch"})
        assert (await ws.recv())["type"] == "error"


async def test_offsets_restarting_in_redis_get_a_new_epoch(redis_url, redis_prefix):
    """A flush (or a failover to a replica that lost the keys) restarts offsets at 1; the
    epoch changes with them, so a cursor from before cannot be 'recovered' into new messages."""
    broker = RedisBroker(redis_url, redis_prefix, 100, 60)
    await broker.connect()
    try:
        for _ in range(5):
            await broker.publish("competition", {"type": "x"})
        _, before = await broker.latest("competition")
        keys = [k async for k in broker.redis.scan_iter(match=f"{redis_prefix}*")]
        await broker.redis.delete(*keys)                        # Redis lost its data
        for _ in range(7):
            await broker.publish("competition", {"type": "x"})
        latest, after = await broker.latest("competition")
        assert latest == 7 and after and after != before
        stale = await broker.history("competition", 5, epoch=before)
        assert not stale.complete and stale.publications == []
        fresh = await broker.history("competition", 5, epoch=after)
        assert fresh.complete and [p.offset for p in fresh.publications] == [6, 7]
    finally:
        await broker.close()


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_a_publication_id_is_published_once(kind, request):
    from quart_app.realtime.broker_memory import MemoryBroker

    if kind == "memory":
        broker = MemoryBroker(100, 60)
    else:
        broker = RedisBroker(request.getfixturevalue("redis_url"),
                             request.getfixturevalue("redis_prefix"), 100, 60)
    await broker.connect()
    try:
        first = await broker.publish("competition", {"type": "x"}, publication_id="p1",
                                     body_hash="h1")
        again = await broker.publish("competition", {"type": "x"}, publication_id="p1",
                                     body_hash="h2")
        assert (first.offset, first.duplicate) == (1, False)
        assert (again.offset, again.duplicate, again.stored_hash) == (1, True, "h1")
        assert (await broker.latest("competition"))[0] == 1
        assert len((await broker.history("competition", 0)).publications) == 1
    finally:
        await broker.close()


async def test_a_redis_reply_lost_to_a_timeout_does_not_publish_twice(redis_url, redis_prefix):
    """Before: Redis ran the publish script, its reply came after the client's timeout, redis-py
    retried, and the event went out under two offsets while the producer saw one."""
    from quart_app.realtime.engine import Engine  # noqa: F401  (the id every publish carries)

    proxy = await TcpProxy("127.0.0.1", 6379).start()
    broker = RedisBroker(f"redis://127.0.0.1:{proxy.port}/0", redis_prefix, 100, 60,
                         socket_timeout=0.3)
    await broker.connect()
    try:
        await broker.publish("competition", {"type": "warm-up"}, publication_id="w")
        proxy.stall_next_reply = 0.8                      # the script runs; its answer is late
        published = await broker.publish("competition", {"type": "x"}, publication_id="e1")
        assert published.offset == 2
        history = await broker.history("competition", 0)
        assert [p.offset for p in history.publications] == [1, 2]
        assert [p.data["type"] for p in history.publications] == ["warm-up", "x"]
    finally:
        await broker.close()
        await proxy.close()
