"""Two applications that are not the built-in one, end to end, driven only by a namespaces file
and the public publishing paths (docs/namespaces.md's two worked examples):

* seed 003: project events for a project's members, signed in by the app's cookie; events
  published with ``POST /api/publish`` reach members over WebSocket, ``/sse`` and ``/history``,
  and a non-member is refused on each;
* seed 001: typing leaderboards for everyone and per-user progress for its owner only,
  published from the Python publisher (over HTTP and straight into Redis).
"""
from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import replace

import httpx
import pytest
import websockets

from quart_app.publisher import AsyncPublisher, RedisPublisher
from quart_app.realtime.auth import mint_token

from .conftest import API_KEY, SECRET, WsClient, make_settings, serve_app, ws_client
from .test_transport_sse import SseReader

SEED_003 = """
[namespaces.project]
pattern = "project:{project}:events"
subscribe = "member:project:projects"
history_size = 500
history_ttl_seconds = 3600
latest_value = { "agent_status" = ["agent_id"], "campaign_status" = ["campaign_id"] }
"""

SEED_001 = """
[namespaces.leaderboard]
pattern = "leaderboard:{category}"
latest_value = { "leaderboard.update" = ["category"] }

[namespaces.user]
pattern = "user:{id:int}:{kind:progress|achievements|rank-changes}"
subscribe = "owner:id"
history_size = 100
history_ttl_seconds = 600

[namespaces.keystrokes]
pattern = "keystrokes:{session}"
history_size = 0
"""


@pytest.fixture
def namespaces_file(tmp_path):
    def write(text: str) -> str:
        path = tmp_path / "namespaces.toml"
        path.write_text(text)
        return str(path)
    return write


@asynccontextmanager
async def cookie_ws(address: str, token: str):
    """A browser-style WebSocket: the app's ``access_token`` cookie, the page's own Origin."""
    async with websockets.connect(
            f"ws://{address}/ws", max_size=2**22,
            additional_headers={"Cookie": f"access_token={token}",
                                "Origin": f"http://{address}"}) as ws:
        yield WsClient(ws)


async def test_seed_003_project_events_reach_members_only(settings, namespaces_file):
    settings = replace(settings, namespaces_file=namespaces_file(SEED_003))
    member = mint_token(SECRET, 5, projects=["42", "43"])
    outsider = mint_token(SECRET, 6, projects=["43"])
    campaign = {"type": "campaign_status", "campaign_id": "c-9", "status": "started",
                "project_id": "42"}
    async with serve_app(settings) as (address, _app):
        base = f"http://{address}"
        cookies = {"Cookie": f"access_token={member}"}
        async with httpx.AsyncClient(base_url=base, timeout=5) as http, \
                cookie_ws(address, member) as ws, cookie_ws(address, outsider) as other:
            ack = await ws.subscribe("project:42:events")
            assert ack["type"] == "subscribed" and ack["offset"] == 0
            refused = await other.subscribe("project:42:events")
            assert refused["type"] == "error" and "Forbidden channel" in refused["message"]

            async with http.stream("GET", "/sse", params={"channels": "project:42:events"},
                                   headers=cookies) as stream:
                assert stream.status_code == 200
                sse = SseReader(stream)
                assert (await sse.data())["data"]["type"] == "subscribed"

                answer = await http.post("/api/publish", headers={"X-API-Key": API_KEY},
                                         json={"channel": "project:42:events", "data": campaign})
                assert answer.status_code == 202, answer.text
                assert answer.json()["offset"] == 1

                frame = await ws.recv()
                assert frame == {"channel": "project:42:events", "data": campaign, "offset": 1}
                event = await sse.data()
                assert event["data"] == frame and event["id"].startswith("project:42:events:1")
            assert await other.nothing(0.3)  # the refused client gets nothing

            history = await http.get("/history", params={"channel": "project:42:events",
                                                          "since": 0}, headers=cookies)
            assert history.status_code == 200
            assert [p["data"] for p in history.json()["publications"]] == [campaign]
            for path, params in (("/history", {"channel": "project:42:events"}),
                                 ("/sse", {"channels": "project:42:events"})):
                denied = await http.get(path, params=params,
                                        headers={"Cookie": f"access_token={outsider}"})
                assert denied.status_code == 403, (path, denied.text)
                assert "Forbidden channel" in denied.json()["detail"]
            # The namespace's own event types are not the built-in app's: the domain API still
            # refuses them, the generic one takes them.
            assert (await http.post("/api/events", headers={"X-API-Key": API_KEY},
                                    json=campaign)).status_code == 422


async def test_seed_001_leaderboards_for_all_progress_for_its_owner(
        tmp_path, redis_url, redis_prefix, namespaces_file):
    path = namespaces_file(SEED_001)
    settings = make_settings(f"sqlite:///{tmp_path}/pulse.db", redis_url, redis_prefix,
                             PULSE_NAMESPACES=path)
    rank = {"type": "leaderboard.update", "category": "typing_wpm", "rank": 5, "user_id": 123,
            "metric_value": 145.5}
    progress = [{"type": "progress.update", "app": "typing", "current_wpm": 120 + i}
                for i in range(3)]
    async with serve_app(settings) as (address, app):
        async with ws_client(address, mint_token(SECRET, 123)) as owner, \
                ws_client(address, mint_token(SECRET, 124)) as rival:
            for ws in (owner, rival):
                assert (await ws.subscribe("leaderboard:typing_wpm"))["type"] == "subscribed"
            assert (await owner.subscribe("user:123:progress"))["type"] == "subscribed"
            refused = await rival.subscribe("user:123:progress")
            assert refused["type"] == "error" and "Forbidden channel" in refused["message"]

            # The game's backend: the HTTP publisher, and the Redis one (no HTTP hop).
            async with AsyncPublisher(f"http://{address}", API_KEY) as http_publisher:
                answer = await http_publisher.publish("leaderboard:typing_wpm", rank)
            assert (answer["channel"], answer["offset"]) == ("leaderboard:typing_wpm", 1)
            async with RedisPublisher(redis_url, redis_prefix, namespaces_file=path) as direct:
                batch = await direct.batch([{"channel": "user:123:progress", "data": p}
                                            for p in progress])
                await direct.publish("keystrokes:s1", {"type": "key", "k": "a"})
            assert [r["published"] for r in batch["results"]] == \
                [[{"channel": "user:123:progress", "offset": i}] for i in (1, 2, 3)]

            for ws in (owner, rival):
                frame = await ws.recv()
                assert frame == {"channel": "leaderboard:typing_wpm", "data": rank, "offset": 1}
            got = [await owner.recv() for _ in progress]
            assert [(f["channel"], f["offset"], f["data"]) for f in got] == \
                [("user:123:progress", i + 1, p) for i, p in enumerate(progress)]
            assert await rival.nothing(0.3)

        # The owner comes back after missing two updates and recovers exactly those.
        async with ws_client(address, mint_token(SECRET, 123)) as owner:
            await owner.send({"action": "subscribe", "channel": "user:123:progress", "since": 1})
            replay = [await owner.recv() for _ in range(3)]
            assert [f.get("offset") for f in replay[:2]] == [2, 3]
            assert replay[2]["type"] == "subscribed" and replay[2]["recovered"] is True
        async with httpx.AsyncClient(base_url=f"http://{address}", timeout=5) as http:
            denied = await http.get("/history", params={
                "channel": "user:123:progress", "token": mint_token(SECRET, 124)})
            assert denied.status_code == 403
            mine = (await http.get("/history", params={
                "channel": "user:123:progress", "since": 0, "token": mint_token(SECRET, 123)}))
            assert [p["offset"] for p in mine.json()["publications"]] == [1, 2, 3]
            # The Redis publisher follows the file as a server would: no history on keystrokes.
            keys = (await http.get("/history", params={
                "channel": "keystrokes:s1", "since": 0, "token": mint_token(SECRET, 1)})).json()
            assert (keys["offset"], keys["publications"]) == (1, [])
            stored = await app.extensions["pulse"].broker.redis.xlen(
                f"{redis_prefix}history:keystrokes:s1")
            assert stored == 0
