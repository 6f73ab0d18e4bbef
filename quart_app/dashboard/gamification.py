"""XP and levels, streaks, badges, and the milestones they unlock (seed 001 §8.6).

XP is cumulative; ``xp_to_next`` is the total XP at which the next level starts. A milestone
becomes an ``achievement_unlocked`` publication on ``user:{id}:achievements`` (the owner's) and
``activity:achievements`` (everyone's).
"""
from __future__ import annotations

from datetime import datetime

from . import feed
from .db_values import as_utc, db_time
from .events import MAX_LEVEL, MAX_XP, Event, Outcome

# (title, total XP at which the level starts), level 1 first; beyond the table XP doubles, up
# to MAX_LEVEL (events.py), where XP (capped at MAX_XP) stops counting.
LEVELS = (
    ("Nocoiner", 0), ("Curious Cat", 100), ("Hash Pupil", 300), ("Block Watcher", 700),
    ("Share Hunter", 1_500), ("Diff Chaser", 3_000), ("Solo Miner", 6_000),
    ("Hash Lord", 12_000), ("Satoshi's Apprentice", 25_000), ("Whale", 50_000),
)
STREAK_MILESTONES = {7: ("Week Warrior", "🔥", 50), 30: ("Monthly Miner", "🔥", 200),
                     100: ("Centurion", "💯", 1000)}
BADGES = {
    "first-share": ("First Share", "Submitted a first share", "⛏️", "common"),
    "hashrate-1ph": ("Petahash Club", "Reached 1 PH/s", "⚡", "rare"),
    "block-finder": ("Block Finder", "Found a block", "🧱", "legendary"),
    "diff-hunter": ("Diff Hunter", "Best difficulty over 1T", "🎯", "epic"),
    "streak-7": ("On Fire", "Mined seven days in a row", "🔥", "uncommon"),
    "night-owl": ("Night Owl", "Shares at 3 a.m.", "🦉", "common"),
    "shares-10k": ("Ten Thousand", "Submitted 10,000 shares", "🔟", "uncommon"),
    "rig-farm": ("Rig Farm", "Ran five workers at once", "🏭", "rare"),
    "comeback": ("Comeback", "Back online after a week away", "🔄", "common"),
    "lottery-win": ("Lucky Ticket", "Won the weekly lottery", "🎟️", "epic"),
    "world-cup": ("World Cup Hero", "Scored for your country", "🏆", "rare"),
    "early-bird": ("Early Bird", "Joined in the pool's first week", "🐣", "uncommon"),
}


def level_start(level: int) -> int:
    if level <= len(LEVELS):
        return LEVELS[max(level, 1) - 1][1]
    return LEVELS[-1][1] * 2 ** (level - len(LEVELS))


def level_title(level: int) -> str:
    return LEVELS[min(max(level, 1), len(LEVELS)) - 1][0]


def level_for_xp(xp: int) -> int:
    level = 1
    while level < MAX_LEVEL and level_start(level + 1) <= xp:
        level += 1
    return level


def achievement(out: Outcome, user_id: int, name: str | None, now: datetime, key: str,
                title: str, description: str, icon: str, points: int, **extra) -> None:
    data = {"type": "achievement_unlocked", "user_id": user_id, "display_name": name,
            "achievement": key, "title": title, "description": description, "icon": icon,
            "points": points, "timestamp": now.isoformat(timespec="seconds"), **extra}
    out.publish(f"user:{user_id}:achievements", data)
    out.publish("activity:achievements", data)


async def _level_reached(db, event: Event, out: Outcome, name: str | None, level: int,
                         title: str) -> None:
    """Feed item and achievement for a new level."""
    text = f"{name} reached level {level} ({title})"
    await feed.post(db, event, out, "level_up", text,
                    metadata={"user_id": event.user_id, "level": level})
    achievement(out, event.user_id, name, event.received_at, f"level-{level}",
                f"Level {level}", f"Reached level {level}: {title}", "⬆️", 10 * level)


async def _set_level(db, user_id: int, level: int, title: str) -> None:
    await db.execute("gamification_set_level", {
        "user_id": user_id, "level": level, "level_title": title,
        "xp_to_next": level_start(level + 1)})


async def xp_gained(db, event: Event, out: Outcome, name: str | None) -> None:
    """Add XP; crossing a threshold is a level-up (published as ``level_up``)."""
    row = await db.fetch_one("gamification_add_xp", {
        "user_id": event.user_id, "amount": event.fields.amount, "max_xp": MAX_XP})
    level, xp = int(row["level"]), int(row["xp"])
    reached = level_for_xp(xp)
    if reached > level:
        title = level_title(reached)
        await _set_level(db, event.user_id, reached, title)
        out.publish("gamification", {"type": "level_up", "user_id": event.user_id,
                                     "level": reached, "level_title": title, "xp": xp})
        await _level_reached(db, event, out, name, reached, title)
    out.stats_users.add(event.user_id)


async def level_up(db, event: Event, out: Outcome, name: str | None) -> None:
    level = event.fields.level
    title = event.fields.level_title or level_title(level)
    await _set_level(db, event.user_id, level, title)
    out.extra.setdefault("level_title", title)
    await _level_reached(db, event, out, name, level, title)
    out.stats_users.add(event.user_id)


async def streak_update(db, event: Event, out: Outcome, name: str | None) -> None:
    """Set the streak; crossing 7, 30 or 100 days unlocks the highest milestone crossed."""
    before = await db.fetch_one("gamification_get", {"user_id": event.user_id})
    old = int(before["streak"]) if before else 0
    new = event.fields.streak
    await db.execute("gamification_set_streak", {
        "user_id": event.user_id, "streak": new, "now": db_time(db, event.received_at)})
    crossed = [days for days in STREAK_MILESTONES if old < days <= new]
    if crossed:
        days = max(crossed)
        title, icon, points = STREAK_MILESTONES[days]
        achievement(out, event.user_id, name, event.received_at, f"streak-{days}", title,
                    f"Mined {days} days in a row", icon, points, streak=new)
    out.stats_users.add(event.user_id)


async def badge_earned(db, event: Event, out: Outcome, name: str | None) -> None:
    """Award the badge once; the first time is a feed item."""
    badge = await _badge(db, event.fields)
    out.extra.update({k: v for k, v in badge.items() if k not in event.data and k != "id"})
    earned_at = as_utc(event.fields.earned_at) if event.fields.earned_at else event.received_at
    row = await db.fetch_one("user_badge_insert", {
        "user_id": event.user_id, "badge_id": badge["id"],
        "earned_at": db_time(db, min(earned_at, event.received_at))})
    if row is None:
        return  # already had it: nothing new to tell the feed
    text = f"{name} earned the {badge['name']} badge"
    await feed.post(db, event, out, "badge_earned", text, badge["description"], {
        "user_id": event.user_id, "badge_id": badge["id"], "icon": badge["icon"],
        "rarity": badge["rarity"]})
    out.stats_users.add(event.user_id)


async def _badge(db, fields) -> dict:
    """The badge row, created or updated from the event, the catalogue, or its id."""
    known = await db.fetch_one("badge_get", {"badge_id": fields.badge_id})
    name, description, icon, rarity = BADGES.get(
        fields.badge_id, (fields.badge_id.replace("-", " ").replace("_", " ").title(),
                          None, "🏅", "common"))
    if known:
        name, description, icon, rarity = (known["name"], known["description"], known["icon"],
                                           known["rarity"])
    badge = {"id": fields.badge_id, "name": fields.name or name,
             "description": fields.description or description, "icon": fields.icon or icon,
             "rarity": fields.rarity or rarity}
    if known is None or any(badge[k] != known[k] for k in badge):
        await db.execute("badge_upsert", {"badge_id": badge["id"], "name": badge["name"],
                                          "description": badge["description"],
                                          "icon": badge["icon"], "rarity": badge["rarity"]})
    return badge
