"""POST /api/publish (issue 13, DESIGN §8): any application's events on any valid channel, with
offsets and history, one answer per batch item, nothing published for a rejected item, and an
Idempotency-Key that makes a repeat publish nothing again. Both backends."""
from __future__ import annotations

import json

import pytest

from quart_app.publish_api import MAX_BODY_BYTES

from .conftest import API_KEY, serve_app, ws_client

# Seed 001 (typing leaderboards, dotted types) and seed 003 (project events) shaped channels.
WATCHED = ("leaderboard:typing_wpm", "session:s1:live", "activity:feed", "project:p1:events",
           "project:p2:events", "competition")
SCORE = {"type": "score.updated", "user": "ada", "wpm": 97.5}
AGENT = {"type": "agent_status", "agent": "a-7", "status": "running"}


def svc_of(app):
    return app.extensions["pulse"]


async def latest(app) -> dict[str, int]:
    broker = svc_of(app).broker
    return {channel: (await broker.latest(channel))[0] for channel in WATCHED}


async def publish(client, body, key: str | None = None, api_key: str | None = API_KEY):
    headers = {"X-API-Key": api_key} if api_key is not None else {}
    if key is not None:
        headers["Idempotency-Key"] = key
    if isinstance(body, (str, bytes)):
        headers["Content-Type"] = "application/json"
        return await client.post("/api/publish", data=body, headers=headers)
    return await client.post("/api/publish", json=body, headers=headers)


async def test_one_channel_gets_the_next_offset_and_history(app, client):
    first = await publish(client, {"channel": "leaderboard:typing_wpm", "data": SCORE})
    assert first.status_code == 202
    assert await first.get_json() == {
        "channel": "leaderboard:typing_wpm", "offset": 1,
        "published": [{"channel": "leaderboard:typing_wpm", "offset": 1}]}
    second = await publish(client, {"channel": "leaderboard:typing_wpm", "data": SCORE})
    assert (await second.get_json())["offset"] == 2
    history = await svc_of(app).broker.history("leaderboard:typing_wpm", 0)
    assert [p.data for p in history.publications] == [SCORE, SCORE]
    assert [p.offset for p in history.publications] == [1, 2]


async def test_broadcast_answers_each_channel_in_order(app, client):
    await publish(client, {"channel": "project:p2:events", "data": AGENT})
    response = await publish(client, {"channels": ["project:p1:events", "project:p2:events"],
                                      "data": AGENT})
    assert response.status_code == 202
    assert await response.get_json() == {"published": [
        {"channel": "project:p1:events", "offset": 1},
        {"channel": "project:p2:events", "offset": 2}]}


async def test_a_mixed_batch_is_207_item_by_item(app, client):
    batch = [
        {"channel": "leaderboard:typing_wpm", "data": SCORE},
        {"channel": "nope!", "data": SCORE},
        {"channels": ["project:p1:events", "activity:feed"], "data": AGENT},
        {"channel": "session:s1:live", "data": {"wpm": 3}},
        {"channel": "leaderboard:typing_wpm", "data": {**SCORE, "wpm": 99}},
    ]
    response = await publish(client, batch)
    assert response.status_code == 207
    results = (await response.get_json())["results"]
    assert [r["status"] for r in results] == [202, 422, 202, 422, 202]
    assert results[0]["published"] == [{"channel": "leaderboard:typing_wpm", "offset": 1}]
    assert "Invalid channel in 'channel'" in results[1]["detail"]
    assert results[2]["published"] == [{"channel": "project:p1:events", "offset": 1},
                                       {"channel": "activity:feed", "offset": 1}]
    assert "'data.type'" in results[3]["detail"]
    assert results[4]["published"] == [{"channel": "leaderboard:typing_wpm", "offset": 2}]
    assert (await latest(app))["session:s1:live"] == 0
    # One channel's publications keep the batch's order.
    history = await svc_of(app).broker.history("leaderboard:typing_wpm", 0)
    assert [p.data["wpm"] for p in history.publications] == [97.5, 99]


async def test_a_batch_of_only_bad_items_is_422_and_publishes_nothing(app, client):
    before = await latest(app)
    response = await publish(client, [{"channel": "nope!", "data": SCORE},
                                      {"channel": "competition", "data": []}])
    assert response.status_code == 422
    results = (await response.get_json())["results"]
    assert [r["status"] for r in results] == [422, 422]
    assert await latest(app) == before


async def test_a_full_batch_goes_out_in_order(app, client):
    batch = [{"channel": f"session:s{i % 10}:live", "data": {"type": "tick", "n": i}}
             for i in range(1000)]
    response = await publish(client, batch)
    assert response.status_code == 202
    results = (await response.get_json())["results"]
    assert [r["published"][0]["offset"] for r in results[:20]] == [1] * 10 + [2] * 10
    history = await svc_of(app).broker.history("session:s3:live", 0)
    assert [p.data["n"] for p in history.publications] == list(range(3, 1000, 10))


@pytest.mark.parametrize("body, detail", [
    ({"channel": "leaderboard:typing_wpm"}, "'data' must be a JSON object"),
    ({"channel": "leaderboard:typing_wpm", "data": "x"}, "'data' must be a JSON object"),
    ({"channel": "leaderboard:typing_wpm", "data": {}}, "'data.type' must be"),
    ({"channel": "leaderboard:typing_wpm", "data": {"type": ""}}, "'data.type' must be"),
    ({"channel": "leaderboard:typing_wpm", "data": {"type": "t" * 65}}, "'data.type' must be"),
    ({"channel": "leaderboard:typing_wpm", "data": {"type": 7}}, "'data.type' must be"),
    ({"channel": "no such", "data": SCORE}, "Invalid channel in 'channel': no such"),
    ({"channel": 5, "data": SCORE}, "Invalid channel in 'channel'"),
    ({"channels": ["competition", "x:y"], "data": SCORE}, "Invalid channel in 'channels[1]'"),
    ({"channels": [], "data": SCORE}, "'channels' must be a list of 1 to 100"),
    ({"channels": [f"session:s{i}:live" for i in range(101)], "data": SCORE},
     "'channels' must be a list of 1 to 100"),
    ({"channels": ["competition", "competition"], "data": SCORE}, "'channels' must be distinct"),
    ({"channel": "competition", "channels": ["competition"], "data": SCORE},
     "Give either 'channel' or 'channels'"),
    ({"data": SCORE}, "Give either 'channel' or 'channels'"),
    ({"channel": "competition", "data": SCORE, "extra": 1}, "Unknown field(s): extra"),
    ({"channel": "competition", "data": {**SCORE, "note": "a\x00b"}},
     "data.note: text holds a NUL"),
    ({"channel": "competition", "data": {**SCORE, "s": "\ud800"}}, "data.s: text holds a lone"),
    ([], "A batch holds 1 to 1000 items, got 0"),
    ([{"channel": "competition", "data": SCORE}] * 1001, "A batch holds 1 to 1000 items"),
    ('"nope"', "Body must be a JSON object (one publish) or an array"),
])
async def test_a_bad_body_is_422_naming_the_field_and_publishes_nothing(app, client, body,
                                                                        detail):
    before = await latest(app)
    response = await publish(client, body)
    assert response.status_code == 422
    assert detail in (await response.get_json())["detail"]
    assert await latest(app) == before


@pytest.mark.parametrize("raw, detail", [
    (b'{"channel": "competition", "data": {"type": "t", "x": NaN}}', "data.x: not a finite"),
    (b'{"channel": "competition", "data": {"type": "t", "x": 1e400}}', "data.x: not a finite"),
    (b'{"channel": "competition", "data": {"type": "t", "x": -Infinity}}', "not a finite"),
    (b'{"channel": "competition", "data": {"type": "t", "x": ' + b"[" * 40 + b"]" * 40 + b"}}",
     "nested more than 32 levels deep"),
    (b"[" * 100_000 + b"]" * 100_000, "Body must be JSON (and nested less deeply)"),
    (b"{not json", "Body must be JSON"),
    (b"\xff\xfe", "Body must be JSON"),
])
async def test_what_no_browser_can_parse_is_422_and_publishes_nothing(app, client, raw, detail):
    before = await latest(app)
    response = await publish(client, raw)
    assert response.status_code == 422
    assert detail in (await response.get_json())["detail"]
    assert await latest(app) == before


async def test_a_body_over_1_mib_is_413(app, client):
    big = {"channel": "competition", "data": {"type": "t", "blob": "x" * MAX_BODY_BYTES}}
    response = await publish(client, big)
    assert response.status_code == 413
    assert "Body too large" in (await response.get_json())["detail"]
    assert (await latest(app))["competition"] == 0


@pytest.mark.parametrize("api_key", [None, "wrong"])
async def test_the_api_key_is_required_as_on_api_events(app, client, api_key):
    response = await publish(client, {"channel": "competition", "data": SCORE}, api_key=api_key)
    events = await client.post("/api/events", json={"type": "feed_item", "data": {}},
                               headers={"X-API-Key": api_key} if api_key else {})
    assert response.status_code == events.status_code == 401
    assert await response.get_json() == await events.get_json()
    assert (await latest(app))["competition"] == 0


BATCH = [{"channel": "leaderboard:typing_wpm", "data": SCORE},
         {"channels": ["project:p1:events", "leaderboard:typing_wpm"], "data": AGENT},
         {"channel": "nope!", "data": SCORE}]


@pytest.mark.parametrize("body", [{"channel": "leaderboard:typing_wpm", "data": SCORE}, BATCH])
async def test_a_repeat_with_the_key_gets_the_same_answer_and_publishes_nothing(app, client,
                                                                               body):
    first = await publish(client, body, key="pub-1")
    assert first.status_code in (202, 207) and "Idempotency-Replayed" not in first.headers
    before = await latest(app)
    again = await publish(client, body, key="pub-1")
    assert again.status_code == first.status_code
    assert again.headers["Idempotency-Replayed"] == "true"
    assert await again.get_json() == await first.get_json()
    assert await latest(app) == before
    # Another key is another publish.
    other = await publish(client, body, key="pub-2")
    assert "Idempotency-Replayed" not in other.headers
    assert (await latest(app))["leaderboard:typing_wpm"] > before["leaderboard:typing_wpm"]


async def test_the_key_with_another_body_is_422_and_publishes_nothing(app, client):
    assert (await publish(client, BATCH, key="pub-1")).status_code == 207
    before = await latest(app)
    changed = [BATCH[0], {**BATCH[1], "data": {**AGENT, "status": "done"}}, BATCH[2]]
    response = await publish(client, changed, key="pub-1")
    assert response.status_code == 422
    assert (await response.get_json())["detail"] == "Idempotency-Key reused with a different body"
    assert await latest(app) == before


async def test_a_retry_after_a_broker_failure_publishes_only_the_rest(app, client, monkeypatch):
    """The first attempt dies mid-batch (a 503); its retry with the key completes it, and
    every publication has exactly one offset."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    svc = svc_of(app)
    real = svc.publish_many
    calls = {"n": 0}

    async def failing(requests, **kwargs):
        # The key's first publication went alone; the pipeline dies after one more.
        calls["n"] += 1
        if calls["n"] == 1:
            await real(requests[:1], **kwargs)
            raise RedisConnectionError("gone")
        return await real(requests, **kwargs)

    monkeypatch.setattr(svc, "publish_many", failing)
    batch = [{"channel": "session:s1:live", "data": {"type": "tick", "n": i}} for i in range(5)]
    first = await publish(client, batch, key="retry-1")
    assert first.status_code == 503
    assert (await latest(app))["session:s1:live"] == 2
    again = await publish(client, batch, key="retry-1")
    assert again.status_code == 202 and "Idempotency-Replayed" not in again.headers
    offsets = [r["published"][0]["offset"] for r in (await again.get_json())["results"]]
    assert offsets == [1, 2, 3, 4, 5]
    history = await svc.broker.history("session:s1:live", 0)
    assert [p.data["n"] for p in history.publications] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("key", ["", "has space", "x" * 256])
async def test_a_bad_key_is_422(app, client, key):
    response = await publish(client, {"channel": "competition", "data": SCORE}, key=key)
    assert response.status_code == 422
    assert "Idempotency-Key must be" in (await response.get_json())["detail"]
    assert (await latest(app))["competition"] == 0


async def test_a_user_targeted_channel_publishes_in_the_users_own_space(app, client):
    response = await publish(client, {"channel": "gamification",
                                      "data": {"type": "quest.done", "user_id": 7}})
    assert response.status_code == 202
    broker = svc_of(app).broker
    assert (await broker.latest("gamification", user=7))[0] == 1
    assert (await broker.latest("gamification"))[0] == 0


async def test_the_route_is_in_the_openapi_document(client):
    spec = await (await client.get("/openapi.json")).get_json()
    operation = spec["paths"]["/api/publish"]["post"]
    assert operation["tags"] == ["publish"]
    assert "Publish application events" in operation["summary"]


async def test_a_subscriber_receives_the_publication(settings, token):
    """Seed 003's shape: a project member subscribed over WebSocket gets `agent_status`; seed
    001's: a typing leaderboard gets `score.updated`."""
    import httpx

    async with serve_app(settings) as (address, _app):
        async with ws_client(address, token(1, projects=["p1"])) as ws:
            assert (await ws.subscribe("project:p1:events"))["type"] == "subscribed"
            assert (await ws.subscribe("leaderboard:typing_wpm"))["type"] == "subscribed"
            async with httpx.AsyncClient(base_url=f"http://{address}") as http:
                response = await http.post("/api/publish", headers={"X-API-Key": API_KEY},
                                           content=json.dumps([
                                               {"channel": "project:p1:events", "data": AGENT},
                                               {"channel": "leaderboard:typing_wpm",
                                                "data": SCORE}]))
            assert response.status_code == 202
            got = [await ws.recv_until(lambda f: "offset" in f) for _ in range(2)]
            assert sorted((f["channel"], f["offset"], f["data"]["type"]) for f in got) == [
                ("leaderboard:typing_wpm", 1, "score.updated"),
                ("project:p1:events", 1, "agent_status")]
            assert {f["channel"]: f["data"] for f in got}["project:p1:events"] == AGENT
