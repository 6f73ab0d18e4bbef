"""`/sse` with a real streaming HTTP client (httpx) against a real Hypercorn server."""
import asyncio
import json

import httpx
import pytest

from .conftest import make_settings, serve_app, without_epoch


class SseReader:
    def __init__(self, response):
        self.response = response
        self.lines = response.aiter_lines()

    async def event(self, timeout=3.0):
        """The next event as {"id":…, "data":…, "comment":…, "retry":…} (bounded wait)."""
        event = {}

        async def read():
            async for line in self.lines:
                if line == "":
                    if event:
                        return event
                    continue
                if line.startswith(":"):
                    event.setdefault("comment", line[1:].strip())
                    continue
                field, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                event[field] = json.loads(value) if field == "data" else value
            return event

        return await asyncio.wait_for(read(), timeout)

    async def data(self, timeout=3.0):
        while True:
            event = await self.event(timeout)
            if "data" in event:
                return event


def sse_url(address, channels, token):
    return f"http://{address}/sse?channels={channels}&token={token}"


async def test_stream_headers_ack_and_publications(live_server, token):
    address, app = live_server
    svc = app.extensions["pulse"]
    async with httpx.AsyncClient(timeout=5) as http:
        async with http.stream("GET", sse_url(address, "mining,competition", token(1))) as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"].startswith("text/event-stream")
            assert resp.headers["cache-control"] == "no-cache"
            assert resp.headers["x-accel-buffering"] == "no"
            reader = SseReader(resp)
            first = await reader.event()
            assert first["retry"].isdigit()
            acks = [(await reader.data())["data"], (await reader.data())["data"]]
            assert {a["channel"] for a in acks} == {"mining", "competition"}
            assert all(a["type"] == "subscribed" for a in acks)
            await svc.publish("mining", {"type": "share_submitted", "i": 1})
            await svc.publish("competition", {"type": "match_update", "i": 2})
            one, two = await reader.data(), await reader.data()
            assert one["data"] == {"channel": "mining", "offset": 1,
                                   "data": {"type": "share_submitted", "i": 1}}
            assert one["id"] == "mining:1/0,competition:0"  # mining: the user's own space too
            assert two["id"] == "mining:1/0,competition:1"
        for _ in range(100):
            if svc.hub.connection_count == 0:
                break
            await asyncio.sleep(0.02)
        assert svc.hub.get_stats() == {"total_connections": 0, "unique_users": 0, "channels": {}}
        assert not svc.sse_heartbeats and not svc.sse_closers


async def test_errors_before_streaming(live_server, token):
    address, _ = live_server
    async with httpx.AsyncClient(timeout=5) as http:
        cases = [
            (f"http://{address}/sse?channels=mining", 401),
            (f"http://{address}/sse?channels=mining&token=garbage", 401),
            (sse_url(address, "", token(1)), 400),
            (sse_url(address, "mining,bogus", token(1)), 400),
            (sse_url(address, "user:2:progress", token(1)), 403),
        ]
        for url, status in cases:
            response = await http.get(url)
            assert response.status_code == status, url
            assert response.headers["content-type"].startswith("application/json")
            assert response.json()["detail"]
        bad_cursor = await http.get(sse_url(address, "mining", token(1)),
                                    headers={"Last-Event-ID": "zzz"})
        assert bad_cursor.status_code == 400


async def test_last_event_id_resumes_exactly(live_server, token):
    address, app = live_server
    svc = app.extensions["pulse"]
    async with httpx.AsyncClient(timeout=5) as http:
        async with http.stream("GET", sse_url(address, "mining", token(1))) as resp:
            reader = SseReader(resp)
            await reader.data()  # ack
            await svc.publish("mining", {"type": "share_submitted", "i": 0})
            cursor = (await reader.data())["id"]
        for i in range(1, 6):
            await svc.publish("mining", {"type": "share_submitted", "i": i})
        async with http.stream("GET", sse_url(address, "mining", token(1)),
                               headers={"Last-Event-ID": cursor}) as resp:
            reader = SseReader(resp)
            replay = [await reader.data() for _ in range(5)]
            assert [e["data"]["data"]["i"] for e in replay] == [1, 2, 3, 4, 5]
            # mining is user-targeted: the cursor holds the user's own offset (0) as well
            assert [e["id"] for e in replay] == [f"mining:{n}/0" for n in range(2, 7)]
            ack = (await reader.data())["data"]
            assert without_epoch(ack) == {"type": "subscribed", "channel": "mining", "offset": 6,
                                          "recovered": True, "user_offset": 0}


async def test_heartbeat_comment(tmp_path, token):
    settings = make_settings(f"sqlite:///{tmp_path}/h.db", PULSE_SSE_HEARTBEAT_SECONDS="0.2")
    async with serve_app(settings) as (address, _app):
        async with httpx.AsyncClient(timeout=5) as http:
            async with http.stream("GET", sse_url(address, "mining", token(1))) as resp:
                reader = SseReader(resp)
                await reader.data()
                event = await reader.event(timeout=2)
                assert event.get("comment") == "keepalive"


async def test_cursor_never_runs_ahead_during_a_two_channel_replay(live_server, token):
    """Each id: names only what this stream has written, so a native EventSource that drops
    mid-replay resumes without losing the rest."""
    address, app = live_server
    svc = app.extensions["pulse"]
    for i in range(3):
        await svc.publish("activity:feed", {"type": "feed_item", "i": i})
        await svc.publish("mining", {"type": "share_submitted", "i": i})
    epochs = {ch: (await svc.broker.latest(ch))[1] for ch in ("activity:feed", "mining")}
    async with httpx.AsyncClient(timeout=5) as http:
        async with http.stream("GET", sse_url(address, "activity:feed,mining", token(1)),
                               headers={"Last-Event-ID": "activity:feed:0,mining:0"}) as resp:
            reader = SseReader(resp)
            ids = []
            for _ in range(8):  # 3 + ack, 3 + ack
                event = await reader.data()
                if "id" in event:
                    ids.append(event["id"])
    # Publications and acks alike: the ack's id repeats the position its replay reached.
    ids = [i.replace(f"@{epochs['activity:feed']}", "").replace(f"@{epochs['mining']}", "")
           for i in ids]
    assert ids == ["activity:feed:1,mining:0", "activity:feed:2,mining:0",
                   "activity:feed:3,mining:0", "activity:feed:3,mining:0",
                   "activity:feed:3,mining:1", "activity:feed:3,mining:2",
                   # the ack adds the user's own space of mining (the cursor had none)
                   "activity:feed:3,mining:3", "activity:feed:3,mining:3/0"]


async def test_a_stream_dropped_before_any_publication_resumes_from_its_ack(live_server, token):
    """The subscribed ack carries an id: too. A native EventSource that drops before the
    channel's first publication sends it back, and misses nothing published meanwhile."""
    address, app = live_server
    svc = app.extensions["pulse"]
    await svc.publish("mining", {"type": "share_submitted", "i": 0})
    async with httpx.AsyncClient(timeout=5) as http:
        async with http.stream("GET", sse_url(address, "mining", token(1))) as resp:
            reader = SseReader(resp)
            ack = await reader.data()
            epoch = ack["data"]["epoch"]
            assert ack["data"]["type"] == "subscribed" and ack["id"] == f"mining:1/0@{epoch}"
        # Dropped. Published while the browser waits for `retry:`:
        await svc.publish("mining", {"type": "share_submitted", "i": 1})
        async with http.stream("GET", sse_url(address, "mining", token(1)),
                               headers={"Last-Event-ID": ack["id"]}) as resp:
            reader = SseReader(resp)
            missed = await reader.data()
            assert missed["data"]["data"]["i"] == 1 and missed["id"] == f"mining:2/0@{epoch}"
            ack = await reader.data()
            assert ack["data"]["type"] == "subscribed" and ack["data"]["recovered"] is True


@pytest.mark.parametrize("via_quart", [False, True])  # the direct endpoint, the Quart route
async def test_a_stream_ends_with_a_named_event_when_its_token_expires(tmp_path, token,
                                                                       via_quart):
    """Before: an SSE stream outlived its token for as long as the connection lasted."""
    settings = make_settings(f"sqlite:///{tmp_path}/pulse.db")
    async with serve_app(settings) as (address, app):
        svc = app.extensions["pulse"]
        url = sse_url(address, "mining", token(1, ttl_seconds=2))
        async with httpx.AsyncClient(timeout=5) as http:
            if via_quart:  # a request on a kept-alive connection is Quart's
                assert (await http.get(f"http://{address}/healthz")).status_code == 200
            async with http.stream("GET", url) as resp:
                reader = SseReader(resp)
                assert (await reader.data())["data"]["type"] == "subscribed"
                event = await reader.data(timeout=5)
                assert event["event"] == "token_expired"
                assert event["data"] == {"type": "error", "code": 4001,
                                         "message": "Token expired"}
                rest = [line async for line in reader.lines]   # and the stream ends
                assert not any(line.startswith("data:") for line in rest)
        for _ in range(100):
            if svc.hub.connection_count == 0:
                break
            await asyncio.sleep(0.02)
        assert svc.hub.connection_count == 0
