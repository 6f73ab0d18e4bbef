"""``POST /api/events`` and its in-process twin :func:`ingest_event` (DESIGN §8).

One path for every producer (HTTP, the Python API, the demo):

1. :func:`~quart_app.events.parse_event` validates the whole body: a bad one is a 422 and
   nothing is written or published.
2. One transaction: the user is created on first sight, the type's handler writes its tables,
   a score moves the leaderboard.
3. After the commit: the event is published on its channel (``{"type": EVENT, **data,
   "user_id": …}``), then what it caused, in order (feed items, leaderboard moves, rank changes,
   achievements, level-ups).
4. The stats of every user it touched are invalidated and pushed (``stats_update``).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, Field
from quart import Blueprint, request
from quart_schema import document_request, document_response

from . import dashboard, feed, gamification, leaderboard, mining
from .api_health import require_api_key
from .db_values import db_time
from .errors import PulseError, ServiceUnavailable, Unprocessable
from .events import Event, Outcome, parse_event
from .web import services

log = logging.getLogger("pulse.ingest")
bp = Blueprint("ingest", __name__)

MAX_BODY_BYTES = 64 * 1024

HANDLERS = {
    "share_submitted": mining.share_submitted,
    "worker_status": mining.worker_status,
    "hashrate_update": mining.hashrate_update,
    "best_diff": mining.best_diff,
    "block_found": mining.block_found,
    "feed_item": feed.feed_item,
    "new_miner": feed.new_miner,
    "match_update": feed.match_update,
    "league_update": feed.league_update,
    "event_reminder": dashboard.event_reminder,
    "badge_earned": gamification.badge_earned,
    "xp_gained": gamification.xp_gained,
    "level_up": gamification.level_up,
    "streak_update": gamification.streak_update,
}


@dataclass(frozen=True, slots=True)
class IngestResult:
    """Where the event went: its own channel and offset, then everything published."""

    channel: str
    offset: int
    published: tuple[tuple[str, int], ...]

    def as_dict(self) -> dict:
        return {"channel": self.channel, "offset": self.offset,
                "published": [{"channel": c, "offset": o} for c, o in self.published]}


async def ingest_event(svc, body: dict, now: datetime | None = None) -> IngestResult:
    """Validate, persist, publish one event; raise Unprocessable (422) for a bad body.

    Publications follow the commit, so a subscriber that refetches REST on a message sees the
    data behind it. ``now`` is for tests and the demo's back-dated seeding.
    """
    event = parse_event(body, now)
    out = Outcome()
    async with svc.db.transaction():
        name = await _ensure_user(svc.db, event)
        handler = HANDLERS.get(event.type)
        if handler is not None:
            await handler(svc.db, event, out, name)
        score = event.score()
        if score is not None:
            await leaderboard.set_score(svc.db, event, out, *score)
    published = []
    try:
        for channel, data in [(event.channel, _event_data(event, out)), *out.publications]:
            publication = await svc.publish(channel, data)
            published.append((channel, publication.offset))
    except PulseError:
        raise
    except Exception as exc:
        log.warning("ingest %s: stored but not published: %s", event.type, type(exc).__name__)
        raise ServiceUnavailable(f"Broker unavailable: {type(exc).__name__}") from exc
    svc.metrics.ingested_events += 1
    await _push_stats(svc, out.stats_users)
    return IngestResult(published[0][0], published[0][1], tuple(published))


async def _ensure_user(db, event: Event) -> str | None:
    """Create the event's user on first sight (``miner-<id>``); rename if asked."""
    if event.user_id is None:
        return None
    given = event.fields.display_name
    return await db.fetch_val("user_upsert", {
        "user_id": event.user_id, "display_name": given or f"miner-{event.user_id}",
        "rename": given is not None, "now": db_time(db, event.received_at)})


def _event_data(event: Event, out: Outcome) -> dict:
    if out.replace is not None:
        return out.replace
    data = {"type": event.type, **event.data}
    data.update((k, v) for k, v in out.extra.items() if k not in data)
    if event.user_id is not None:
        data["user_id"] = event.user_id
    return data


async def _push_stats(svc, user_ids: set[int]) -> None:
    pusher = dashboard.stats_pusher(svc)
    for user_id in sorted(user_ids):
        try:
            await pusher.touch(user_id)
        except Exception as exc:  # the event is in; a late stats_update is not worth a 5xx
            log.warning("stats push for user %s failed: %s", user_id, type(exc).__name__)


# -- HTTP ---------------------------------------------------------------------------------------
class IngestBody(BaseModel):
    type: str = Field(description="Event type; see the routing table in DESIGN §8")
    user_id: int | None = Field(None, ge=1, description="Whose event (created if new)")
    project_id: str | None = Field(None, description="Publish on project:{id}:events instead")
    channel: str | None = Field(None, description="Publish on this channel instead")
    data: dict = Field(description="The event's payload")


class PublishedRef(BaseModel):
    channel: str
    offset: int


class IngestAnswer(BaseModel):
    channel: str
    offset: int
    published: list[PublishedRef]


@bp.post("/api/events")
@document_request(IngestBody)
@document_response(IngestAnswer, 202)
async def post_event():
    """Ingest a domain event (X-API-Key): persist, route, publish."""
    require_api_key()
    raw = await request.get_data()
    if len(raw) > MAX_BODY_BYTES:
        raise PulseError(f"Body too large (max {MAX_BODY_BYTES} bytes)", 413)
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise Unprocessable("Body must be JSON (and nested less deeply)") from None
    result = await ingest_event(services(), body)
    return result.as_dict(), 202
