"""`/ws` over a real Hypercorn socket: the protocol of DESIGN §6, seed 000 §3.7.1, fan-out."""
import asyncio
import json
import socket
import statistics
import time

import pytest
import redis.asyncio as aioredis
import websockets

from .conftest import SEED_MAPPINGS, make_settings, serve_app, ws_client


# -- seed 000 §3.7.1 ----------------------------------------------------------------------
async def test_connect_with_valid_token_ping_pong(live_server, token):
    address, _ = live_server
    async with ws_client(address, token(1)) as ws:
        await ws.send({"action": "ping"})
        assert (await ws.recv())["type"] == "pong"
        await ws.send({"action": "ping", "ts": 123.5})
        assert await ws.recv() == {"type": "pong", "ts": 123.5}


@pytest.mark.parametrize("query", ["?token=invalid", ""])
async def test_connect_invalid_or_missing_token_closes_4001(live_server, query):
    address, _ = live_server
    async with websockets.connect(f"ws://{address}/ws{query}") as ws:
        with pytest.raises(websockets.ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 8)
    assert info.value.rcvd.code == 4001 and info.value.rcvd.reason


async def test_subscribe_unsubscribe_and_errors_keep_the_session(live_server, token):
    address, _ = live_server
    async with ws_client(address, token(1)) as ws:
        assert await ws.subscribe("mining") == {
            "type": "subscribed", "channel": "mining", "offset": 0, "recovered": False,
            "user_offset": 0}
        await ws.send({"action": "unsubscribe", "channel": "mining"})
        assert await ws.recv() == {"type": "unsubscribed", "channel": "mining"}
        cases = [
            ({"action": "subscribe", "channel": "nonexistent"}, "Invalid channel: nonexistent"),
            ({"action": "explode"}, "Unknown action: explode"),
            ("{not json", "Invalid JSON"),
            ("[1, 2]", "Invalid frame"),
            ("42", "Invalid frame"),
            ({"channel": "mining"}, "Unknown action"),
            ({"action": "subscribe"}, "Missing or invalid 'channel'"),
            ({"action": "subscribe", "channel": 7}, "Missing or invalid 'channel'"),
            ({"action": "unsubscribe"}, "Missing or invalid 'channel'"),
            ({"action": "subscribe", "channel": "user:2:progress"}, "Forbidden channel"),
            ({"action": "subscribe", "channel": "project:p9:events"}, "Forbidden channel"),
            ({"action": "subscribe", "channel": "mining", "since": -1}, "Invalid 'since'"),
            ({"action": "subscribe", "channel": "mining", "since": "x"}, "Invalid 'since'"),
            (b"\x00\x01binary", "Binary frames are not supported"),
            ({"action": "ping", "pad": "x" * 5000}, "Frame too large"),
        ]
        for frame, message in cases:
            await ws.send(frame)
            reply = await ws.recv()
            assert reply["type"] == "error" and reply["message"].startswith(message), (frame, reply)
        await ws.send({"action": "ping", "ts": 1})
        assert await ws.recv() == {"type": "pong", "ts": 1}


async def test_channel_rules_for_owner_and_project_member(live_server, token):
    address, _ = live_server
    async with ws_client(address, token(7, projects=["acme"])) as ws:
        for channel in ("user:7:progress", "user:7:achievements", "user:7:rank-changes",
                        "project:acme:events", "leaderboard:hashrate", "activity:feed",
                        "activity:achievements", "activity:high-scores", "session:s1:live",
                        "session:s1:competitors", "dashboard", "gamification", "competition"):
            assert (await ws.subscribe(channel))["type"] == "subscribed", channel
        for channel in ("activity:other", "user:7:secrets", "leaderboard:", "session:x:dead",
                        "leaderboard:a:b", "MINING"):
            reply = await ws.subscribe(channel)
            assert reply == {"type": "error", "message": f"Invalid channel: {channel}",
                             "channel": channel}


async def test_publication_shape_and_user_targeting(live_server, token):
    address, app = live_server
    svc = app.extensions["pulse"]
    async with ws_client(address, token(1)) as one, ws_client(address, token(2)) as two:
        for ws in (one, two):
            await ws.subscribe("gamification")
        await svc.publish("gamification", {"type": "badge_earned", "user_id": 2, "badge": "b"})
        await svc.publish("gamification", {"type": "level_up", "level": 3})
        got_two = [await two.recv(), await two.recv()]
        # User 2's badge is in user 2's own offset space; the level_up in the channel's. So
        # neither user sees a hole (docs/protocol.md, "Offsets").
        assert got_two[0] == {"channel": "gamification", "offset": 1, "user_offset": 1,
                              "data": {"type": "badge_earned", "user_id": 2, "badge": "b"}}
        assert got_two[1]["data"]["type"] == "level_up" and "user_offset" not in got_two[1]
        only = await one.recv()
        assert only["data"] == {"type": "level_up", "level": 3} and only["offset"] == 1
        assert await one.nothing(0.2)


async def test_hub_stats_while_connected(live_server, token):
    address, app = live_server
    svc = app.extensions["pulse"]
    async with ws_client(address, token(1)) as a, ws_client(address, token(1)) as b:
        await a.subscribe("mining")
        await b.subscribe("mining")
        await b.subscribe("dashboard")
        stats = svc.hub.get_stats()
        assert stats["total_connections"] == 2 and stats["unique_users"] == 1
        assert stats["channels"]["mining"] == 2
    for _ in range(100):
        if svc.hub.connection_count == 0:
            break
        await asyncio.sleep(0.02)
    assert svc.hub.get_stats() == {"total_connections": 0, "unique_users": 0, "channels": {}}
    assert svc.ws_sessions == {}


# -- the Redis bridge (real Redis) --------------------------------------------------------


@pytest.mark.integration
async def test_all_twelve_seed_mappings_and_garbage(redis_server, redis_url, token):
    address, _ = redis_server
    redis = aioredis.Redis.from_url(redis_url)
    try:
        async with ws_client(address, token(1)) as ws:
            for channel in ("mining", "dashboard", "gamification", "competition"):
                await ws.subscribe(channel)
            for redis_channel, _ in SEED_MAPPINGS:
                await redis.publish(redis_channel, b"not json at all")
                await redis.publish(redis_channel, json.dumps([1]))
                await redis.publish(redis_channel, json.dumps({"n": redis_channel}))
            for redis_channel, ws_channel in SEED_MAPPINGS:
                frame = await ws.recv_until(lambda f: "data" in f)
                assert frame == {"channel": ws_channel,
                                 "data": {"type": redis_channel.split(":")[1], "n": redis_channel}}
            assert await ws.nothing(0.2)
    finally:
        await redis.aclose()


@pytest.mark.integration
async def test_one_hundred_concurrent_connections_and_latency(redis_server, token):
    address, app = redis_server
    svc = app.extensions["pulse"]
    clients = [websockets.connect(f"ws://{address}/ws?token={token(i % 20 + 1)}")
               for i in range(100)]
    sockets = await asyncio.gather(*clients)
    try:
        for ws in sockets:
            await ws.send(json.dumps({"action": "subscribe", "channel": "mining"}))
        for ws in sockets:
            assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "subscribed"
        latencies = []
        for round_ in range(20):
            sent = time.perf_counter()
            await svc.publish("mining", {"type": "share_submitted", "round": round_})
            frames = await asyncio.gather(*[asyncio.wait_for(ws.recv(), 5) for ws in sockets])
            latencies.append((time.perf_counter() - sent) * 1000)
            assert all(json.loads(f)["data"]["round"] == round_ for f in frames)
        latencies.sort()
        p50, p99 = statistics.median(latencies), latencies[int(len(latencies) * 0.99) - 1]
        print(f"\n100 clients, publish -> all 100 received: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
        assert p99 < 100
    finally:
        await asyncio.gather(*[ws.close() for ws in sockets])


async def _stalled_client(address: str, token: str) -> socket.socket:
    """A raw WebSocket client with a tiny receive buffer that never reads after subscribing.

    Non-blocking: the server under test runs in this same event loop.
    """
    import base64
    import os

    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    host, port = address.split(":")
    await loop.sock_connect(sock, (host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    await loop.sock_sendall(sock, (
        f"GET /ws?token={token} HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = await asyncio.wait_for(loop.sock_recv(sock, 4096), 5)
    assert b"101" in head.split(b"\r\n")[0]
    payload = json.dumps({"action": "subscribe", "channel": "activity:feed"}).encode()
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    await loop.sock_sendall(sock, bytes([0x81, 0x80 | len(payload)]) + mask + masked)
    return sock


async def test_slow_client_is_closed_while_others_stay_on_time(tmp_path, token):
    settings = make_settings(f"sqlite:///{tmp_path}/p.db", PULSE_OUTBOX_MESSAGES="20",
                             PULSE_OUTBOX_HIGH_WATER_BYTES="8192")
    async with serve_app(settings) as (address, app):
        svc = app.extensions["pulse"]
        stalled = await _stalled_client(address, token(50))
        async with ws_client(address, token(1)) as fast:
            await fast.subscribe("activity:feed")
            await asyncio.sleep(0.2)
            blob = "x" * 32000  # enough to fill the kernel buffers of the stalled socket
            worst = 0.0
            for i in range(400):
                sent = time.perf_counter()
                await svc.publish("activity:feed", {"type": "feed_item", "i": i, "blob": blob})
                frame = await fast.recv(2)
                worst = max(worst, time.perf_counter() - sent)
                assert frame["data"]["i"] == i
            print(f"\nfast client worst latency beside a stalled one: {worst * 1000:.1f} ms")
            assert worst < 0.5
            for _ in range(100):
                if svc.metrics.slow_consumer_closes:
                    break
                await asyncio.sleep(0.02)
            assert svc.metrics.slow_consumer_closes == 1
            assert svc.hub.get_stats()["channels"]["activity:feed"] == 1
        stalled.close()


async def test_disconnects_leave_no_tasks_behind(live_server, token):
    address, app = live_server
    svc = app.extensions["pulse"]
    await asyncio.sleep(0.1)
    before = len(asyncio.all_tasks())
    for round_ in range(3):
        sockets = [await websockets.connect(f"ws://{address}/ws?token={token(i + 1)}")
                   for i in range(15)]
        for ws in sockets:
            await ws.send(json.dumps({"action": "subscribe", "channel": "mining"}))
            await asyncio.wait_for(ws.recv(), 5)
        await asyncio.gather(*[ws.close() for ws in sockets])
    for _ in range(100):
        if svc.hub.connection_count == 0 and len(asyncio.all_tasks()) <= before:
            break
        await asyncio.sleep(0.05)
    assert svc.hub.get_stats() == {"total_connections": 0, "unique_users": 0, "channels": {}}
    assert svc.ws_sessions == {}
    assert len(asyncio.all_tasks()) <= before
