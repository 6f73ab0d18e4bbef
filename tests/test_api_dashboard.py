"""The dashboard REST API on both backends (SQLite + memory broker, PostgreSQL + Redis)."""
from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import httpx
import pytest
import websockets
from .conftest import API_KEY
from .dashboard_support import auth, ingest, recv_json, recv_until, svc_of

from quart_app.dashboard import stats as dashboard
from quart_app.dashboard.stats import cache_key
from quart_app.dashboard.db_values import db_date, utcnow

STATS_KEYS = ["hashrate", "hashrate_change", "shares_today", "shares_change", "workers_online",
              "workers_total", "streak", "best_diff_week", "network_diff", "best_diff_ratio",
              "level", "level_title", "xp", "xp_to_next", "badges_earned", "network_height"]


async def test_every_route_needs_a_jwt(client, token):
    for path in ("/dashboard/stats", "/dashboard/feed", "/dashboard/events",
                 "/dashboard/recent-badges", "/leaderboard/shares",
                 "/dashboard/feed?limit=999"):  # a bad query without a token is still a 401
        response = await client.get(path)
        assert response.status_code == 401, path
        assert "detail" in await response.get_json()
    response = await client.get("/dashboard/stats", headers=auth("not-a-jwt"))
    assert response.status_code == 401


async def test_stats_of_a_new_user_are_zero_in_the_seed_shape(client, token):
    response = await client.get("/dashboard/stats", headers=auth(token(77)))
    assert response.status_code == 200
    stats = await response.get_json()
    assert sorted(stats) == sorted(STATS_KEYS)
    assert stats == {"hashrate": 0.0, "hashrate_change": 0.0, "shares_today": 0,
                     "shares_change": 0.0, "workers_online": 0, "workers_total": 0, "streak": 0,
                     "best_diff_week": 0.0, "network_diff": 0.0, "best_diff_ratio": 0.0,
                     "level": 1, "level_title": "Nocoiner", "xp": 0, "xp_to_next": 100,
                     "badges_earned": 0, "network_height": 0}


async def test_stats_aggregate_every_source(app, client, token):
    now = utcnow()
    await ingest(app, "hashrate_update", 7, now=now - timedelta(hours=2), hashrate=125.0)
    await ingest(app, "hashrate_update", 7, worker="rig-1", hashrate=100.0)   # sample: 100
    await ingest(app, "hashrate_update", 7, worker="rig-2", hashrate=300.0)   # sample: 400
    await ingest(app, "worker_status", 7, worker="rig-3", status="offline")
    await ingest(app, "share_submitted", 7, worker="rig-1", shares=30, difficulty=500.0)
    await ingest(app, "share_submitted", 7, worker="rig-2", shares=10, difficulty=2000.0)
    await ingest(app, "share_submitted", 7, now=now - timedelta(days=1), shares=20)
    await ingest(app, "best_diff", 7, difficulty=1500.0)
    await ingest(app, "best_diff", 7, now=now - timedelta(days=3), difficulty=9000.0)
    await ingest(app, "best_diff", 7, now=now - timedelta(days=8), difficulty=99999.0)
    await ingest(app, "block_found", 8, height=800123, network_diff=1e6)
    await ingest(app, "xp_gained", 7, amount=350)
    await ingest(app, "streak_update", 7, streak=12)
    await ingest(app, "badge_earned", 7, badge_id="first-share")
    await ingest(app, "badge_earned", 7, badge_id="night-owl")
    await ingest(app, "badge_earned", 8, badge_id="block-finder")  # someone else's
    response = await client.get("/dashboard/stats", headers=auth(token(7)))
    assert await response.get_json() == {
        "hashrate": 250.0, "hashrate_change": 100.0,     # 5-min average vs the day before
        "shares_today": 40, "shares_change": 100.0,      # 40 today, 20 yesterday
        "workers_online": 2, "workers_total": 3, "streak": 12,
        "best_diff_week": 9000.0, "network_diff": 1e6, "best_diff_ratio": 0.009,
        "level": 3, "level_title": "Hash Pupil", "xp": 350, "xp_to_next": 700,
        "badges_earned": 2, "network_height": 800123}


async def test_stats_are_cached_and_invalidated_by_the_users_events(app, client, token):
    svc = svc_of(app)
    first = await (await client.get("/dashboard/stats", headers=auth(token(5)))).get_json()
    assert first["shares_today"] == 0
    assert (await svc.cache.get(cache_key(5)))["stats"] == first

    async def behind_the_cache(user_id: int, shares: int) -> None:
        await svc.db.execute("share_day_add", {"user_id": user_id, "shares": shares,
                                               "day": db_date(svc.db, utcnow().date()),
                                               "difficulty": 0.0})

    await ingest(app, "new_miner", 5)                 # the user row for the direct write
    await behind_the_cache(5, 100)
    cached = await (await client.get("/dashboard/stats", headers=auth(token(5)))).get_json()
    assert cached["shares_today"] == 0                # a hit: the write is not seen yet

    await ingest(app, "share_submitted", 6, shares=1)  # another user's event: still a hit
    again = await (await client.get("/dashboard/stats", headers=auth(token(5)))).get_json()
    assert again["shares_today"] == 0

    await ingest(app, "share_submitted", 5, shares=3)  # the user's event invalidates
    fresh = await (await client.get("/dashboard/stats", headers=auth(token(5)))).get_json()
    assert fresh["shares_today"] == 103


async def test_an_invalidation_during_a_computation_is_not_lost(app, monkeypatch):
    svc = svc_of(app)
    real = dashboard.compute_stats_many
    entered, gate = asyncio.Event(), asyncio.Event()

    async def slow(db, user_ids, now=None):
        stats = await real(db, user_ids, now)
        entered.set()
        await gate.wait()
        return stats

    monkeypatch.setattr(dashboard, "compute_stats_many", slow)
    reader = asyncio.get_running_loop().create_task(dashboard.get_stats(svc, 11))
    await asyncio.wait_for(entered.wait(), 5)
    monkeypatch.setattr(dashboard, "compute_stats_many", real)
    await ingest(app, "share_submitted", 11, shares=4)   # lands while the read computes
    gate.set()
    assert (await asyncio.wait_for(reader, 5))["shares_today"] == 0   # computed before it
    assert (await dashboard.get_stats(svc, 11))["shares_today"] == 4  # but never cached stale


async def _feed_items(app, count: int) -> list[int]:
    """Post ``count`` feed items; return their ids as pushed on ``activity:feed``, in order."""
    for n in range(count):
        await ingest(app, "feed_item", text=f"item {n}")
    got = await svc_of(app).broker.history("activity:feed", 0)
    return [p.data["id"] for p in got.publications]


async def test_feed_pages_newest_first_with_before_id(app, client, token):
    ids = await _feed_items(app, 25)
    assert ids == sorted(ids) and len(ids) == 25
    headers = auth(token(1))
    page = await (await client.get("/dashboard/feed", headers=headers)).get_json()
    assert [item["id"] for item in page] == ids[::-1][:20]
    assert set(page[0]) == {"id", "type", "text", "description", "time", "metadata"}
    assert page[0]["type"] == "announcement" and page[0]["text"] == "item 24"
    rest = await (await client.get(f"/dashboard/feed?before_id={page[-1]['id']}",
                                   headers=headers)).get_json()
    assert [item["id"] for item in rest] == ids[::-1][20:]
    empty = await client.get(f"/dashboard/feed?before_id={ids[0]}", headers=headers)
    assert await empty.get_json() == []
    two = await client.get(f"/dashboard/feed?limit=2&before_id={ids[10]}", headers=headers)
    assert [item["id"] for item in await two.get_json()] == [ids[9], ids[8]]
    blank = await client.get("/dashboard/feed?limit=50&before_id=", headers=headers)
    assert len(await blank.get_json()) == 25
    # As in seed 000 (`if before_id:`): 0 is no cursor, and below every id is an empty page.
    zero = await client.get("/dashboard/feed?limit=50&before_id=0", headers=headers)
    assert len(await zero.get_json()) == 25
    below = await client.get("/dashboard/feed?before_id=-5", headers=headers)
    assert below.status_code == 200 and await below.get_json() == []


@pytest.mark.parametrize("query, name", [
    ("limit=0", "limit"), ("limit=51", "limit"), ("limit=abc", "limit"), ("limit=-3", "limit"),
    ("before_id=x", "before_id"), ("before_id=99999999999999999999", "before_id"),
    ("limit=1.5", "limit"),
])
async def test_feed_rejects_bad_query_values(client, token, query, name):
    response = await client.get(f"/dashboard/feed?{query}", headers=auth(token(1)))
    assert response.status_code in (400, 422)
    assert name in (await response.get_json())["detail"]


async def test_feed_limit_bounds_are_inclusive(app, client, token):
    await _feed_items(app, 3)
    for limit, expected in ((1, 1), (50, 3)):
        response = await client.get(f"/dashboard/feed?limit={limit}", headers=auth(token(1)))
        assert response.status_code == 200 and len(await response.get_json()) == expected


async def test_events_are_global_or_the_callers_own_soonest_first(app, client, token):
    now = utcnow()

    async def event(event_id, hours, user=None, **extra):
        await ingest(app, "event_reminder", user, id=event_id, title=event_id,
                     ends_at=(now + timedelta(hours=hours)).isoformat(), **extra)

    await event("global-late", 30, action={"label": "Join", "href": "/join"})
    await event("global-soon", 1)
    await event("mine", 5, user=1, event_type="streak", description="keep going")
    await event("theirs", 2, user=2)
    await event("over", -1)
    got = await (await client.get("/dashboard/events", headers=auth(token(1)))).get_json()
    assert [e["id"] for e in got] == ["global-soon", "mine", "global-late"]
    assert got[1] == {"id": "mine", "type": "streak", "title": "mine",
                      "description": "keep going",
                      "ends_at": (now + timedelta(hours=5)).isoformat(timespec="seconds"),
                      "action": None}
    assert got[2]["action"] == {"label": "Join", "href": "/join"}
    theirs = await (await client.get("/dashboard/events", headers=auth(token(2)))).get_json()
    assert [e["id"] for e in theirs] == ["global-soon", "theirs", "global-late"]
    for n in range(12):
        await event(f"bulk-{n:02d}", 10 + n)
    assert len(await (await client.get("/dashboard/events",
                                       headers=auth(token(3)))).get_json()) == 10


async def test_recent_badges_are_the_callers_newest_first(app, client, token):
    now = utcnow()
    for days, badge in ((3, "first-share"), (1, "night-owl"), (2, "diff-hunter")):
        await ingest(app, "badge_earned", 1, badge_id=badge,
                     earned_at=(now - timedelta(days=days)).isoformat())
    await ingest(app, "badge_earned", 2, badge_id="block-finder", name="Block Finder!")
    mine = await (await client.get("/dashboard/recent-badges", headers=auth(token(1)))).get_json()
    assert [b["badge_id"] for b in mine] == ["night-owl", "diff-hunter", "first-share"]
    assert mine[0] == {"id": "night-owl", "badge_id": "night-owl", "name": "Night Owl",
                       "description": "Shares at 3 a.m.", "icon": "🦉", "rarity": "common",
                       "earned_at": (now - timedelta(days=1)).isoformat(timespec="seconds")}
    two = await client.get("/dashboard/recent-badges?limit=2", headers=auth(token(1)))
    assert [b["badge_id"] for b in await two.get_json()] == ["night-owl", "diff-hunter"]
    theirs = await (await client.get("/dashboard/recent-badges",
                                     headers=auth(token(2)))).get_json()
    assert [(b["badge_id"], b["name"]) for b in theirs] == [("block-finder", "Block Finder!")]
    nobody = await client.get("/dashboard/recent-badges", headers=auth(token(3)))
    assert await nobody.get_json() == []
    for bad in ("0", "21", "many"):
        response = await client.get(f"/dashboard/recent-badges?limit={bad}",
                                    headers=auth(token(1)))
        assert response.status_code == 422 and "limit" in (await response.get_json())["detail"]


async def test_leaderboard_ranks_and_rank_change(app, client, token):
    for user_id, score in ((1, 10.0), (2, 20.0), (3, 30.0)):
        await ingest(app, "leaderboard_update", user_id, category="shares", score=score,
                     display_name=f"player-{user_id}")
    await ingest(app, "leaderboard_update", 1, category="shares", score=25.0)
    board = await (await client.get("/leaderboard/shares", headers=auth(token(9)))).get_json()
    assert board == [
        {"rank": 1, "previous_rank": None, "rank_change": 0, "user_id": 3,  # entered at #1
         "display_name": "player-3", "score": 30.0},
        {"rank": 2, "previous_rank": 3, "rank_change": 1, "user_id": 1,
         "display_name": "player-1", "score": 25.0},
        {"rank": 3, "previous_rank": 2, "rank_change": -1, "user_id": 2,
         "display_name": "player-2", "score": 20.0},
    ]
    top = await client.get("/leaderboard/shares?limit=1", headers=auth(token(9)))
    assert [e["user_id"] for e in await top.get_json()] == [3]
    assert await (await client.get("/leaderboard/other", headers=auth(token(9)))).get_json() == []
    bad = await client.get("/leaderboard/bad%21name", headers=auth(token(9)))
    assert bad.status_code == 400 and "category" in (await bad.get_json())["detail"]
    for limit in ("0", "101", "x"):
        response = await client.get(f"/leaderboard/shares?limit={limit}", headers=auth(token(9)))
        assert response.status_code == 422


async def test_openapi_documents_the_dashboard(client):
    spec = await (await client.get("/openapi.json")).get_json()
    for path in ("/dashboard/stats", "/dashboard/feed", "/dashboard/events",
                 "/dashboard/recent-badges", "/leaderboard/{category}", "/api/events"):
        assert path in spec["paths"], path
    feed = spec["paths"]["/dashboard/feed"]["get"]
    assert {p["name"] for p in feed["parameters"]} >= {"limit", "before_id"}
    assert "202" in spec["paths"]["/api/events"]["post"]["responses"]


async def test_websocket_snapshot_then_live_feed_item(live_server, token):
    address, app = live_server
    await ingest(app, "share_submitted", 3, shares=11)
    async with websockets.connect(f"ws://{address}/ws?token={token(3)}") as ws:
        await ws.send(json.dumps({"action": "subscribe", "channel": "dashboard"}))
        ack = await recv_json(ws)
        assert ack["type"] == "subscribed" and ack["channel"] == "dashboard"
        snapshot = await recv_json(ws)
        assert snapshot["channel"] == "dashboard"
        assert snapshot["data"]["type"] == "stats_update" and snapshot["data"]["user_id"] == 3
        assert snapshot["data"]["shares_today"] == 11
        assert set(STATS_KEYS) <= set(snapshot["data"])

        async with httpx.AsyncClient(base_url=f"http://{address}", timeout=5) as http:
            response = await http.post("/api/events", headers={"X-API-Key": API_KEY},
                                       json={"type": "block_found", "user_id": 4,
                                             "data": {"height": 900001}})
            assert response.status_code == 202
            frame = await recv_until(ws, lambda f: f.get("data", {}).get("type") == "feed_item")
            assert frame["channel"] == "dashboard" and isinstance(frame["offset"], int)
            assert frame["data"]["feed_type"] == "block_found"
            assert frame["data"]["text"] == "Block #900,001 found by miner-4"
            feed = (await http.get("/dashboard/feed?limit=1",
                                   headers=auth(token(3)))).json()
            assert feed[0]["id"] == frame["data"]["id"]

            # The finder's own block_found is theirs alone (send-to-user); the feed is for all.
            await http.post("/api/events", headers={"X-API-Key": API_KEY},
                            json={"type": "share_submitted", "user_id": 3, "data": {}})
            mine = await recv_until(ws, lambda f: f.get("data", {}).get("type") == "stats_update")
            assert mine["data"]["user_id"] == 3 and mine["data"]["shares_today"] == 12
