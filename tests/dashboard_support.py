"""Helpers for the dashboard, ingest, tasks and demo tests (not fixtures: plain functions)."""
from __future__ import annotations

import asyncio
import json

from .conftest import API_KEY

from quart_app.dashboard.ingest import ingest_event

# Every channel ingest can publish on in these tests, for "nothing was published" checks.
WATCHED = ("mining", "dashboard", "gamification", "competition", "activity:feed",
           "activity:achievements", "leaderboard:shares", "user:1:achievements",
           "user:1:rank-changes", "project:p1:events", "session:s1:live")
TABLES = ("users", "workers", "share_days", "hashrate_samples", "network_state",
          "gamification_state", "badges", "user_badges", "leaderboard_scores", "activity_feed",
          "upcoming_events")


def svc_of(app):
    return app.extensions["pulse"]


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


async def post_event(client, body, key: str | None = API_KEY):
    headers = {"X-API-Key": key} if key is not None else {}
    if isinstance(body, (str, bytes)):
        headers["Content-Type"] = "application/json"
        return await client.post("/api/events", data=body, headers=headers)
    return await client.post("/api/events", json=body, headers=headers)


async def ingest(app, kind: str, user_id: int | None = None, now=None, **data):
    body = {"type": kind, "data": data}
    if user_id is not None:
        body["user_id"] = user_id
    return await ingest_event(svc_of(app), body, now=now)


# The users these tests publish for: their own offset spaces on user-targeted channels are read
# along with each channel's (docs/protocol.md, "Offsets").
TEST_USERS = tuple(range(1, 31))


def _spaces(channel: str, user: int | None = None):
    from quart_app.realtime import namespaces

    if user is not None:
        return [user]
    return [None, *TEST_USERS] if namespaces.targets_user(channel) else [None]


async def offsets(app, channels=WATCHED) -> dict[str, int]:
    """Every watched offset: each channel's, and each test user's own on targeted channels."""
    broker = svc_of(app).broker
    found = {}
    for channel in channels:
        for user in _spaces(channel):
            key = channel if user is None else f"{channel}#{user}"
            found[key] = (await broker.latest(channel, user=user))[0]
    return found


async def latest(app, channel: str, user: int | None = None) -> int:
    """The last offset of ``channel``, or of ``user``'s own space on it when it is targeted."""
    from quart_app.realtime import namespaces

    if user is not None and not namespaces.targets_user(channel):
        user = None
    return (await svc_of(app).broker.latest(channel, user=user))[0]


async def row_counts(app) -> dict[str, int]:
    """Rows per table, read through ``Database.raw`` (documented as for migrations and tests)."""
    raw = svc_of(app).db.raw
    return {table: await raw.fetch_val(f"SELECT COUNT(*) FROM {table}") for table in TABLES}


async def publications(app, channel: str, user: int | None = None) -> list:
    """What history holds for ``channel``: its own space and, on a targeted channel, every test
    user's (or only ``user``'s), in publishing order."""
    from quart_app.realtime import namespaces

    if user is not None and not namespaces.targets_user(channel):
        user = None
    found = []
    for space in _spaces(channel, user):
        found += (await svc_of(app).broker.history(channel, 0, user=space)).publications
    return sorted(found, key=lambda p: p.published_at)


async def history(app, channel: str, user: int | None = None) -> list[dict]:
    return [p.data for p in await publications(app, channel, user)]


async def of_type(app, channel: str, kind: str, after: int = 0) -> list[dict]:
    """The publications of type ``kind`` on ``channel`` published after offset ``after`` of
    the channel's own space (every user's own space counts in full)."""
    return [p.data for p in await publications(app, channel)
            if (p.user is not None or p.offset > after) and p.data.get("type") == kind]


async def eventually(probe, timeout: float = 5.0, interval: float = 0.05):
    """Await ``probe()`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if asyncio.get_running_loop().time() >= deadline:
            raise AssertionError(f"condition not met within {timeout} s (last: {value!r})")
        await asyncio.sleep(interval)


async def recv_json(ws, timeout: float = 5.0) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def recv_until(ws, predicate, timeout: float = 5.0) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise AssertionError("expected frame not received in time")
        frame = await recv_json(ws, left)
        if predicate(frame):
            return frame
