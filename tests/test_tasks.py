"""Background jobs: the feed pruner (and ``python -m quart_app prune``), the stats aggregator."""
from __future__ import annotations

import asyncio
import os
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from quart_app.dashboard import stats as dashboard, tasks
from quart_app.realtime.auth import Principal
from quart_app.dashboard.db_values import db_date, db_time, utcnow
from quart_app.realtime.hub import Connection
from quart_app.realtime.outbox import Outbox

from .conftest import running_app, with_env
from .dashboard_support import auth, eventually, ingest, of_type, row_counts, svc_of

ROOT = Path(__file__).resolve().parent.parent


async def _feed(app, count: int) -> None:
    for n in range(count):
        await ingest(app, "feed_item", text=f"item {n}")


async def _feed_ids(client, token) -> list[int]:
    feed = await (await client.get("/dashboard/feed?limit=50", headers=auth(token(1)))).get_json()
    return [item["id"] for item in feed]


async def test_prune_feed_keeps_the_newest(app, client, token):
    await _feed(app, 30)
    ids = await _feed_ids(client, token)
    assert len(ids) == 30
    assert await tasks.prune_feed(svc_of(app).db, 10) == 20
    assert await _feed_ids(client, token) == ids[:10]
    assert await tasks.prune_feed(svc_of(app).db, 10) == 0
    assert await tasks.prune_feed(svc_of(app).db, 100) == 0
    assert await tasks.prune_feed(svc_of(app).db, 0) == 10
    assert await _feed_ids(client, token) == []


async def test_prune_once_uses_feed_keep_and_drops_old_samples_and_events(settings, token):
    async with running_app(with_env(settings, feed_keep=3)) as app:
        now = utcnow()
        await _feed(app, 5)
        await ingest(app, "hashrate_update", 1, now=now - timedelta(hours=30), hashrate=1.0)
        await ingest(app, "hashrate_update", 1, now=now - timedelta(hours=2), hashrate=2.0)
        await ingest(app, "event_reminder", None, now=now - timedelta(days=3), id="old",
                     title="Over long ago", ends_at=(now - timedelta(days=2)).isoformat())
        await ingest(app, "event_reminder", None, id="new", title="Soon",
                     ends_at=(now + timedelta(hours=1)).isoformat())
        before = await row_counts(app)
        assert await tasks.prune_once(svc_of(app)) == 2
        after = await row_counts(app)
        assert after["activity_feed"] == 3 == before["activity_feed"] - 2
        assert after["hashrate_samples"] == before["hashrate_samples"] - 1
        assert after["upcoming_events"] == before["upcoming_events"] - 1


async def test_prune_command_line(app, backend):
    await _feed(app, 8)
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("PULSE_", "REDIS_", "DATABASE_", "APP_ENV"))}
    env.update(DATABASE_URL=backend["database_url"], PULSE_FEED_KEEP="5")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "quart_app", "prune", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode()
    assert "pruned 3 feed items (keeping the newest 5)" in out.decode()


def _dashboard_viewer(svc, user_id: int) -> Connection:
    conn = Connection(Principal(user_id=user_id, expires_at=4e9), Outbox(100, lambda: None),
                      "test")
    svc.hub.connect(conn)
    return conn


async def test_aggregator_publishes_stats_that_changed(app):
    svc = svc_of(app)
    viewer = _dashboard_viewer(svc, 3)
    await svc.hub.subscribe(viewer, "dashboard")
    elsewhere = _dashboard_viewer(svc, 4)          # connected, but not watching the dashboard
    await svc.hub.subscribe(elsewhere, "mining")
    await ingest(app, "new_miner", 3)

    assert await tasks.aggregate_once(svc) == 1    # first look: the stats are news
    [pushed] = await of_type(app, "dashboard", "stats_update")
    assert pushed["user_id"] == 3 and pushed["shares_today"] == 0
    assert await tasks.aggregate_once(svc) == 0    # nothing changed: nothing published
    assert len(await of_type(app, "dashboard", "stats_update")) == 1

    await svc.db.execute("share_day_add", {"user_id": 3, "shares": 7, "difficulty": 0.0,
                                           "day": db_date(svc.db, utcnow().date())})
    # A change made behind ingest's back: user 3 is quiet (no hashrate samples), computed
    # today with today's network figures, so the aggregator does not look...
    assert await tasks.aggregate_once(svc) == 0
    # ...until the basis is an hour old (or the day rolls over, or the network moves).
    pusher = svc.stats_pusher
    basis = pusher._basis[3]
    assert basis.quiet
    pusher._basis[3] = basis._replace(at=basis.at - dashboard.QUIET_MAX_AGE_SECONDS - 1)
    assert await tasks.aggregate_once(svc) == 1

    async def two_pushes():
        pushes = await of_type(app, "dashboard", "stats_update")
        return pushes if len(pushes) == 2 else None

    pushes = await eventually(two_pushes, 3.0)     # ...sent at most a second after the last
    assert [p["shares_today"] for p in pushes] == [0, 7]
    assert {p["user_id"] for p in pushes} == {3}

    svc.hub.disconnect(viewer)
    assert await tasks.aggregate_once(svc) == 0


async def test_aggregator_job_loops_survives_a_failure_and_stops(app, monkeypatch):
    svc = svc_of(app)
    viewer = _dashboard_viewer(svc, 5)
    await svc.hub.subscribe(viewer, "dashboard")
    calls = []
    real = tasks.aggregate_once

    async def flaky(svc):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("database hiccup")
        return await real(svc)

    monkeypatch.setattr(tasks, "aggregate_once", flaky)
    job = asyncio.get_running_loop().create_task(tasks.stats_aggregator(svc, interval=0.05))
    try:
        pushes = await eventually(lambda: of_type(app, "dashboard", "stats_update"), 5.0)
        assert pushes[0]["user_id"] == 5 and len(calls) >= 2
    finally:
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(job, 5)


async def test_background_jobs_run_with_the_app_and_stop_with_it(settings):
    names = {"stats_aggregator", "stats_flusher", "pruner"}
    async with running_app(settings) as app:
        assert {job.__name__ for job in svc_of(app).background} >= names
        running = [t for t in asyncio.all_tasks() if t.get_name() in names]
        assert {t.get_name() for t in running} == names
        assert not any(t.done() for t in running)
    assert all(t.done() for t in running)


async def test_aggregator_works_through_subscribers_in_bounded_batches(monkeypatch):
    from types import SimpleNamespace

    seen: list[int] = []

    class Pusher:
        async def refresh(self, user_id):
            seen.append(user_id)
            return 0

        def drifting(self, users, today, network):
            return set(users)

        def forget_except(self, users):
            pass

    conns = [SimpleNamespace(user_id=u, subs={"dashboard": None}) for u in (5, 1, 3)]
    conns.append(SimpleNamespace(user_id=9, subs={"mining": None}))  # not on dashboard
    svc = SimpleNamespace(hub=SimpleNamespace(
        subscribers=lambda channel: [c for c in conns if channel in c.subs]), db=None)

    async def network(db):
        return (0.0, 0)

    monkeypatch.setattr(tasks, "stats_pusher", lambda _svc: Pusher())
    monkeypatch.setattr(tasks, "network_marker", network)
    for _ in range(3):
        await tasks.aggregate_once(svc, limit=2)
    assert seen == [1, 3, 5, 1, 3, 5]


async def test_aggregator_skips_quiet_users_until_the_network_or_the_clock_moves(app):
    """10,000 idle dashboards must not cost a query each per cycle: only users whose stats can
    drift without an event are refreshed (bench/RESULTS.md: idle CPU)."""
    svc = svc_of(app)
    quiet, busy = _dashboard_viewer(svc, 21), _dashboard_viewer(svc, 22)
    for conn in (quiet, busy):
        await svc.hub.subscribe(conn, "dashboard")
    await ingest(app, "new_miner", 21)
    await ingest(app, "new_miner", 22)
    await svc.db.execute("hashrate_sample_insert", {
        "user_id": 22, "hashrate": 5e12,
        "now": db_time(svc.db, utcnow() - timedelta(minutes=2))})
    refreshed: list[int] = []
    real = svc.stats_pusher.refresh

    async def spy(user_id):
        refreshed.append(user_id)
        return await real(user_id)

    svc.stats_pusher.refresh = spy
    await tasks.aggregate_once(svc)
    assert sorted(refreshed) == [21, 22]           # first look at both
    refreshed.clear()
    await tasks.aggregate_once(svc)
    assert refreshed == [22]                       # 22's hashrate window moves with the clock
    refreshed.clear()
    await svc.db.execute("network_set", {"key": "height", "value": 900_001})
    assert await tasks.aggregate_once(svc) == 2    # the network moved: everyone's stats changed
    assert sorted(refreshed) == [21, 22]

    async def new_height_pushed():
        pushes = await of_type(app, "dashboard", "stats_update")
        return [p for p in pushes if p["user_id"] == 21 and p["network_height"] == 900_001]

    assert await eventually(new_height_pushed, 3.0)   # within a second of the previous push


def test_drifting_finds_the_same_users_as_may_drift_one_by_one():
    """The aggregator's set-at-a-time question gives what asking user by user gives: new
    users, busy ones, ones computed under another day or network, and stale quiet ones."""
    from datetime import date

    from quart_app.dashboard.stats import StatsPusher

    def stats(hashrate: float, height: int) -> dict:
        return {"hashrate": hashrate, "hashrate_change": 0.0, "network_diff": 1e6,
                "network_height": height}

    pusher = StatsPusher(svc=None)
    for user in range(1, 41):
        pusher.note(user, stats(0.0 if user % 3 else 5e12, 100 if user % 5 else 99))
    pusher.note(7, stats(1.0, 100))   # noted again: now busy
    pusher.note(9, stats(0.0, 100))   # and settled again
    aged = pusher._basis[11]
    pusher._basis[11] = aged._replace(at=aged.at - dashboard.QUIET_MAX_AGE_SECONDS - 1)
    users = set(range(1, 51))         # 41..50 were never computed
    today = pusher._basis[1].day
    for day, network in ((today, (1e6, 100)), (today, (1e6, 99)), (date(2000, 1, 1), (1e6, 100))):
        expected = {u for u in users if pusher.may_drift(u, day, network)}
        assert pusher.drifting(users, day, network) == expected
    pusher.forget_except(set(range(1, 21)))
    assert set(pusher._basis) == set(range(1, 21))
    assert all(u <= 20 for members in pusher._settled.values() for u in members)
    assert pusher.drifting(users, today, (1e6, 100)) == {
        u for u in users if pusher.may_drift(u, today, (1e6, 100))}


async def test_dashboard_users_are_walked_again_only_after_a_subscription_changed(app):
    svc = svc_of(app)
    first = _dashboard_viewer(svc, 31)
    await svc.hub.subscribe(first, "dashboard")
    users = tasks._dashboard_users(svc)
    assert users == {31}
    assert tasks._dashboard_users(svc) is users          # nothing changed: the same set
    second = _dashboard_viewer(svc, 32)
    await svc.hub.subscribe(second, "dashboard")
    assert tasks._dashboard_users(svc) == {31, 32}
    svc.hub.unsubscribe(first, "dashboard")
    assert tasks._dashboard_users(svc) == {32}
    svc.hub.disconnect(second)
    assert tasks._dashboard_users(svc) == set()
