"""No message lost (DESIGN §9): since-recovery, the seam race, expiry, Redis outages."""
import asyncio
import json

import pytest

from quart_app.realtime.broker_redis import RedisBroker

from .conftest import make_settings, serve_app, without_epoch, ws_client


async def collect(ws, n, timeout=5.0):
    got = []
    while len(got) < n:
        frame = await ws.recv(timeout)
        if "data" in frame and "offset" in frame:
            got.append(frame)
    return got


async def test_reconnect_with_since_gets_exactly_the_missed(live_server, token):
    address, app = live_server
    svc = app.extensions["pulse"]
    async with ws_client(address, token(1)) as ws:
        await ws.subscribe("competition")
        await svc.publish("competition", {"type": "match_update", "i": 0})
        last = (await collect(ws, 1))[0]["offset"]
    for i in range(1, 8):
        await svc.publish("competition", {"type": "match_update", "i": i})
    async with ws_client(address, token(1)) as ws:
        await ws.send({"action": "subscribe", "channel": "competition", "since": last})
        replay = await collect(ws, 7)
        assert [f["data"]["i"] for f in replay] == list(range(1, 8))
        assert [f["offset"] for f in replay] == list(range(last + 1, last + 8))
        ack = await ws.recv()
        assert without_epoch(ack) == {"type": "subscribed", "channel": "competition", "offset": last + 7,
                       "recovered": True}
        await svc.publish("competition", {"type": "match_update", "i": 8})
        assert (await collect(ws, 1))[0]["offset"] == last + 8
        assert await ws.nothing(0.2)


async def test_seam_race_under_concurrent_publishing(live_server, token):
    """Resubscribe with `since` while a producer publishes flat out: contiguous, no dup."""
    address, app = live_server
    svc = app.extensions["pulse"]
    total = 300
    stop = asyncio.Event()

    async def produce():
        for i in range(total):
            await svc.publish("mining", {"type": "share_submitted", "i": i})
            if i % 10 == 0:
                await asyncio.sleep(0)
        stop.set()

    async with ws_client(address, token(1)) as ws:
        await ws.subscribe("mining")
        producer = asyncio.ensure_future(produce())
        first = await collect(ws, 20)
    last = first[-1]["offset"]
    async with ws_client(address, token(1)) as ws:
        await ws.send({"action": "subscribe", "channel": "mining", "since": last})
        rest = await collect(ws, total - last, timeout=10)
        await producer
        offsets = [f["offset"] for f in first] + [f["offset"] for f in rest]
        assert offsets == list(range(1, total + 1))
        # the ack follows the replay; whatever else arrives would be a duplicate
        try:
            while True:
                extra = await ws.recv(0.3)
                assert without_epoch(extra) == {"type": "subscribed", "channel": "mining",
                                 "offset": extra.get("offset"), "recovered": True, "user_offset": 0}, extra
        except asyncio.TimeoutError:
            pass



async def test_history_gone_acks_not_recovered(tmp_path, token, backend):
    settings = make_settings(backend["database_url"], backend["redis_url"], backend["prefix"],
                             PULSE_HISTORY_SIZE="5")
    async with serve_app(settings) as (address, app):
        svc = app.extensions["pulse"]
        for i in range(12):
            await svc.publish("competition", {"type": "match_update", "i": i})
        async with ws_client(address, token(1)) as ws:
            await ws.send({"action": "subscribe", "channel": "competition", "since": 2})
            assert without_epoch(await ws.recv()) == {"type": "subscribed", "channel": "competition",
                                       "offset": 12, "recovered": False}
            await ws.send({"action": "subscribe", "channel": "competition", "since": 8})
            replay = await collect(ws, 4)
            assert [f["offset"] for f in replay] == [9, 10, 11, 12]
            assert (await ws.recv())["recovered"] is True


async def test_history_endpoint_for_polling(client, token, app):
    svc = app.extensions["pulse"]
    for i in range(4):
        await svc.publish("activity:feed", {"type": "feed_item", "i": i})
    response = await client.get("/history", query_string={"channel": "activity:feed",
                                                          "since": "1", "token": token(1)})
    body = await response.get_json()
    assert response.status_code == 200
    assert body["offset"] == 4 and body["recovered"] is True
    assert [p["offset"] for p in body["publications"]] == [2, 3, 4]
    assert body["publications"][0] == {"channel": "activity:feed", "offset": 2,
                                       "data": {"type": "feed_item", "i": 1}}
    bad = [({"channel": "nope", "since": "0"}, 400), ({"channel": "mining", "since": "-1"}, 400),
           ({"channel": "user:2:progress", "since": "0"}, 403), ({"since": "0"}, 400)]
    for query, status in bad:
        response = await client.get("/history", query_string={**query, "token": token(1)})
        assert response.status_code == status
        assert "detail" in await response.get_json()


@pytest.mark.integration
async def test_two_servers_on_one_redis_agree_on_offsets(tmp_path, redis_url, redis_prefix, token):
    one = make_settings(f"sqlite:///{tmp_path}/a.db", redis_url, redis_prefix)
    two = make_settings(f"sqlite:///{tmp_path}/b.db", redis_url, redis_prefix)
    async with serve_app(one) as (addr_a, app_a), serve_app(two) as (addr_b, app_b):
        async with ws_client(addr_a, token(1)) as a, ws_client(addr_b, token(2)) as b:
            await a.subscribe("dashboard")
            await b.subscribe("dashboard")
            await asyncio.sleep(0.1)
            for i in range(10):
                app = app_a if i % 2 else app_b
                await app.extensions["pulse"].publish("dashboard", {"type": "feed_item", "i": i})
            got_a, got_b = await collect(a, 10), await collect(b, 10)
            assert [(f["offset"], f["data"]["i"]) for f in got_a] == \
                   [(f["offset"], f["data"]["i"]) for f in got_b]
            assert [f["offset"] for f in got_a] == list(range(1, 11))


@pytest.mark.integration
async def test_listener_outage_subscribers_still_get_everything(tmp_path, redis_url,
                                                               redis_prefix, token):
    from .proxy import TcpProxy

    proxy = await TcpProxy("127.0.0.1", 6379).start()
    settings = make_settings(f"sqlite:///{tmp_path}/p.db", f"redis://127.0.0.1:{proxy.port}/0",
                             redis_prefix)
    producer = RedisBroker(redis_url, redis_prefix)
    await producer.connect()
    try:
        async with serve_app(settings) as (address, app):
            svc = app.extensions["pulse"]
            async with ws_client(address, token(1)) as ws:
                await ws.subscribe("competition")
                await producer.publish("competition", {"type": "match_update", "i": 0})
                await collect(ws, 1)
                proxy.cut()
                for i in range(1, 6):  # published while this process cannot hear Redis
                    await producer.publish("competition", {"type": "match_update", "i": i})
                await asyncio.sleep(0.3)
                proxy.restore()
                got = await collect(ws, 5, timeout=10)
                assert [f["offset"] for f in got] == [2, 3, 4, 5, 6]
                assert svc.metrics.listener_reconnects >= 1
                await producer.publish("competition", {"type": "match_update", "i": 6})
                assert (await collect(ws, 1))[0]["offset"] == 7
    finally:
        await producer.close()
        await proxy.close()
