"""Mining events into the mining tables: workers, per-day shares, hashrate samples, network.

Each handler runs inside ingest's transaction with a validated :class:`~quart_app.events.Event`
and records what to publish afterwards in the :class:`~quart_app.events.Outcome`.
"""
from __future__ import annotations

from . import feed
from .db_values import db_date, db_time
from .events import Event, Outcome


async def _add_to_day(db, event: Event, shares: int, difficulty: float) -> None:
    await db.execute("share_day_add", {
        "user_id": event.user_id, "day": db_date(db, event.received_at.date()),
        "shares": shares, "difficulty": difficulty})


async def _sample(db, event: Event) -> float:
    """Record the user's total hashrate (online workers) as a sample; return it."""
    total = float(await db.fetch_val("user_hashrate", {"user_id": event.user_id}) or 0.0)
    await db.execute("hashrate_sample_insert", {
        "user_id": event.user_id, "now": db_time(db, event.received_at), "hashrate": total})
    return total


async def share_submitted(db, event: Event, out: Outcome, name: str | None) -> None:
    fields = event.fields
    if fields.worker:
        await db.execute("worker_share", {"user_id": event.user_id, "name": fields.worker,
                                          "now": db_time(db, event.received_at)})
    await _add_to_day(db, event, fields.shares, fields.difficulty)
    out.stats_users.add(event.user_id)


async def best_diff(db, event: Event, out: Outcome, name: str | None) -> None:
    await _add_to_day(db, event, 0, event.fields.difficulty)
    out.stats_users.add(event.user_id)


async def worker_status(db, event: Event, out: Outcome, name: str | None) -> None:
    fields = event.fields
    # No hashrate sample here: the worker's next hashrate_update reports what it does now.
    await db.execute("worker_status", {"user_id": event.user_id, "name": fields.worker,
                                       "online": fields.status == "online"})
    out.stats_users.add(event.user_id)


async def hashrate_update(db, event: Event, out: Outcome, name: str | None) -> None:
    """Per worker (``worker`` given) or for the user as a whole."""
    fields = event.fields
    if fields.worker:
        await db.execute("worker_hashrate", {"user_id": event.user_id, "name": fields.worker,
                                             "hashrate": fields.hashrate})
        await _sample(db, event)
    else:
        await db.execute("hashrate_sample_insert", {
            "user_id": event.user_id, "now": db_time(db, event.received_at),
            "hashrate": fields.hashrate})
    out.stats_users.add(event.user_id)


async def block_found(db, event: Event, out: Outcome, name: str | None) -> None:
    """The network moved on: new height (and difficulty); a feed item for everyone."""
    fields = event.fields
    await db.execute("network_set", {"key": "height", "value": float(fields.height)})
    if fields.network_diff is not None:
        await db.execute("network_set", {"key": "difficulty", "value": fields.network_diff})
    title = event.data.get("text") or (
        f"Block #{fields.height:,} found by {name}" if name else f"Block #{fields.height:,} found")
    description = event.data.get("description")
    if description is None and fields.reward is not None:
        description = f"Reward: {fields.reward:g} BTC"
    metadata = {"height": fields.height, "user_id": event.user_id, "reward": fields.reward}
    await feed.post(db, event, out, "block_found", str(title), _text(description), metadata)
    if event.user_id is not None:
        out.stats_users.add(event.user_id)


def _text(value) -> str | None:
    return None if value is None else str(value)
