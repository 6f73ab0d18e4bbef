"""POST /api/events with an Idempotency-Key: a retried event is stored once and published once,
including the retry after a 503 that came after the commit (the broker failed mid-way)."""
from __future__ import annotations

from datetime import timedelta

import pytest

from quart_app.dashboard.db_values import db_time, utcnow
from quart_app.dashboard.ingest import KEY_KEEP, KEY_STALE
from quart_app.dashboard.tasks import prune_once

from .dashboard_support import history, offsets, post_event, row_counts, svc_of
from .conftest import API_KEY

BADGE = {"type": "badge_earned", "user_id": 1, "data": {"badge_id": "first-share"}}


async def post(client, body, key):
    return await client.post("/api/events", json=body,
                             headers={"X-API-Key": API_KEY, "Idempotency-Key": key})


async def key_row(app, key):
    row = await svc_of(app).db.fetch_one("ingest_key_get", {"key": key})
    return row


async def test_a_repeat_gets_the_first_answer_and_changes_nothing(app, client):
    first = await post(client, BADGE, "evt-1")
    assert first.status_code == 202 and "Idempotency-Replayed" not in first.headers
    answer = await first.get_json()
    assert len(answer["published"]) > 1          # the event, its feed item, the achievement…
    before_offsets, before_rows = await offsets(app), await row_counts(app)
    again = await post(client, BADGE, "evt-1")
    assert again.status_code == 202 and again.headers["Idempotency-Replayed"] == "true"
    assert await again.get_json() == answer
    assert await offsets(app) == before_offsets and await row_counts(app) == before_rows
    # Another key is another event; no key at all still works as before.
    assert (await post(client, BADGE, "evt-2")).status_code == 202
    assert (await post_event(client, BADGE)).status_code == 202
    assert (await offsets(app))["gamification#1"] == before_offsets["gamification#1"] + 2


@pytest.mark.parametrize("key", ["", "has space", "x" * 256, "naïve", "tab\there"])
async def test_a_bad_key_is_422_and_changes_nothing(app, client, key):
    before_offsets, before_rows = await offsets(app), await row_counts(app)
    response = await client.post("/api/events", json=BADGE, headers={
        "X-API-Key": API_KEY, "Idempotency-Key": key.encode("utf-8").decode("latin-1")})
    assert response.status_code == 422
    assert "Idempotency-Key must be" in (await response.get_json())["detail"]
    assert await offsets(app) == before_offsets and await row_counts(app) == before_rows


async def test_the_same_key_with_another_body_is_422_and_changes_nothing(app, client):
    assert (await post(client, BADGE, "evt-1")).status_code == 202
    before_offsets, before_rows = await offsets(app), await row_counts(app)
    other = {**BADGE, "data": {"badge_id": "night-owl"}}
    response = await post(client, other, "evt-1")
    assert response.status_code == 422
    assert "different body" in (await response.get_json())["detail"]
    assert await offsets(app) == before_offsets and await row_counts(app) == before_rows


async def test_a_bad_body_does_not_use_up_the_key(app, client):
    response = await post(client, {"type": "no_such_type", "data": {}}, "evt-1")
    assert response.status_code == 422
    assert await key_row(app, "evt-1") is None
    assert (await post(client, BADGE, "evt-1")).status_code == 202


async def test_a_retry_after_a_503_finishes_the_publishing_once(app, client, monkeypatch):
    """The broker fails on the second publication, after the commit: 503. The retry publishes
    the rest (not the first again), and the rows were written once."""
    svc = svc_of(app)
    real_publish, calls = svc.publish, []

    async def failing_once(channel, data):
        calls.append(channel)
        if len(calls) == 2:
            raise ConnectionError("broker went away")
        return await real_publish(channel, data)

    monkeypatch.setattr(svc, "publish", failing_once)
    before = await offsets(app)
    failed = await post(client, BADGE, "evt-1")
    assert failed.status_code == 503 and "Broker unavailable" in (await failed.get_json())["detail"]
    row = await key_row(app, "evt-1")
    assert row["state"] == "failed" and row["answer"] is None
    rows_after_commit = await row_counts(app)
    assert (await offsets(app))["gamification#1"] == before["gamification#1"] + 1

    retried = await post(client, BADGE, "evt-1")
    assert retried.status_code == 202, await retried.get_json()
    answer = await retried.get_json()
    assert answer["channel"] == "gamification" and answer["offset"] == before["gamification#1"] + 1
    assert await row_counts(app) == rows_after_commit             # nothing stored twice
    # Each planned publication is on its channel once (stats_update pushes are not planned).
    refs = [(r["channel"], r["offset"]) for r in answer["published"]]
    assert len(set(refs)) == len(refs)
    for channel in {c for c, _ in refs}:
        sent = [d for d in await history(app, channel) if d["type"] != "stats_update"]
        assert len(sent) == sum(1 for c, _ in refs if c == channel), (channel, sent)
    assert calls.count("gamification") == 1                      # the event: never published again
    assert (await key_row(app, "evt-1"))["state"] == "done"
    # And from now on the key answers from the record.
    replay = await post(client, BADGE, "evt-1")
    assert replay.headers["Idempotency-Replayed"] == "true"
    assert await replay.get_json() == answer


async def test_an_attempt_in_progress_is_409_until_it_is_stale(app, client):
    db = svc_of(app).db
    assert (await post(client, BADGE, "evt-1")).status_code == 202
    # As if another process had claimed the key and were publishing (or died doing it).
    await db.raw.execute("UPDATE ingest_keys SET state = 'publishing', answer = NULL, "
                         "published = '[]', updated_at = :t WHERE key = 'evt-1'",
                         {"t": db_time(db, utcnow())})
    before = await offsets(app)
    busy = await post(client, BADGE, "evt-1")
    assert busy.status_code == 409 and "in progress" in (await busy.get_json())["detail"]
    assert await offsets(app) == before
    await db.raw.execute("UPDATE ingest_keys SET updated_at = :t WHERE key = 'evt-1'",
                         {"t": db_time(db, utcnow() - KEY_STALE - timedelta(seconds=1))})
    taken = await post(client, BADGE, "evt-1")
    assert taken.status_code == 202 and (await key_row(app, "evt-1"))["state"] == "done"


async def test_keys_are_forgotten_after_a_day(app, client):
    db = svc_of(app).db
    for key in ("old", "new"):
        assert (await post(client, {**BADGE, "user_id": 2 if key == "old" else 3}, key)
                ).status_code == 202
    await db.raw.execute("UPDATE ingest_keys SET updated_at = :t WHERE key = 'old'",
                         {"t": db_time(db, utcnow() - KEY_KEEP - timedelta(minutes=1))})
    await prune_once(svc_of(app))
    assert await key_row(app, "old") is None and await key_row(app, "new") is not None


async def test_two_requests_with_one_key_at_once_store_the_event_once(app, client):
    import asyncio

    before_rows = await row_counts(app)
    before = await offsets(app)
    first, second = await asyncio.gather(post(client, BADGE, "evt-1"), post(client, BADGE, "evt-1"))
    statuses = sorted([first.status_code, second.status_code])
    assert statuses in ([202, 202], [202, 409]), statuses
    assert (await offsets(app))["gamification#1"] == before["gamification#1"] + 1
    after_rows = await row_counts(app)
    assert after_rows["user_badges"] == before_rows["user_badges"] + 1
    assert after_rows["activity_feed"] == before_rows["activity_feed"] + 1
