"""Producer input that used to crash ingest (issue 12, Medium): every case is a 422 that names
the problem and changes nothing, on SQLite + memory and on PostgreSQL + Redis alike."""
from __future__ import annotations

import json

import pytest

from quart_app.dashboard import events
from quart_app.dashboard.events import MAX_DEPTH, json_problem
from quart_app.dashboard.gamification import MAX_LEVEL, MAX_XP, level_for_xp
from quart_app.realtime.broker import encode_json

from .conftest import API_KEY
from .dashboard_support import auth, ingest, offsets, post_event, row_counts, svc_of

HUGE = "1" + "0" * 400  # an integer literal beyond float range


def _raw(kind: str, data: str, user_id: int | None = 1) -> str:
    user = f', "user_id": {user_id}' if user_id is not None else ""
    return f'{{"type": "{kind}"{user}, "data": {data}}}'


HOSTILE = [
    # integers beyond float (and BIGINT) range, wherever they are
    (_raw("stats_update", f'{{"x": {HUGE}}}'), "data.x: integer out of range"),
    (_raw("hashrate_update", f'{{"hashrate": {HUGE}}}'), "data.hashrate"),
    (_raw("leaderboard_update", f'{{"category": "c", "score": {HUGE}}}'), "data.score"),
    (_raw("stats_update", f'{{"x": [1, -{HUGE}]}}'), "data.x[1]: integer out of range"),
    (_raw("stats_update", f'{{"x": {2**63}}}'), "integer out of range"),
    (_raw("share_submitted", f'{{"shares": {HUGE}}}'), "data.shares"),
    # float literals that overflow to Infinity when parsed
    (_raw("stats_update", '{"x": 1e400}'), "data.x: not a finite number"),
    (_raw("stats_update", '{"x": -Infinity}'), "NaN or Infinity"),
    # moments whose UTC conversion leaves years 1-9999
    (_raw("event_reminder", '{"title": "t", "ends_at": "0001-01-01T00:00:00+05:00"}', None),
     "data.ends_at"),
    (_raw("event_reminder", '{"title": "t", "ends_at": "9999-12-31T23:59:59-05:00"}', None),
     "data.ends_at"),
    (_raw("event_reminder", '{"title": "t", "ends_at": "2099-01-01T00:00:00Z", '
                            '"starts_at": "9999-12-31T23:59:59-05:00"}', None), "data.starts_at"),
    (_raw("badge_earned", '{"badge_id": "b", "earned_at": "0001-01-01T00:00:00+05:00"}'),
     "data.earned_at"),
    # NUL: PostgreSQL text and JSONB cannot hold it; refused on both backends
    (_raw("feed_item", '{"text": "a\\u0000b"}', None), "data.text: text holds a NUL"),
    (_raw("stats_update", '{"note\\u0000": 1}'), "holds a NUL"),
    (_raw("new_miner", '{"display_name": "\\u0000"}'), "data.display_name"),
    (_raw("block_found", '{"height": 1, "text": "x\\u0000"}'), "data.text"),
    # lone surrogates: not encodable as UTF-8, anywhere in the body
    (_raw("stats_update", '{"x": "\\ud800"}'), "data.x: text holds a lone surrogate"),
    (_raw("stats_update", '{"\\udfff": 1}'), "lone surrogate"),
    (_raw("feed_item", '{"text": "ok", "metadata": {"a": ["\\udc00"]}}', None),
     "data.metadata.a[0]"),
    ('{"type": "\\ud800", "data": {}}', "type: text holds a lone surrogate"),
    (_raw("block_found", '{"height": 1, "text": "\\ud800"}'), "data.text"),
    # nesting: bounded long before the parser's recursion limit
    (_raw("stats_update", '{"x": ' + "[" * 40 + "]" * 40 + "}"), "nested more than"),
    # mining figures: bounded so nothing derived from them can overflow to Infinity
    (_raw("hashrate_update", '{"hashrate": 1e300}'), "data.hashrate"),
    (_raw("hashrate_update", '{"hashrate": 1e-300}'), "data.hashrate"),
    (_raw("hashrate_update", '{"hashrate": 1e300, "worker": "w"}'), "data.hashrate"),
    (_raw("best_diff", '{"difficulty": 1e31}'), "data.difficulty"),
    (_raw("share_submitted", '{"difficulty": 1e-13}'), "data.difficulty"),
    (_raw("block_found", '{"height": 1, "network_diff": 1e-300}', None), "data.network_diff"),
    (_raw("block_found", f'{{"height": {2**53}}}', None), "data.height"),
    (_raw("block_found", '{"height": 1, "reward": 1e300}', None), "data.reward"),
    (_raw("stats_update", '{"hashrate": 1e300}'), "data.hashrate"),
    (_raw("stats_update", f'{{"network_height": {2**53}}}'), "data.network_height"),
    (_raw("stats_update", f'{{"level": {MAX_LEVEL + 1}}}'), "data.level"),
    (_raw("level_up", f'{{"level": {MAX_LEVEL + 1}}}'), "data.level"),
    (_raw("level_up", '{"level": 10000}'), "data.level"),
    # column widths: upcoming_events.event_type is VARCHAR(32)
    (_raw("event_reminder", '{"title": "t", "ends_at": "2099-01-01T00:00:00Z", '
                            f'"event_type": "{"e" * 33}"}}', None), "data.event_type"),
    (_raw("feed_item", f'{{"text": "t", "feed_type": "{"f" * 33}"}}', None), "data.feed_type"),
]


@pytest.mark.parametrize("body, reason", HOSTILE)
async def test_hostile_input_is_422_and_changes_nothing(app, client, body, reason):
    await ingest(app, "new_miner", 1)
    before_offsets, before_rows = await offsets(app), await row_counts(app)
    response = await post_event(client, body)
    answer = await response.get_json()
    assert response.status_code == 422, answer
    assert reason in answer["detail"]
    assert "\x00" not in answer["detail"] and "\\u0000" not in answer["detail"]
    assert await offsets(app) == before_offsets
    assert await row_counts(app) == before_rows


async def test_a_lone_surrogate_is_never_stored_however_often_it_is_retried(app, client):
    """It used to be stored, answered 503, and stored again on every retry."""
    body = _raw("block_found", '{"height": 7, "text": "Block \\ud800"}', None)
    before_rows = await row_counts(app)
    for _ in range(3):
        response = await post_event(client, body)
        assert response.status_code == 422
    assert await row_counts(app) == before_rows


@pytest.mark.parametrize("key", [None, "surrogate-retry-1"])
async def test_what_cannot_be_encoded_rolls_the_transaction_back(app, client, monkeypatch, key):
    """Behind json_problem, ingest encodes every publication inside its transaction: whatever
    slips past validation is a 422 with nothing stored, never a stored event answered 503."""
    monkeypatch.setattr(events, "json_problem", lambda value: None)
    # Shares are written, then the note (published as given, stored nowhere) fails to encode.
    body = _raw("share_submitted", '{"shares": 2, "note": "\\ud800"}', 9)
    before_offsets, before_rows = await offsets(app), await row_counts(app)
    headers = {"X-API-Key": API_KEY, "Content-Type": "application/json"}
    if key is not None:
        headers["Idempotency-Key"] = key
    for _ in range(2):
        response = await client.post("/api/events", data=body, headers=headers)
        assert response.status_code == 422
        assert "cannot be published" in (await response.get_json())["detail"]
    assert await offsets(app) == before_offsets
    assert await row_counts(app) == before_rows
    if key is not None:  # the key was left unused: a corrected body under it goes through
        good = _raw("share_submitted", '{"shares": 2, "note": "fixed"}', 9)
        monkeypatch.undo()
        response = await client.post("/api/events", data=good, headers=headers)
        assert response.status_code == 202


async def test_bounds_themselves_are_accepted(app, client):
    for body in (_raw("hashrate_update", '{"hashrate": 1e30}'),
                 _raw("hashrate_update", '{"hashrate": 1e-12}'),
                 _raw("hashrate_update", '{"hashrate": 0}'),
                 _raw("block_found", f'{{"height": {2**53 - 1}, "network_diff": 1e30}}', None),
                 _raw("level_up", f'{{"level": {MAX_LEVEL}}}'),
                 _raw("stats_update", f'{{"x": {2**63 - 1}, "y": {-(2**63)}}}'),
                 _raw("stats_update", '{"x": ' + "[" * (MAX_DEPTH - 2) + "]" * (MAX_DEPTH - 2)
                      + "}"),
                 _raw("event_reminder", '{"title": "t", "ends_at": "9999-12-31T18:59:59-05:00",'
                                        ' "event_type": "' + "e" * 32 + '"}', None)):
        response = await post_event(client, body)
        assert response.status_code == 202, (body[:120], await response.get_json())


async def test_huge_figures_never_reach_a_dashboard_as_infinity(app, client, token):
    """Two workers near float's end summed to Infinity, and reached every dashboard as the bare
    token ``Infinity``. Now each figure is bounded (or refused) and every derived one is finite."""
    for worker in ("w1", "w2"):
        await post_event(client, _raw("worker_status", f'{{"worker": "{worker}", '
                                                       '"status": "online"}'))
        for hashrate in ("1e308", "1e30"):
            response = await post_event(client, _raw(
                "hashrate_update", f'{{"hashrate": {hashrate}, "worker": "{worker}"}}'))
            assert response.status_code in (202, 422)
    for body in (_raw("best_diff", '{"difficulty": 1e308}'),
                 _raw("best_diff", '{"difficulty": 1e30}'),
                 _raw("block_found", '{"height": 1, "network_diff": 1e-308}', None),
                 _raw("block_found", '{"height": 2, "network_diff": 1e-12}', None)):
        assert (await post_event(client, body)).status_code in (202, 422)
    response = await client.get("/dashboard/stats", headers=auth(token(1)))
    assert response.status_code == 200
    text = (await response.get_data()).decode()
    assert "Infinity" not in text and "NaN" not in text
    assert 1e30 <= json.loads(text)["hashrate"] <= 2e30  # the 5-minute average of samples
    history = await svc_of(app).broker.history("dashboard", 0)
    assert history.publications
    for publication in history.publications:
        assert b"Infinity" not in publication.frame and b"NaN" not in publication.frame


async def test_extreme_years_are_stored_with_four_digits(app, client, token):
    """SQLite compares timestamps as text: year 999 must not sort after 2099."""
    response = await post_event(client, _raw(
        "event_reminder", '{"id": "old", "title": "t", "ends_at": "0999-01-01T00:00:00Z"}', None))
    assert response.status_code == 202
    response = await post_event(client, _raw(
        "event_reminder", '{"id": "first", "title": "t", "ends_at": "0001-01-01T05:00:00+05:00"}',
        None))
    assert response.status_code == 202
    response = await client.get("/dashboard/events", headers=auth(token(1)))
    assert response.status_code == 200
    assert [e["id"] for e in await response.get_json()] == []


async def test_xp_is_capped_so_the_sql_addition_cannot_overflow(app):
    await ingest(app, "xp_gained", 1, amount=5)
    db = svc_of(app).db
    await db.raw.execute(f"UPDATE gamification_state SET xp = {2**63 - 10} WHERE user_id = 1")
    await ingest(app, "xp_gained", 1, amount=1_000_000_000)
    row = await db.fetch_one("gamification_get", {"user_id": 1})
    assert int(row["xp"]) == MAX_XP
    assert 1 <= int(row["level"]) <= MAX_LEVEL
    assert level_for_xp(2**63) == MAX_LEVEL


@pytest.mark.parametrize("user", ["²", "1" * 5000, "-1", "0", "+1", " 1", "1\u0660",
                                  str(2**63)])
async def test_dev_login_takes_plain_digits_only(app, client, user):
    response = await client.get("/dev/login", query_string={"user": user})
    assert response.status_code == 400


@pytest.mark.parametrize("value, problem", [
    ({"a": [1, {"b": "\x00"}]}, "a[1].b: text holds a NUL character"),
    ({"a b": "\ud800"}, '["a b"]: text holds a lone surrogate'),
    ({"\ud800": 1}, 'key holds a lone surrogate'),
    ([float("nan")], "[0]: not a finite number"),
    ({"n": -(2**63) - 1}, "n: integer out of range"),
    ({"t": (1, 2)}, None),
    ({"o": object()}, "o: not a JSON value"),
    ({1: 2}, "not a JSON object key"),
    ({"d": json.loads("[" * MAX_DEPTH + "]" * MAX_DEPTH)}, "d" + "[0]" * (MAX_DEPTH - 1)
     + ": nested more than"),
    (json.loads("[" * MAX_DEPTH + "]" * MAX_DEPTH), None),
    ({"ok": [True, None, 1.5, -(2**63), 2**63 - 1, "é✓"]}, None),
])
def test_json_problem_names_the_path(value, problem):
    found = json_problem(value)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found
        assert "\x00" not in found and "\ud800" not in found


@pytest.mark.parametrize("value", [float("inf"), float("nan"), {"a": [float("-inf")]}, "\ud800",
                                   {"\udfff": 1}, ["x\udc00y"]])
def test_the_frame_encoder_refuses_what_is_not_json(value):
    with pytest.raises(ValueError):
        encode_json(value)


def test_the_frame_encoder_keeps_valid_text_as_is():
    assert encode_json({"a": "é✓\U0001F600", "b": [1, 2.5]}) == '{"a":"é✓\U0001F600","b":[1,2.5]}'
    assert json.loads(encode_json({"x": "\U0001F600"})) == {"x": "\U0001F600"}
