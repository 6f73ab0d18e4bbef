"""The demo simulator: a full dashboard at once, alive every tick, all through ingest."""
from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import httpx

from quart_app import create_app
from quart_app.dashboard import demo, ingest as ingest_module
from quart_app.realtime.auth import mint_token
from quart_app.config import DEV_JWT_SECRET

from .conftest import free_port
from .dashboard_support import auth, eventually, svc_of

ROOT = Path(__file__).resolve().parent.parent


def _spy_on_ingest(monkeypatch) -> list[dict]:
    """Record every body the demo hands to ``ingest_event`` (it must use no other path)."""
    seen: list[dict] = []
    real = ingest_module.ingest_event

    async def spy(svc, body, now=None):
        seen.append(body)
        return await real(svc, body, now=now)

    monkeypatch.setattr(ingest_module, "ingest_event", spy)
    return seen


async def _json(client, path: str, user_id: int, token):
    return await (await client.get(path, headers=auth(token(user_id)))).get_json()


async def test_demo_fills_the_dashboard_at_once_through_ingest(settings, token, monkeypatch):
    seen = _spy_on_ingest(monkeypatch)
    app = create_app(settings)
    svc = svc_of(app)
    demo.install(app, svc, tick_seconds=0.1, seed=7)
    async with app.test_app():
        client = app.test_client()

        async def full() -> bool:
            for user_id in (1, 2, 3):
                stats = await _json(client, "/dashboard/stats", user_id, token)
                if not all(stats[key] for key in ("hashrate", "shares_today", "workers_online",
                                                  "streak", "xp", "badges_earned",
                                                  "network_height", "network_diff")):
                    return False
            board = await _json(client, "/leaderboard/hashrate?limit=100", 1, token)
            return len(board) >= 12

        await eventually(full, timeout=30.0, interval=0.2)
        feed = await _json(client, "/dashboard/feed?limit=50", 1, token)
        assert len(feed) >= 20
        assert {"new_miner", "block_found", "badge_earned"} <= {item["type"] for item in feed}
        events = [e["id"] for e in await _json(client, "/dashboard/events", 1, token)]
        assert {"demo-lottery", "demo-world-cup", "demo-streak-1"} <= set(events)
        assert "demo-streak-2" not in events
        assert await _json(client, "/dashboard/recent-badges", 1, token)
        board = await _json(client, "/leaderboard/shares?limit=3", 2, token)
        assert [entry["rank"] for entry in board] == [1, 2, 3]

        # Everything published came through ingest: each event type is one the demo sent.
        sent_types = {body["type"] for body in seen}
        assert {"new_miner", "share_submitted", "hashrate_update", "worker_status",
                "badge_earned", "xp_gained", "streak_update", "leaderboard_update",
                "block_found", "event_reminder", "match_update"} <= sent_types
        for channel, routed in (("mining", {"share_submitted", "hashrate_update",
                                            "worker_status", "best_diff"}),
                                ("gamification", {"badge_earned", "xp_gained", "level_up",
                                                  "streak_update"})):
            # Each miner's events are in that miner's own offset space (docs/protocol.md).
            users = {body.get("user_id") for body in seen if body["type"] in routed} - {None}
            assert users
            for user in users:
                history = await svc.broker.history(channel, 0, user=user)
                assert history.complete
                assert {p.data["type"] for p in history.publications} <= routed

        # Alive: the pool keeps moving every tick.
        miners = {body.get("user_id") for body in seen if body["type"] == "share_submitted"}

        async def mining_total() -> int:
            return sum([(await svc.broker.latest("mining", user=u))[0] for u in miners - {None}])

        mark, count = await mining_total(), len(seen)

        async def moved() -> bool:
            return await mining_total() >= mark + 10 and len(seen) > count

        await eventually(moved, timeout=5.0)
    demo_tasks = [t for t in asyncio.all_tasks() if t.get_name() == "demo"]
    assert all(t.done() for t in demo_tasks)


async def test_serve_demo_command(backend):
    """``python -m quart_app serve --demo``: the page's users see a live dashboard."""
    port = free_port()
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("PULSE_", "REDIS_", "DATABASE_", "APP_ENV", "JWT_"))}
    env.update(DATABASE_URL=backend["database_url"], PULSE_UVLOOP="0")
    if backend["redis_url"]:
        env.update(REDIS_URL=backend["redis_url"], PULSE_REDIS_PREFIX=backend["prefix"])
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "quart_app", "serve", "--demo", "--port", str(port), cwd=ROOT,
        env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    headers = {"Authorization": f"Bearer {mint_token(DEV_JWT_SECRET, 1)}"}
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            async def stats():
                try:
                    response = await http.get("/dashboard/stats", headers=headers)
                except httpx.HTTPError:
                    return None
                body = response.json() if response.status_code == 200 else {}
                return body if body.get("shares_today") and body.get("hashrate") else None

            first = await eventually(stats, timeout=30.0, interval=0.25)
            await eventually(lambda: _changed(stats, first), timeout=10.0, interval=0.25)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 20)
            except asyncio.TimeoutError:
                process.kill()
                await process.wait()
    assert process.returncode == 0


async def _changed(stats, first: dict) -> bool:
    now = await stats()
    return now is not None and now != first


def test_deadlines_are_renewed_only_once_they_pass():
    import random
    from datetime import timedelta

    from quart_app.dashboard.db_values import utcnow

    pool = demo.Pool(random.Random(1))
    now = utcnow()
    first = {body["data"]["id"] for body in pool.upcoming(now)}
    assert {"demo-flash", "demo-lottery", "demo-streak-1", "demo-streak-3"} <= first
    assert pool.upcoming(now + timedelta(minutes=5), renew_only=True) == []
    [renewed] = pool.upcoming(now + timedelta(minutes=11), renew_only=True)
    assert renewed["data"]["id"] == "demo-flash"
    assert renewed["data"]["ends_at"] == (now + timedelta(minutes=21)).isoformat()
    assert not [b for b in pool.tick(now, 5) if b["type"] == "event_reminder"]  # none due
    targeted = [b for b in pool.upcoming(now) if "user_id" in b]
    assert {b["user_id"] for b in targeted} == {1, 2, 3}
