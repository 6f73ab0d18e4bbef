"""Leaderboards (seed 001 §8.4): scores, ranks with rank changes, rank and score milestones.

A score event sets the user's score in a category and re-ranks it (highest score first; ties go
to whoever got there first). Every row whose rank moved is published as ``leaderboard_update``
on ``competition`` and ``leaderboard:{category}``, and as ``rank_changed`` on the owner's
``user:{id}:rank-changes``; moving up into the top 10, top 5 or to #1 is an achievement, and so
is a score going past 100, 500 or 1,000 (the highest one passed).
``rank_change`` is ``previous_rank - rank``: positive means up.
"""
from __future__ import annotations

from .events import Event, Outcome
from .db_values import db_time
from .gamification import achievement

RANK_MILESTONES = ((1, "rank-1", "Number One", "🏆", 500), (5, "rank-top-5", "Top 5", "🥈", 200),
                   (10, "rank-top-10", "Top 10", "🏅", 100))
# Seed 001 §8.6's score milestones: (points, achievement points), highest first.
SCORE_MILESTONES = ((1000, 100), (500, 50), (100, 10))


def entry(row: dict) -> dict:
    """A leaderboard row in the REST shape."""
    rank, previous = row["rank"], row["previous_rank"]
    return {"rank": rank, "previous_rank": previous,
            "rank_change": 0 if rank is None or previous is None else previous - rank,
            "user_id": int(row["user_id"]), "display_name": row["display_name"],
            "score": float(row["score"])}


async def top(db, category: str, limit: int) -> list[dict]:
    rows = await db.fetch_all("leaderboard_top", {"category": category, "limit": limit})
    return [entry(row) for row in rows]


async def set_score(db, event: Event, out: Outcome, category: str, score: float) -> None:
    """Store the score, re-rank the category, queue the publications for every move."""
    await db.fetch_val("leaderboard_lock", {"category": category})
    before = await db.fetch_one("leaderboard_entry",
                                {"category": category, "user_id": event.user_id})
    old_rank = before["rank"] if before else None
    old_score = float(before["score"]) if before else 0.0
    await db.execute("leaderboard_score_set", {
        "category": category, "user_id": event.user_id, "score": score,
        "now": db_time(db, event.received_at)})
    moved = {int(row["user_id"]): (row["rank"], row["previous_rank"])
             for row in await db.fetch_all("leaderboard_rerank", {"category": category})}
    moved[event.user_id] = (moved.get(event.user_id, (None,))[0] or old_rank, old_rank)
    ranks = [rank for rank, _ in moved.values() if rank is not None]
    rows = await db.fetch_all("leaderboard_between", {
        "category": category, "first": min(ranks), "last": max(ranks)})
    stamp = event.received_at.isoformat(timespec="seconds")
    for row in rows:
        user_id = int(row["user_id"])
        if user_id not in moved:
            continue
        rank, previous = moved[user_id]
        moved_entry = entry({**row, "previous_rank": previous})
        # Live, an entry also carries seed 001's names for two of its fields.
        update = {**moved_entry, "category": category, "timestamp": stamp,
                  "username": moved_entry["display_name"], "metric_value": moved_entry["score"]}
        _publish_move(out, event, update)
        if previous is not None and rank < previous:
            _milestone(out, event, update)
        if user_id == event.user_id:
            _score_milestone(out, event, update, old_score)


def _publish_move(out: Outcome, event: Event, update: dict) -> None:
    user_id = update["user_id"]
    board = {"type": "leaderboard_update", **update}
    if user_id == event.user_id and event.type == "leaderboard_update":
        # The event itself is the mover's leaderboard_update: enrich it rather than repeat it.
        out.extra.update({k: v for k, v in update.items() if k not in event.data})
        if event.channel != "competition":
            out.publish("competition", board)
    else:
        out.publish("competition", board)
    out.publish(f"leaderboard:{update['category']}", board)
    if update["rank_change"] or update["previous_rank"] is None:
        out.publish(f"user:{user_id}:rank-changes", {"type": "rank_changed", **update})


def _milestone(out: Outcome, event: Event, update: dict) -> None:
    """The best threshold crossed moving up: top 10, top 5 or #1."""
    rank, previous = update["rank"], update["previous_rank"]
    for threshold, key, title, icon, points in RANK_MILESTONES:
        if rank <= threshold < previous:
            where = "#1" if threshold == 1 else f"the top {threshold}"
            achievement(out, update["user_id"], update["display_name"], event.received_at,
                        f"{key}:{update['category']}", title,
                        f"Reached {where} of the {update['category']} leaderboard", icon,
                        points, category=update["category"], rank=rank)
            return


def _score_milestone(out: Outcome, event: Event, update: dict, old_score: float) -> None:
    """The highest of 100, 500 and 1,000 points the score went past (seed 001 §8.6)."""
    score = update["score"]
    for threshold, points in SCORE_MILESTONES:
        if old_score < threshold <= score:
            achievement(out, update["user_id"], update["display_name"], event.received_at,
                        f"score-{threshold}:{update['category']}", f"{threshold:,} Points",
                        f"Scored {threshold:,} in {update['category']}", "🎯", points,
                        category=update["category"], score=score)
            return
