"""POST /api/events and ingest_event(): validation, routing, persistence, derived publications."""
from __future__ import annotations

import asyncio
import time

import pytest

from quart_app.errors import Unprocessable
from quart_app.dashboard.events import ROUTES
from quart_app.dashboard.ingest import IngestResult, ingest_event

from .dashboard_support import (auth, eventually, history, ingest, latest, of_type, offsets,
                                post_event,
                                row_counts, svc_of)

# A minimal valid body of every type, with the channel the routing table sends it to.
MINIMAL = {
    "share_submitted": (3, {"worker": "rig-1", "shares": 2, "difficulty": 5.0}),
    "worker_status": (3, {"worker": "rig-1", "status": "online"}),
    "hashrate_update": (3, {"hashrate": 1.5e12}),
    "best_diff": (3, {"difficulty": 42.0}),
    "stats_update": (3, {"note": "from a producer"}),
    "feed_item": (None, {"text": "Pool news"}),
    "event_reminder": (None, {"title": "Draw", "ends_at": "2099-01-01T00:00:00+00:00"}),
    "block_found": (3, {"height": 5}),
    "new_miner": (3, {}),
    "badge_earned": (3, {"badge_id": "first-share"}),
    "xp_gained": (3, {"amount": 5}),
    "level_up": (3, {"level": 2}),
    "streak_update": (3, {"streak": 1}),
    "leaderboard_update": (3, {"category": "shares", "score": 1.0}),
    "match_update": (None, {"match_id": "m1"}),
    "league_update": (None, {"league": "L1"}),
}


def _body(kind: str) -> dict:
    user_id, data = MINIMAL[kind]
    body = {"type": kind, "data": dict(data)}
    if user_id is not None:
        body["user_id"] = user_id
    return body


async def test_every_type_is_routed_by_the_table(app, client):
    assert set(MINIMAL) == set(ROUTES)
    for kind, channel in ROUTES.items():
        user = MINIMAL[kind][0]
        before = await latest(app, channel, user)     # the user's own space where targeted
        response = await post_event(client, _body(kind))
        assert response.status_code == 202, (kind, await response.get_json())
        answer = await response.get_json()
        assert answer["channel"] == channel and answer["offset"] == before + 1
        assert answer["published"][0] == {"channel": channel, "offset": before + 1}
        for ref in answer["published"]:
            assert max(await latest(app, ref["channel"]),
                       await latest(app, ref["channel"], user)) >= ref["offset"]


async def test_published_data_is_the_type_the_data_and_the_user(app, client):
    response = await post_event(client, _body("share_submitted"))
    offset = (await response.get_json())["offset"]
    published = (await history(app, "mining"))[offset - 1]
    assert published == {"type": "share_submitted", "worker": "rig-1", "shares": 2,
                         "difficulty": 5.0, "user_id": 3}
    response = await post_event(client, {"type": "match_update", "data": {"match_id": "m9"}})
    offset = (await response.get_json())["offset"]
    assert (await history(app, "competition"))[offset - 1] == {"type": "match_update",
                                                              "match_id": "m9"}


async def test_channel_or_project_id_names_the_channel(app, client):
    answer = await (await post_event(client, {"type": "stats_update", "channel": "session:s1:live",
                                              "data": {"wpm": 90}})).get_json()
    assert answer["channel"] == "session:s1:live"
    assert await history(app, "session:s1:live") == [{"type": "stats_update", "wpm": 90}]
    answer = await (await post_event(client, {"type": "match_update", "project_id": "p1",
                                              "data": {"x": 1}})).get_json()
    assert answer["channel"] == "project:p1:events"
    assert await history(app, "project:p1:events") == [{"type": "match_update", "x": 1}]


@pytest.mark.parametrize("scope", [{"project_id": "secret"}, {"channel": "user:1:progress"}])
@pytest.mark.parametrize("kind, data", [("block_found", {"height": 7, "reward": 3.125}),
                                        ("feed_item", {"text": "Internal note"}),
                                        ("badge_earned", {"badge_id": "first-share"})])
async def test_feed_items_of_a_restricted_channel_stay_on_it(app, client, token, scope, kind,
                                                             data):
    """A project's (or a user's) event is news for its members only: its feed item goes on that
    channel, not on dashboard or activity:feed, and not into the global REST feed."""
    channel = scope.get("channel") or f"project:{scope['project_id']}:events"
    response = await post_event(client, {"type": kind, "user_id": 1, "data": data, **scope})
    assert response.status_code == 202
    answer = await response.get_json()
    assert answer["channel"] == channel
    assert {p["channel"] for p in answer["published"]} & {"dashboard", "activity:feed"} == set()
    assert await of_type(app, "dashboard", "feed_item") == []   # (user 1's own stats_update: yes)
    assert await history(app, "activity:feed") == []
    pushed = [d for d in await history(app, channel) if d["type"] == "feed_item"]
    assert [item["text"] for item in pushed] == [
        {"block_found": "Block #7 found by miner-1", "feed_item": "Internal note",
         "badge_earned": "miner-1 earned the First Share badge"}[kind]]
    feed = await (await client.get("/dashboard/feed", headers=auth(token(2)))).get_json()
    assert feed == []
    # The same event without a scope is everyone's news.
    await post_event(client, {"type": kind, "user_id": 2, "data": data})
    feed = await (await client.get("/dashboard/feed", headers=auth(token(2)))).get_json()
    assert len(feed) == 1 and "miner-1" not in feed[0]["text"]


BAD_BODIES = [
    ({"type": "nope", "data": {}}, "Unknown event type"),
    ({"data": {}}, "Unknown event type"),
    ([{"type": "stats_update", "data": {}}], "JSON object"),
    ({"type": "stats_update"}, "'data'"),
    ({"type": "stats_update", "data": [1]}, "'data'"),
    ({"type": "share_submitted", "data": {}}, "'user_id' is required"),
    ({"type": "share_submitted", "user_id": "3", "data": {}}, "user_id"),
    ({"type": "share_submitted", "user_id": True, "data": {}}, "user_id"),
    ({"type": "share_submitted", "user_id": 0, "data": {}}, "user_id"),
    ({"type": "hashrate_update", "user_id": 1, "data": {"hashrate": -1}}, "data.hashrate"),
    ({"type": "hashrate_update", "user_id": 1, "data": {"hashrate": "fast"}}, "data.hashrate"),
    ({"type": "worker_status", "user_id": 1, "data": {"worker": "w", "status": "asleep"}},
     "data.status"),
    ({"type": "leaderboard_update", "user_id": 1, "data": {"score": 3}}, "data.category"),
    ({"type": "badge_earned", "user_id": 1, "data": {"badge_id": "no spaces"}},
     "data.badge_id"),
    ({"type": "event_reminder", "data": {"title": "x", "ends_at": "soon"}}, "data.ends_at"),
    ({"type": "stats_update", "user_id": 1, "data": {"hashrate": "fast"}}, "data.hashrate"),
    ({"type": "stats_update", "user_id": 1, "data": {"shares_today": -5}}, "data.shares_today"),
    ({"type": "stats_update", "data": {"level": 0}}, "data.level"),
    ({"type": "feed_item", "data": {"text": ""}}, "data.text"),
    ({"type": "stats_update", "data": {}, "extra": 1}, "Unknown field"),
    ({"type": "stats_update", "data": {"type": "other"}}, "reserved"),
    ({"type": "stats_update", "user_id": 1, "data": {"user_id": 2}}, "disagrees"),
    ({"type": "stats_update", "channel": "nope", "data": {}}, "Invalid channel"),
    ({"type": "stats_update", "project_id": "a b", "data": {}}, "project_id"),
    ({"type": "stats_update", "project_id": "p1", "channel": "mining", "data": {}}, "not both"),
    ('{"type": "stats_update", "data": {"x": NaN}}', "NaN"),
    ("{not json", "JSON"),
    ('{"type": "stats_update", "data": {"x": ' + "[" * 30000 + "]" * 30000 + "}}", "JSON"),
]


@pytest.mark.parametrize("body, reason", BAD_BODIES)
async def test_bad_bodies_are_422_and_change_nothing(app, client, body, reason):
    await ingest(app, "new_miner", 1)          # something already there, to compare with
    before_offsets, before_rows = await offsets(app), await row_counts(app)
    response = await post_event(client, body)
    assert response.status_code == 422
    assert reason in (await response.get_json())["detail"]
    assert await offsets(app) == before_offsets
    assert await row_counts(app) == before_rows


async def test_an_oversized_body_is_413_and_changes_nothing(app, client):
    before_offsets = await offsets(app)
    body = {"type": "stats_update", "user_id": 1, "data": {"blob": "x" * 70_000}}
    response = await post_event(client, body)
    assert response.status_code == 413 and "too large" in (await response.get_json())["detail"]
    assert await offsets(app) == before_offsets


async def test_the_python_api_validates_the_same_way(app):
    before_offsets, before_rows = await offsets(app), await row_counts(app)
    with pytest.raises(Unprocessable, match="data.amount"):
        await ingest_event(svc_of(app), {"type": "xp_gained", "user_id": 1,
                                         "data": {"amount": 0}})
    assert await offsets(app) == before_offsets and await row_counts(app) == before_rows
    result = await ingest_event(svc_of(app), _body("xp_gained"))
    assert isinstance(result, IngestResult) and result.channel == "gamification"
    assert result.offset == await latest(app, "gamification", MINIMAL["xp_gained"][0])


@pytest.mark.parametrize("key", [None, "", "wrong-key"])
async def test_api_key_is_required_before_anything_else(app, client, key):
    before_offsets, before_rows = await offsets(app), await row_counts(app)
    for body in (_body("share_submitted"), {"type": "bad"}):
        response = await post_event(client, body, key=key)
        assert response.status_code == 401
        assert "X-API-Key" in (await response.get_json())["detail"]
    assert await offsets(app) == before_offsets and await row_counts(app) == before_rows


async def test_users_are_created_on_first_sight(app, client, token):
    await ingest(app, "leaderboard_update", 4242, category="shares", score=1.0)
    await ingest(app, "leaderboard_update", 77, category="shares", score=2.0,
                 display_name="alice")
    board = await (await client.get("/leaderboard/shares", headers=auth(token(1)))).get_json()
    assert {e["user_id"]: e["display_name"] for e in board} == {4242: "miner-4242",
                                                                 77: "alice"}
    await ingest(app, "share_submitted", 4242, display_name="bob")   # a rename
    await ingest(app, "share_submitted", 77)                         # no rename
    board = await (await client.get("/leaderboard/shares", headers=auth(token(1)))).get_json()
    assert {e["user_id"]: e["display_name"] for e in board} == {4242: "bob", 77: "alice"}


FEED_WORTHY = [
    ("block_found", 5, {"height": 1000}, "block_found", "Block #1,000 found by miner-5"),
    ("badge_earned", 5, {"badge_id": "night-owl"}, "badge_earned",
     "miner-5 earned the Night Owl badge"),
    ("new_miner", 5, {"display_name": "zed"}, "new_miner", "zed joined the pool"),
    ("level_up", 5, {"level": 4}, "level_up", "miner-5 reached level 4 (Block Watcher)"),
    ("match_update", None, {"match_id": "m2", "result": "A beat B"}, "competition",
     "Match m2: A beat B"),
    ("league_update", None, {"text": "Week 3 standings"}, "competition", "Week 3 standings"),
    ("feed_item", 5, {"text": "Hi", "feed_type": "worldcup"}, "worldcup", "Hi"),
]


@pytest.mark.parametrize("kind, user_id, data, feed_type, text", FEED_WORTHY)
async def test_feed_worthy_events_are_stored_and_pushed(app, client, token, kind, user_id, data,
                                                        feed_type, text):
    await ingest(app, kind, user_id, **data)
    feed = await (await client.get("/dashboard/feed", headers=auth(token(1)))).get_json()
    assert [(item["type"], item["text"]) for item in feed] == [(feed_type, text)]
    for channel in ("dashboard", "activity:feed"):
        [pushed] = await of_type(app, channel, "feed_item")
        assert pushed == {"type": "feed_item", "id": feed[0]["id"], "feed_type": feed_type,
                          "text": text, "description": feed[0]["description"],
                          "time": feed[0]["time"], "metadata": feed[0]["metadata"]}
        assert "user_id" not in pushed   # a feed item is for everyone, not sent-to-user


async def test_not_feed_worthy_events_stay_out_of_the_feed(app, client, token):
    await ingest(app, "match_update", None, match_id="m3", score_home=1)   # no result yet
    await ingest(app, "share_submitted", 5)
    await ingest(app, "badge_earned", 5, badge_id="night-owl")
    await ingest(app, "badge_earned", 5, badge_id="night-owl")           # already had it
    feed = await (await client.get("/dashboard/feed", headers=auth(token(1)))).get_json()
    assert [item["type"] for item in feed] == ["badge_earned"]


async def test_rank_changes_and_rank_milestones(app, client, token):
    for user_id in range(1, 13):   # user n scores 10n: user 1 is 12th
        await ingest(app, "leaderboard_update", user_id, category="shares", score=10.0 * user_id)
    assert await of_type(app, "user:1:achievements", "achievement_unlocked") == []
    channels = ("competition", "leaderboard:shares", "user:1:rank-changes",
                "user:2:rank-changes")
    start = await offsets(app, channels)

    await ingest(app, "leaderboard_update", 1, category="shares", score=115.0)   # 12th -> 2nd
    mine = await of_type(app, "user:1:rank-changes", "rank_changed",
                         start["user:1:rank-changes"])
    assert [(c["rank"], c["previous_rank"], c["rank_change"]) for c in mine] == [(2, 12, 10)]
    [milestone] = [a for a in await of_type(app, "user:1:achievements", "achievement_unlocked")
                   if a["achievement"].startswith("rank-")]   # (115 points: also score-100)
    assert milestone["achievement"] == "rank-top-5:shares" and milestone["rank"] == 2
    assert milestone in await of_type(app, "activity:achievements", "achievement_unlocked")
    theirs = await of_type(app, "user:2:rank-changes", "rank_changed",
                           start["user:2:rank-changes"])
    assert [(c["rank"], c["previous_rank"], c["rank_change"]) for c in theirs] == [(12, 11, -1)]
    board = await of_type(app, "leaderboard:shares", "leaderboard_update",
                          start["leaderboard:shares"])
    moved = {u["user_id"]: (u["rank"], u["previous_rank"]) for u in board}
    assert moved == {1: (2, 12), **{n: (14 - n, 13 - n) for n in range(2, 12)}}
    competition = await of_type(app, "competition", "leaderboard_update", start["competition"])
    assert len(competition) == 11       # the mover (the event itself) and the 10 it passed
    assert (competition[0]["user_id"], competition[0]["rank"],
            competition[0]["rank_change"]) == (1, 2, 10)
    # Seed 001's names ride along: username and metric_value.
    assert (mine[0]["username"], mine[0]["metric_value"]) == ("miner-1", 115.0)
    assert board[0]["username"] == board[0]["display_name"]

    await ingest(app, "leaderboard_update", 1, category="shares", score=500.0)   # -> #1
    achievements = await of_type(app, "user:1:achievements", "achievement_unlocked")
    assert [a["achievement"] for a in achievements] == [
        "rank-top-5:shares", "score-100:shares", "rank-1:shares", "score-500:shares"]
    top = await (await client.get("/leaderboard/shares?limit=3", headers=auth(token(9)))).get_json()
    assert [(e["user_id"], e["rank"], e["previous_rank"], e["rank_change"]) for e in top] == [
        (1, 1, 2, 1), (12, 2, 1, -1), (11, 3, 2, -1)]


async def test_any_event_with_a_category_and_score_moves_the_board(app, client, token):
    await ingest(app, "match_update", 8, match_id="m1", result="won", category="matches",
                 score=3.0)
    board = await (await client.get("/leaderboard/matches", headers=auth(token(1)))).get_json()
    assert [(e["user_id"], e["score"], e["rank"]) for e in board] == [(8, 3.0, 1)]
    updates = await of_type(app, "competition", "leaderboard_update")
    assert [(u["user_id"], u["category"], u["rank"]) for u in updates] == [(8, "matches", 1)]


async def test_streak_milestones_fire_when_crossed(app):
    for streak in (6, 7, 8, 35, 100, 100):
        await ingest(app, "streak_update", 2, streak=streak)
    got = await of_type(app, "user:2:achievements", "achievement_unlocked")
    assert [(a["achievement"], a["streak"]) for a in got] == [
        ("streak-7", 7), ("streak-30", 35), ("streak-100", 100)]
    assert [a["title"] for a in got] == ["Week Warrior", "Monthly Miner", "Centurion"]


async def test_xp_levels_up_with_level_up_feed_and_achievement(app, client, token):
    await ingest(app, "xp_gained", 6, amount=90)
    assert await of_type(app, "gamification", "level_up") == []
    await ingest(app, "xp_gained", 6, amount=20)
    [level_up] = await of_type(app, "gamification", "level_up")
    assert level_up == {"type": "level_up", "user_id": 6, "level": 2,
                        "level_title": "Curious Cat", "xp": 110}
    [achieved] = await of_type(app, "user:6:achievements", "achievement_unlocked")
    assert achieved["achievement"] == "level-2"
    feed = await (await client.get("/dashboard/feed", headers=auth(token(1)))).get_json()
    assert feed[0]["text"] == "miner-6 reached level 2 (Curious Cat)"
    stats = await (await client.get("/dashboard/stats", headers=auth(token(6)))).get_json()
    assert (stats["level"], stats["xp"], stats["xp_to_next"]) == (2, 110, 300)


async def test_stats_update_goes_to_the_user_at_most_once_a_second(app):
    started = time.monotonic()
    for _ in range(3):
        await ingest(app, "share_submitted", 9, shares=2)
    quick = time.monotonic() - started < 0.9   # all three inside one second (the usual case)
    first = await of_type(app, "dashboard", "stats_update")
    assert first[0]["user_id"] == 9 and first[0]["shares_today"] == 2
    if quick:
        assert len(first) == 1                 # the other two are held back...

    async def final():
        pushes = await of_type(app, "dashboard", "stats_update")
        return pushes if pushes[-1]["shares_today"] == 6 else None

    pushes = await eventually(final, timeout=3.0)   # ...and the last state follows
    if quick:
        assert len(pushes) == 2
    await asyncio.sleep(1.2)
    assert len(await of_type(app, "dashboard", "stats_update")) == len(pushes)


async def test_event_reminder_is_stored_and_targeted(app, client, token):
    await ingest(app, "event_reminder", 4, id="just-4", title="Yours",
                 ends_at="2099-01-01T00:00:00Z")
    [published] = await of_type(app, "dashboard", "event_reminder")
    assert published["user_id"] == 4 and published["id"] == "just-4"
    mine = await (await client.get("/dashboard/events", headers=auth(token(4)))).get_json()
    # Live as over REST: ISO 8601 UTC ("Z" or a Unix time in, "+00:00" out), kind, description.
    assert (published["ends_at"], published["event_type"], published["description"],
            published["action"]) == (mine[0]["ends_at"], mine[0]["type"], None, None)
    assert published["ends_at"] == "2099-01-01T00:00:00+00:00"
    theirs = await (await client.get("/dashboard/events", headers=auth(token(5)))).get_json()
    assert [e["id"] for e in mine] == ["just-4"] and theirs == []
    await ingest(app, "event_reminder", None, id="unix", title="Draw", ends_at=4070908800)
    [_, unix] = await of_type(app, "dashboard", "event_reminder")
    assert unix["ends_at"] == "2099-01-01T00:00:00+00:00" and "user_id" not in unix


async def test_user_id_inside_data_is_accepted_as_the_user(app):
    result = await ingest_event(svc_of(app), {"type": "share_submitted",
                                              "data": {"user_id": 12, "shares": 1}})
    assert (await history(app, "mining", 12))[result.offset - 1]["user_id"] == 12


async def test_concurrent_producers_leave_consistent_ranks(app, client, token):
    async def one(n: int):
        await ingest(app, "leaderboard_update", 1 + n % 9, category=("a", "b")[n % 2],
                     score=float((n * 37) % 101))
        await ingest(app, "share_submitted", 1 + n % 9, shares=1)

    await asyncio.wait_for(asyncio.gather(*(one(n) for n in range(40))), 60)
    for category in ("a", "b"):
        board = await (await client.get(f"/leaderboard/{category}?limit=100",
                                        headers=auth(token(1)))).get_json()
        assert [entry["rank"] for entry in board] == list(range(1, len(board) + 1))
        scores = [entry["score"] for entry in board]
        assert scores == sorted(scores, reverse=True)
    total = 0
    for user_id in range(1, 10):
        stats = await (await client.get("/dashboard/stats", headers=auth(token(user_id))))\
            .get_json()
        total += stats["shares_today"]
    assert total == 40


async def test_metrics_count_accepted_events_only(app, client):
    svc = app.extensions["pulse"]
    await post_event(client, {"type": "match_update", "data": {"round": 1}})
    await post_event(client, {"type": "no_such_type", "data": {}})
    text = await (await client.get("/metrics")).get_data(as_text=True)
    assert "pulse_ingested_events_total 1.0\n" in text
    assert svc.metrics.ingested_events == 1


async def test_rest_answers_keep_their_field_order(app, client):
    response = await client.post("/api/events", json={"type": "match_update", "data": {}},
                                 headers={"X-API-Key": "test-api-key"})
    assert (await response.get_data(as_text=True)).startswith('{"channel":')


async def test_score_milestones_fire_once_for_the_highest_passed(app):
    """Seed 001 §8.6: 100, 500 and 1,000 points; a jump past several gives the highest."""
    async def unlocked():
        return [a["achievement"] for a in await of_type(app, "user:4:achievements",
                                                        "achievement_unlocked")]

    await ingest(app, "leaderboard_update", 4, category="typing", score=50.0)
    assert [a for a in await unlocked() if a.startswith("score-")] == []
    await ingest(app, "leaderboard_update", 4, category="typing", score=150.0)
    await ingest(app, "leaderboard_update", 4, category="typing", score=160.0)   # nothing new
    await ingest(app, "leaderboard_update", 4, category="typing", score=1200.0)  # past 500, 1000
    await ingest(app, "leaderboard_update", 4, category="typing", score=90.0)    # down: nothing
    await ingest(app, "leaderboard_update", 4, category="typing", score=120.0)   # past 100 again
    assert [a for a in await unlocked() if a.startswith("score-")] == [
        "score-100:typing", "score-1000:typing", "score-100:typing"]
    [first] = [a for a in await of_type(app, "activity:achievements", "achievement_unlocked")
               if a["achievement"] == "score-1000:typing"]
    assert first["title"] == "1,000 Points" and first["score"] == 1200.0
