"""Dashboard data (seed 000 §3.5): the caller's stats, upcoming events, recent badges.

Stats are cached per user for ``settings.stats_cache_seconds`` in ``svc.cache`` (Redis in
production, memory embedded). Ingest invalidates a user's entry when one of their events lands,
and :class:`StatsPusher` then publishes a fresh ``stats_update`` to them on ``dashboard``.
"""
from __future__ import annotations

import json
import time
import uuid
from datetime import date, datetime, timedelta
from typing import Any, NamedTuple

from ..realtime.batching import Asked, IterationBatch
from .db_values import as_utc, db_date, db_json, db_time, iso, utcnow
from .events import Event, Outcome
from .gamification import level_start, level_title

MAX_EVENTS = 10
_UNREAD = object()  # refresh_stats: the caller did not read the generation
STATS_PUSH_SECONDS = 1.0
QUIET_MAX_AGE_SECONDS = 3600.0


def cache_key(user_id: int) -> str:
    return f"dashboard:stats:{user_id}"


def _percent_change(now: float, then: float) -> float:
    return round((now - then) / then * 100.0, 1) if then > 0 else 0.0


async def compute_stats(db, user_id: int, now: datetime | None = None) -> dict:
    """The seed 000 stats shape, from the database (no cache).

    ``hashrate`` is the average of the last 5 minutes of samples (the sum over online workers
    when there are none); ``hashrate_change`` compares it with the average of the 24 hours
    before, ``shares_change`` today's shares with yesterday's, both in percent (0 without a
    baseline). Days are UTC; ``best_diff_week`` covers today and the 6 days before.
    """
    return (await compute_stats_many(db, [user_id], now))[user_id]


async def compute_stats_many(db, user_ids: list[int],
                             now: datetime | None = None) -> dict[int, dict]:
    """:func:`compute_stats` of several users in one query: ``{user_id: stats}``."""
    now = as_utc(now or utcnow())
    today = now.date()
    rows = await db.fetch_all("dashboard_stats_many", {
        "user_ids": json.dumps(sorted(set(user_ids))),
        "since_5m": db_time(db, now - timedelta(minutes=5)),
        "since_24h": db_time(db, now - timedelta(hours=24, minutes=5)),
        "today": db_date(db, today),
        "yesterday": db_date(db, today - timedelta(days=1)),
        "week_start": db_date(db, today - timedelta(days=6)),
    })
    return {int(row["user_id"]): _stats_of(row) for row in rows}


def _stats_of(row: dict) -> dict:
    hashrate = row["hashrate_5m"] if row["hashrate_5m"] is not None else row["hashrate_workers"]
    hashrate = float(hashrate or 0.0)
    shares_today = int(row["shares_today"] or 0)
    best_diff_week = float(row["best_diff_week"] or 0.0)
    network_diff = float(row["network_diff"] or 0.0)
    level = int(row["level"] or 1)
    return {
        "hashrate": hashrate,
        "hashrate_change": _percent_change(hashrate, float(row["hashrate_24h"] or 0.0)),
        "shares_today": shares_today,
        "shares_change": _percent_change(shares_today, float(row["shares_yesterday"] or 0)),
        "workers_online": int(row["workers_online"] or 0),
        "workers_total": int(row["workers_total"] or 0),
        "streak": int(row["streak"] or 0),
        "best_diff_week": best_diff_week,
        "network_diff": network_diff,
        "best_diff_ratio": best_diff_week / network_diff if network_diff > 0 else 0.0,
        "level": level,
        "level_title": row["level_title"] or level_title(level),
        "xp": int(row["xp"] or 0),
        "xp_to_next": int(row["xp_to_next"] or level_start(level + 1)),
        "badges_earned": int(row["badges_earned"] or 0),
        "network_height": int(row["network_height"] or 0),
    }


class StatsBatch:
    """Stats computed for the users asked in one event-loop iteration by one query (up to
    :data:`MAX_USERS` asks each): 10,000 dashboards reconnecting at once (a deploy) need their
    snapshots in a few hundred queries, not 10,000. A failed query fails every caller of it."""

    MAX_USERS = 500
    LINGER_SECONDS = 0.004  # how long a miss may wait for others to share its query

    def __init__(self, db) -> None:
        self.db = db
        # Two queries in flight at most, the asks that arrive meanwhile batched behind them:
        # one slow query (or one waiting for a write lock) does not hold up the others.
        self._batch = IterationBatch(self._run, most=self.MAX_USERS, depth=2,
                                     linger=self.LINGER_SECONDS)

    async def compute(self, user_id: int) -> dict:
        return await self._batch.ask(user_id)

    async def _run(self, asked: Asked) -> None:
        found = await compute_stats_many(self.db, [user for user, _future in asked])
        for user, future in asked:
            if not future.done():
                future.set_result(found[user])


def stats_batch(svc) -> StatsBatch:
    batch = getattr(svc, "stats_batch", None)
    if batch is None:
        batch = svc.stats_batch = StatsBatch(svc.db)
    return batch


async def get_stats(svc, user_id: int) -> dict:
    """Cached stats: what ``GET /dashboard/stats`` and the ``dashboard`` snapshot answer."""
    entry, generation = await svc.cache.get_many([cache_key(user_id), _generation_key(user_id)])
    if entry is not None and entry.get("gen") == generation:
        stats = entry["stats"]
        stats_pusher(svc).note(user_id, stats)
        return stats
    return await refresh_stats(svc, user_id, generation)


async def network_marker(db) -> tuple[float, int]:
    """The network figures as ``compute_stats`` reports them."""
    row = await db.fetch_one("network_state", {})
    return float(row["network_diff"] or 0.0), int(row["network_height"] or 0)


class Basis(NamedTuple):
    """What a user's stats can drift with while no event of theirs lands: the UTC day (shares
    today/yesterday, the week's best), the network, and — unless the user is quiet (no hashrate
    now, no change against the last 24 h: no samples in the windows) — the clock itself."""

    day: date
    network: tuple[float, int]
    quiet: bool
    at: float  # time.monotonic() when computed

    @classmethod
    def of(cls, stats: dict) -> "Basis":
        return cls(utcnow().date(), (stats["network_diff"], stats["network_height"]),
                   stats["hashrate"] == 0 and stats["hashrate_change"] == 0, time.monotonic())


async def refresh_stats(svc, user_id: int, generation: Any = _UNREAD) -> dict:
    """Compute (batched with the other users asked at the same time) and cache. The entry
    carries the user's generation as read *before* computing (by the caller, or here), so an
    invalidation that lands meanwhile makes it a miss instead of 10 s of stale stats."""
    if generation is _UNREAD:
        generation = await svc.cache.get(_generation_key(user_id))
    stats = await stats_batch(svc).compute(user_id)
    stats_pusher(svc).note(user_id, stats)
    await svc.cache.set(cache_key(user_id), {"gen": generation, "stats": stats},
                        svc.settings.stats_cache_seconds)
    return stats


async def invalidate_stats(svc, user_id: int) -> None:
    await svc.cache.set(_generation_key(user_id), uuid.uuid4().hex,
                        max(60.0, 6 * svc.settings.stats_cache_seconds))


def _generation_key(user_id: int) -> str:
    return f"dashboard:stats-gen:{user_id}"


class StatsPusher:
    """``stats_update`` to one user on ``dashboard``: at most one per user per second.

    :meth:`touch` (ingest: the user's stats changed) pushes at once unless the user had one in
    the last second; then the push is left to :meth:`flush`, which a background job calls a few
    times a second, so the last change always arrives. :meth:`refresh` (the aggregator) pushes
    only when the stats differ from the last ones sent.
    """

    def __init__(self, svc, min_interval: float = STATS_PUSH_SECONDS) -> None:
        self._svc = svc
        self._min_interval = min_interval
        self._sent_at: dict[int, float] = {}
        self._sent: dict[int, dict] = {}
        self._pending: set[int] = set()
        self._basis: dict[int, Basis] = {}
        # The users whose basis is quiet, by the (day, network) it was computed under: what
        # :meth:`drifting` leaves out without looking at each of them.
        self._settled: dict[tuple, set[int]] = {}
        self.members: tuple[int, set[int]] | None = None  # tasks._dashboard_users' last walk

    def note(self, user_id: int, stats: dict) -> None:
        """``stats`` were just computed (or read fresh from the cache) for ``user_id``."""
        basis = Basis.of(stats)
        self._unsettle(user_id)
        self._basis[user_id] = basis
        if basis.quiet:
            self._settled.setdefault((basis.day, basis.network), set()).add(user_id)

    def _unsettle(self, user_id: int) -> None:
        old = self._basis.get(user_id)
        if old is not None and old.quiet:
            marker = (old.day, old.network)
            settled = self._settled.get(marker)
            if settled is not None:
                settled.discard(user_id)
                if not settled:
                    del self._settled[marker]

    def drifting(self, user_ids: set[int], today, network: tuple[float, int]) -> set[int]:
        """The users of ``user_ids`` that :meth:`may_drift`, found with set operations: the
        aggregator asks it of every dashboard every 10 s, and 10,000 idle ones should cost it
        a few milliseconds, not a call each (docs/scaling.md, "Idle connections")."""
        found = user_ids - self._settled.get((today, network), set())
        cutoff = time.monotonic() - QUIET_MAX_AGE_SECONDS
        found.update(u for u in [u for u, b in self._basis.items() if b.at < cutoff]
                     if u in user_ids)
        return found

    def may_drift(self, user_id: int, today, network: tuple[float, int]) -> bool:
        """Could the user's stats differ from the last ones computed, with no event of theirs?
        False only for a quiet user computed today, with the current network figures, less
        than ``QUIET_MAX_AGE_SECONDS`` ago (the safety net for what no rule here foresaw)."""
        basis = self._basis.get(user_id)
        return (basis is None or not basis.quiet or basis.day != today
                or basis.network != network
                or time.monotonic() - basis.at > QUIET_MAX_AGE_SECONDS)

    async def touch(self, user_id: int) -> None:
        await invalidate_stats(self._svc, user_id)
        if time.monotonic() - self._sent_at.get(user_id, -1e9) >= self._min_interval:
            self._pending.discard(user_id)
            await self._push(user_id, await refresh_stats(self._svc, user_id))
        else:
            self._pending.add(user_id)

    async def flush(self) -> int:
        now = time.monotonic()
        due = [uid for uid in self._pending
               if now - self._sent_at.get(uid, -1e9) >= self._min_interval]
        for user_id in due:
            self._pending.discard(user_id)
            await self._push(user_id, await refresh_stats(self._svc, user_id))
        return len(due)

    async def refresh(self, user_id: int) -> bool:
        stats = await refresh_stats(self._svc, user_id)
        if stats == self._sent.get(user_id):
            return False
        if time.monotonic() - self._sent_at.get(user_id, -1e9) < self._min_interval:
            self._pending.add(user_id)  # pushed a moment ago: the flush sends this one
        else:
            await self._push(user_id, stats)
        return True

    def forget_except(self, user_ids: set[int]) -> None:
        """Drop what we remember about users who are neither connected nor pending."""
        keep = user_ids | self._pending
        for user_id in self._basis.keys() - keep:
            self._unsettle(user_id)
        for table in (self._sent, self._sent_at, self._basis):
            for user_id in table.keys() - keep:
                del table[user_id]

    async def _push(self, user_id: int, stats: dict) -> None:
        self._sent_at[user_id] = time.monotonic()
        self._sent[user_id] = stats
        await self._svc.publish("dashboard", {"type": "stats_update", "user_id": user_id,
                                              **stats})


def stats_pusher(svc) -> StatsPusher:
    """The service's pusher (made by ``api_dashboard.install``; made here if it was not)."""
    pusher = getattr(svc, "stats_pusher", None)
    if pusher is None:
        pusher = svc.stats_pusher = StatsPusher(svc)
    return pusher


async def upcoming_events(db, user_id: int, now: datetime | None = None) -> list[dict]:
    rows = await db.fetch_all("upcoming_events_for_user", {
        "user_id": user_id, "now": db_time(db, now or utcnow()), "limit": MAX_EVENTS})
    return [{"id": row["id"], "type": row["event_type"], "title": row["title"],
             "description": row["description"], "ends_at": iso(row["ends_at"]),
             "action": ({"label": row["action_label"], "href": row["action_href"]}
                        if row["action_label"] else None)} for row in rows]


async def recent_badges(db, user_id: int, limit: int) -> list[dict]:
    rows = await db.fetch_all("recent_badges", {"user_id": user_id, "limit": limit})
    return [{"id": row["id"], "badge_id": row["id"], "name": row["name"],
             "description": row["description"], "icon": row["icon"], "rarity": row["rarity"],
             "earned_at": iso(row["earned_at"])} for row in rows]


async def event_reminder(db, event: Event, out: Outcome, name: str | None) -> None:
    """Create or update an upcoming event; aimed at ``user_id`` when one is given."""
    fields = event.fields
    event_id = fields.id or f"evt-{uuid.uuid4().hex[:20]}"
    action = fields.action
    await db.execute("upcoming_event_upsert", {
        "id": event_id, "event_type": fields.event_type, "title": fields.title,
        "description": fields.description,
        "starts_at": db_time(db, fields.starts_at) if fields.starts_at else None,
        "ends_at": db_time(db, fields.ends_at),
        "action_label": action.label if action else None,
        "action_href": action.href if action else None,
        "target_user_id": event.user_id, "metadata": db_json(fields.metadata),
        "now": db_time(db, event.received_at)})
    # Live as over REST: the moments in ISO 8601 UTC whatever form they came in, the kind, the
    # description and action even when empty.
    data = {"type": event.type, **event.data, "id": event_id, "title": fields.title,
            "description": fields.description, "event_type": fields.event_type,
            "ends_at": iso(fields.ends_at),
            "action": {"label": action.label, "href": action.href} if action else None}
    if fields.starts_at is not None:
        data["starts_at"] = iso(fields.starts_at)
    if event.user_id is not None:
        data["user_id"] = event.user_id
    out.replace = data
