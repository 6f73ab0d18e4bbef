"""``POST /api/events`` and its in-process twin :func:`ingest_event` (DESIGN §8).

One path for every producer (HTTP, the Python API, the demo):

1. :func:`~quart_app.events.parse_event` validates the whole body: a bad one is a 422 and
   nothing is written or published.
2. One transaction: the user is created on first sight, the type's handler writes its tables,
   a score moves the leaderboard. Every publication is encoded before the commit: one that
   cannot be (a value no browser could parse) is a 422 that rolls the transaction back.
3. After the commit: the event is published on its channel (``{"type": EVENT, **data,
   "user_id": …}``), then what it caused, in order (feed items, leaderboard moves, rank changes,
   achievements, level-ups).
4. The stats of every user it touched are invalidated and pushed (``stats_update``).

With an ``Idempotency-Key`` header, step 2 also claims the key and records what step 3 has to
publish; step 3 records how far it got. A retry with the same key and body then gets the first
answer (202, ``Idempotency-Replayed: true``), or finishes a publishing that failed (a 503 after
the commit), and never stores or publishes the event twice.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, Field
from quart import Blueprint
from quart_schema import document_request, document_response

from . import stats, feed, gamification, leaderboard, mining
from ..realtime.broker import encode_json
from .db_values import db_time, utcnow
from ..errors import PulseError, ServiceUnavailable, Unprocessable
from .events import Event, Outcome, parse_event
from ..web import idempotency_key, json_body, require_api_key, services

log = logging.getLogger("pulse.ingest")
bp = Blueprint("ingest", __name__)

MAX_BODY_BYTES = 64 * 1024
# Idempotency keys (what one may be: quart_app/web.py): how long one is remembered
# (tasks.prune_once), and when an attempt that never finished (its process died mid-publish)
# may be taken over by a retry.
KEY_KEEP = timedelta(hours=24)
KEY_STALE = timedelta(seconds=30)

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
    "event_reminder": stats.event_reminder,
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
    replayed: bool = False  # the stored answer to an earlier request with the same key

    def as_dict(self) -> dict:
        return {"channel": self.channel, "offset": self.offset,
                "published": [{"channel": c, "offset": o} for c, o in self.published]}

    @classmethod
    def replay_of(cls, answer: dict) -> "IngestResult":
        """The stored :meth:`as_dict` of an earlier request with the same key."""
        return cls(answer["channel"], answer["offset"],
                   tuple((p["channel"], p["offset"]) for p in answer["published"]), replayed=True)


async def ingest_event(svc, body: dict, now: datetime | None = None,
                       key: str | None = None) -> IngestResult:
    """Validate, persist, publish one event; raise Unprocessable (422) for a bad body.

    Publications follow the commit, so a subscriber that refetches REST on a message sees the
    data behind it. ``now`` is for tests and the demo's back-dated seeding. With an idempotency
    ``key``, a repeat of the same body is answered from the first attempt (or finishes its
    publishing, if that failed) instead of storing and publishing the event again.
    """
    event = parse_event(body, now)
    db = svc.db
    out = Outcome()
    body_hash = _body_hash(body) if key is not None else ""
    async with db.transaction():
        if key is not None and await db.fetch_val("ingest_key_claim", {
                "key": key, "body_hash": body_hash, "now": db_time(db, utcnow())}) is None:
            claimed = False
        else:
            claimed = True
            name = await _ensure_user(db, event)
            handler = HANDLERS.get(event.type)
            if handler is not None:
                await handler(db, event, out, name)
            score = event.score()
            if score is not None:
                await leaderboard.set_score(db, event, out, *score)
            plan = [(event.channel, _event_data(event, out)), *out.publications]
            _check_publishable(plan)
            if key is not None:
                await db.execute("ingest_key_plan", {"key": key, "plan": encode_json(
                    {"publish": plan, "stats": sorted(out.stats_users)})})
    if not claimed:
        return await _repeat(svc, key, body_hash)
    return await _publish(svc, key, plan, [], out.stats_users)


async def _publish(svc, key: str | None, plan: list, published: list,
                   stats_users) -> IngestResult:
    """Publish what ``plan`` holds past the ``published`` ones; record progress under ``key``."""
    try:
        for channel, data in plan[len(published):]:
            publication = await svc.publish(channel, data)
            published.append((channel, publication.offset))
    except Exception as exc:
        await _record(svc, key, "failed", published, None)
        if isinstance(exc, PulseError):
            raise
        log.warning("ingest: stored but not published: %s", type(exc).__name__)
        raise ServiceUnavailable(f"Broker unavailable: {type(exc).__name__}") from exc
    result = IngestResult(published[0][0], published[0][1], tuple(published))
    await _record(svc, key, "done", published, result)
    svc.metrics.ingested_events += 1
    await _push_stats(svc, set(stats_users))
    return result


async def _record(svc, key: str | None, state: str, published: list,
                  result: IngestResult | None) -> None:
    """Best effort: a key left "publishing" is retaken by a retry once it is stale."""
    if key is None:
        return
    db = svc.db
    try:
        await db.execute("ingest_key_progress", {
            "key": key, "state": state, "published": encode_json(published),
            "answer": encode_json(result.as_dict()) if result is not None else None,
            "now": db_time(db, utcnow())})
    except Exception as exc:
        log.warning("ingest: idempotency key not updated (%s): %s", state, type(exc).__name__)


async def _repeat(svc, key: str, body_hash: str) -> IngestResult:
    """A request whose key was seen: the stored answer, or the rest of a failed attempt."""
    db = svc.db
    row = await db.fetch_one("ingest_key_get", {"key": key})
    if row is None:  # pruned between the claim and now: vanishingly rare, and safe to retry
        raise PulseError("Idempotency-Key is being released; retry", 409)
    if row["body_hash"] != body_hash:
        raise Unprocessable("Idempotency-Key was already used with a different body")
    if row["state"] == "done" and row["answer"]:
        return IngestResult.replay_of(json.loads(row["answer"]))
    now = utcnow()
    retaken = await db.fetch_val("ingest_key_retake", {
        "key": key, "now": db_time(db, now), "stale_before": db_time(db, now - KEY_STALE)})
    if retaken is None:
        raise PulseError("A request with this Idempotency-Key is in progress; retry later", 409)
    row = await db.fetch_one("ingest_key_get", {"key": key})  # as the last attempt left it
    plan = json.loads(row["plan"])
    published = [tuple(p) for p in json.loads(row["published"])]
    return await _publish(svc, key, [tuple(p) for p in plan["publish"]], published,
                          plan["stats"])


def _check_publishable(plan: list[tuple[str, dict]]) -> None:
    """Encode every publication now, inside the transaction: a failure after the commit would
    store the event, answer 503, and store it again on every retry (issue 12)."""
    for channel, data in plan:
        try:
            encode_json(data)
        except (TypeError, ValueError, RecursionError):
            raise Unprocessable(
                f"The event cannot be published on {channel}: a value is not JSON a browser "
                "can parse (NaN, Infinity or a lone surrogate)") from None


def _body_hash(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"),
                                     default=str).encode()).hexdigest()


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
    pusher = stats.stats_pusher(svc)
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
    key = idempotency_key()
    body = await json_body(MAX_BODY_BYTES)
    result = await ingest_event(services(), body, key=key)
    headers = {"Idempotency-Replayed": "true"} if result.replayed else {}
    return result.as_dict(), 202, headers
