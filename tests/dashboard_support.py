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


async def offsets(app, channels=WATCHED) -> dict[str, int]:
    broker = svc_of(app).broker
    return {channel: await broker.latest_offset(channel) for channel in channels}


async def row_counts(app) -> dict[str, int]:
    """Rows per table, read through ``Database.raw`` (documented as for migrations and tests)."""
    raw = svc_of(app).db.raw
    return {table: await raw.fetch_val(f"SELECT COUNT(*) FROM {table}") for table in TABLES}


async def history(app, channel: str) -> list[dict]:
    result = await svc_of(app).broker.history(channel, 0)
    return [p.data for p in result.publications]


async def of_type(app, channel: str, kind: str, after: int = 0) -> list[dict]:
    """The publications of type ``kind`` on ``channel`` with an offset above ``after``."""
    result = await svc_of(app).broker.history(channel, 0)
    return [p.data for p in result.publications
            if p.offset > after and p.data.get("type") == kind]


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
