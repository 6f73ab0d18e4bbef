"""Background jobs (``svc.background``): each ``async def job(svc)`` loops until cancelled.

* :func:`stats_aggregator`: every 10 s, fresh stats for the users with a ``dashboard``
  subscription on this process whose stats may have drifted; a ``stats_update`` to those whose
  stats changed (seed 000's "Stats Aggregator, 10s refresh cycle").
* :func:`stats_flusher`: sends the ``stats_update`` ingest held back by the one-per-second limit.
* :func:`pruner`: keeps the newest ``settings.feed_keep`` global feed items, a day of hashrate
  samples and a day of finished events.

A failing cycle is logged and retried next cycle; cancellation (the app stopping) ends a job.
"""
from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from . import feed
from .stats import network_marker, stats_pusher
from .db_values import db_time, utcnow
from .ingest import KEY_KEEP

log = logging.getLogger("pulse.tasks")

AGGREGATE_SECONDS = 10.0
FLUSH_SECONDS = 0.2
PRUNE_SECONDS = 60.0
SAMPLES_KEEP = timedelta(hours=25)
EVENTS_KEEP = timedelta(days=1)


async def prune_feed(db, keep: int) -> int:
    """Delete all but the newest ``keep`` global feed items; return how many were deleted."""
    return await feed.prune(db, keep)


async def prune_once(svc) -> int:
    db = svc.db
    removed = await prune_feed(db, svc.settings.feed_keep)
    now = utcnow()
    await db.execute("hashrate_samples_prune", {"before": db_time(db, now - SAMPLES_KEEP)})
    await db.execute("upcoming_events_prune", {"before": db_time(db, now - EVENTS_KEEP)})
    await db.execute("ingest_keys_prune", {"before": db_time(db, now - KEY_KEEP)})
    return removed


# Users refreshed per 10 s cycle at most, round-robin. Ingest already pushes stats for every
# user an event touches; the aggregator catches drift without an event: time windows moving
# over a user's hashrate samples, the UTC day rolling over, the network figures changing. A
# quiet user (no samples in the windows) computed today with the current network figures
# cannot drift, so is skipped: 10,000 idle dashboards cost two queries per cycle.
AGGREGATE_PER_CYCLE = 500
_cursor: dict[int, int] = {}  # id(svc) -> last user id refreshed


async def aggregate_once(svc, limit: int = AGGREGATE_PER_CYCLE) -> int:
    """Refresh up to ``limit`` local ``dashboard`` subscribers whose stats may have drifted,
    continuing where the last cycle stopped; return how many changed."""
    pusher = stats_pusher(svc)
    users = _dashboard_users(svc)
    network = await network_marker(svc.db)
    today = utcnow().date()
    ordered = sorted(pusher.drifting(users, today, network))
    after = _cursor.get(id(svc), 0)
    batch = [u for u in ordered if u > after][:limit]
    if len(batch) < limit:  # wrap around
        batch += [u for u in ordered if u <= after][:limit - len(batch)]
    changed = 0
    for user_id in batch:
        changed += await pusher.refresh(user_id)
    if batch:
        _cursor[id(svc)] = batch[-1]
    # Users who subscribed while this cycle awaited are remembered too (not just ``users``).
    pusher.forget_except(_dashboard_users(svc))
    return changed


def _dashboard_users(svc) -> set[int]:
    """The users with a ``dashboard`` subscription here (the set a cycle had, while no
    subscription began or ended since: 10,000 idle dashboards are not walked every 10 s)."""
    hub = svc.hub
    changes = getattr(hub, "changes", None)
    pusher = stats_pusher(svc)
    known = getattr(pusher, "members", None)  # (hub.changes, users) of the last walk
    if known is not None and changes is not None and known[0] == changes:
        return known[1]
    users = {conn.user_id for conn in hub.subscribers("dashboard")}
    if changes is not None:
        pusher.members = (changes, users)
    return users


async def uninterrupted(coro, grace: float = 5.0):
    """Await ``coro`` in a task of its own; if we are cancelled meanwhile, let it finish (for up
    to ``grace`` seconds), then re-raise.

    Jobs are cancelled when the app stops; a database call cut in half can leave its connection
    unclosed (``databases`` with aiosqlite), so a job stops between units of work, not inside one.
    """
    task = asyncio.ensure_future(coro)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        done, _ = await asyncio.wait({task}, timeout=grace)
        if not done:
            task.cancel()
        elif not task.cancelled():
            task.exception()  # retrieved: the job is stopping either way
        raise


async def _every(svc, seconds: float, cycle, what: str) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await uninterrupted(cycle(svc))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the next cycle tries again
            log.warning("%s failed: %s: %s", what, type(exc).__name__, exc)


async def stats_aggregator(svc, interval: float = AGGREGATE_SECONDS) -> None:
    await _every(svc, interval, aggregate_once, "stats aggregation")


async def stats_flusher(svc, interval: float = FLUSH_SECONDS) -> None:
    await _every(svc, interval, lambda s: stats_pusher(s).flush(), "stats flush")


async def pruner(svc, interval: float = PRUNE_SECONDS) -> None:
    await _every(svc, interval, prune_once, "pruning")
