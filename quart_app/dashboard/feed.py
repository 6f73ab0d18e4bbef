"""The global activity feed (seed 000 §3.4.1): write an item, read a page, prune old ones, and
the events that are feed items and nothing else (``feed_item``, ``new_miner``, competition
results).

An item reads the same over REST (``GET /dashboard/feed``) and live (a ``feed_item``
publication on ``dashboard`` and ``activity:feed``), except that live the item's own type is
``feed_type`` because ``type`` names the publication.

An event published on a channel not everyone may join (``project_id``, or a ``user:`` channel)
keeps its feed items there: they are pushed on that channel only and stored out of the global
feed, so a project's news never reaches non-members.
"""
from __future__ import annotations

from datetime import datetime

from ..realtime.namespaces import is_public
from .db_values import db_json, db_time, from_db_json, iso
from .events import Event, Outcome

FEED_CHANNELS = ("dashboard", "activity:feed")
NO_CURSOR = 2**63 - 1


def _item(row: dict) -> dict:
    return {
        "id": int(row["id"]),
        "type": row["event_type"],
        "text": row["title"],
        "description": row["description"],
        "time": iso(row["created_at"]),
        "metadata": from_db_json(row["metadata"]),
    }


def channels_for(event: Event) -> tuple[str, ...]:
    """Where ``event``'s feed items are pushed: the global feed, or only its own channel."""
    return FEED_CHANNELS if is_public(event.channel) else (event.channel,)


async def add_item(db, now: datetime, event_type: str, user_id: int | None, title: str,
                   description: str | None = None, metadata: dict | None = None,
                   is_global: bool = True) -> dict:
    """Insert an item (in the global feed unless ``is_global`` is False); return it in the REST
    shape."""
    metadata = dict(metadata or {})
    row = await db.fetch_one("feed_insert", {
        "event_type": event_type[:32], "user_id": user_id, "title": title,
        "description": description, "metadata": db_json(metadata), "is_global": is_global,
        "now": db_time(db, now)})
    return _item({**row, "event_type": event_type[:32], "title": title,
                  "description": description, "metadata": metadata})


def publication(item: dict) -> dict:
    """The ``feed_item`` publication for a REST-shaped item (never targeted at one user)."""
    data = {"type": "feed_item", "id": item["id"], "feed_type": item["type"]}
    data.update((key, item[key]) for key in ("text", "description", "time", "metadata"))
    return data


async def page(db, limit: int, before_id: int | None = None) -> list[dict]:
    """Newest first, ``limit`` items with ``id < before_id``."""
    rows = await db.fetch_all("feed_page", {"limit": limit,
                                            "before_id": before_id or NO_CURSOR})
    return [_item(row) for row in rows]


async def prune(db, keep: int) -> int:
    """Delete all but the newest ``keep`` global items; return how many went.

    Ids only grow, so everything at or below the cutoff stays below it while we count and
    delete; items inserted meanwhile are newer and untouched.
    """
    cutoff = await db.fetch_val("feed_prune_cutoff", {"keep": max(0, keep)})
    if cutoff is None:
        return 0
    count = int(await db.fetch_val("feed_prune_count", {"cutoff": cutoff}) or 0)
    if count:
        await db.execute("feed_prune", {"cutoff": cutoff})
    return count


async def post(db, event: Event, out: Outcome, feed_type: str, title: str,
               description: str | None = None, metadata: dict | None = None) -> dict:
    """Store a feed item caused by ``event`` and queue its publications."""
    channels = channels_for(event)
    item = await add_item(db, event.received_at, feed_type, event.user_id, title, description,
                          metadata, is_global=channels == FEED_CHANNELS)
    for channel in channels:
        out.publish(channel, publication(item))
    return item


async def feed_item(db, event: Event, out: Outcome, name: str | None) -> None:
    """The item itself is the publication: it goes to everyone, so it carries no ``user_id``
    (send-to-user would hide it from the rest of the pool); the actor is in ``metadata``."""
    fields = event.fields
    metadata = dict(fields.metadata)
    if event.user_id is not None:
        metadata.setdefault("user_id", event.user_id)
    channels = channels_for(event)
    item = await add_item(db, event.received_at, fields.feed_type, event.user_id, fields.text,
                          fields.description, metadata, is_global=channels == FEED_CHANNELS)
    out.replace = publication(item)
    for channel in channels:
        if channel != event.channel:
            out.publish(channel, publication(item))


async def new_miner(db, event: Event, out: Outcome, name: str | None) -> None:
    await post(db, event, out, "new_miner", f"{name} joined the pool",
                metadata={"user_id": event.user_id})


def _competition_metadata(event: Event) -> dict:
    keep = ("match_id", "league_id", "league", "result", "category", "user_id", "winner")
    metadata = {key: event.data[key] for key in keep if key in event.data}
    if event.user_id is not None:
        metadata["user_id"] = event.user_id
    return metadata


async def match_update(db, event: Event, out: Outcome, name: str | None) -> None:
    """A match with a ``result`` is a competition result: a feed item."""
    fields = event.fields
    if fields.result is None:
        return
    match = event.data.get("match_id")
    title = fields.text or (f"Match {match}: {fields.result}" if match else fields.result)
    await post(db, event, out, "competition", title, metadata=_competition_metadata(event))


async def league_update(db, event: Event, out: Outcome, name: str | None) -> None:
    league = event.data.get("league") or event.data.get("league_id") or "the league"
    title = event.fields.text or f"Standings updated in {league}"
    await post(db, event, out, "competition", str(title)[:500],
                metadata=_competition_metadata(event))
