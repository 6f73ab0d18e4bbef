"""Domain events: the routing table (DESIGN §8), validation of an ingest body, and the records
the ingest handlers share.

:func:`parse_event` validates *everything* a handler will rely on before ingest touches the
database or the broker, so a bad event is a 422 with nothing persisted and nothing published.
The data a producer sends is published as given (plus derived fields); the validated model is
what the handlers persist. Before any of it, :func:`~quart_app.jsoncheck.json_problem` refuses
what JSON text can carry but PostgreSQL, UTF-8 or a browser cannot (issue 12), and the models
bound every figure whose derived values (sums, ratios, SQL additions) could otherwise overflow.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, StringConstraints,
                      ValidationError)

from ..realtime import namespaces as channels
from .db_values import as_utc, utcnow
from ..errors import Unprocessable
from ..jsoncheck import MAX_DEPTH, json_problem  # noqa: F401 - MAX_DEPTH: part of this API

# Seed 000 §3.5.4, plus `new_miner` (a feed-worthy event, DESIGN §8) on `dashboard`.
ROUTES: dict[str, str] = {
    "share_submitted": "mining",
    "worker_status": "mining",
    "hashrate_update": "mining",
    "best_diff": "mining",
    "stats_update": "dashboard",
    "feed_item": "dashboard",
    "event_reminder": "dashboard",
    "block_found": "dashboard",
    "new_miner": "dashboard",
    "badge_earned": "gamification",
    "xp_gained": "gamification",
    "level_up": "gamification",
    "streak_update": "gamification",
    "leaderboard_update": "competition",
    "match_update": "competition",
    "league_update": "competition",
}

MAX_USER_ID = 2**63 - 1
SEGMENT = re.compile(r"[A-Za-z0-9_-]{1,64}")
BODY_FIELDS = frozenset({"type", "user_id", "project_id", "channel", "data"})

# Bounds (issue 12); the JSON-wide ones (BIGINT integers, depth) are in quart_app/jsoncheck.py.
# Mining figures (hashrate, difficulty, reward): 0 or 1e-12..1e30, so sums over workers, ratios
# and percentages stay finite. Heights: exact in a double and in JavaScript. Levels:
# level_start(MAX_LEVEL + 1) fits BIGINT. XP: the SQL addition is capped here, far from
# BIGINT's end, and JavaScript reads it exactly.
MIN_FIGURE, MAX_FIGURE = 1e-12, 1e30
MAX_HEIGHT = 2**53 - 1
MAX_LEVEL = 50
MAX_XP = 2**53 - 1


def _figure(value: float) -> float:
    if value != 0 and not MIN_FIGURE <= value <= MAX_FIGURE:
        raise ValueError(f"must be 0 or between {MIN_FIGURE:g} and {MAX_FIGURE:g}")
    return value


def _utc(moment: datetime) -> datetime:
    """Aware UTC (naive is UTC already); an offset that pushes it past year 1 or 9999 is a 422,
    not an ``OverflowError`` in the handler."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    try:
        return moment.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError("out of range: years 1 to 9999 in UTC") from None


Segment = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Kind = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,32}$")]  # VARCHAR(32)
Name = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Text = Annotated[str, StringConstraints(min_length=1, max_length=500)]
Score = Annotated[float, Field(ge=0)]
Figure = Annotated[float, Field(ge=0), AfterValidator(_figure)]
Height = Annotated[int, Field(ge=0, le=MAX_HEIGHT)]
Level = Annotated[int, Field(ge=1, le=MAX_LEVEL)]
Moment = Annotated[datetime, Field(strict=False), AfterValidator(_utc)]  # ISO 8601 from JSON


class _Data(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True, allow_inf_nan=False)
    display_name: Name | None = None


class ShareSubmitted(_Data):
    worker: Name | None = None
    shares: int = Field(1, ge=1, le=1_000_000)
    difficulty: Figure = 0.0


class WorkerStatus(_Data):
    worker: Name
    status: Literal["online", "offline"]


class HashrateUpdate(_Data):
    hashrate: Figure
    worker: Name | None = None


class BestDiff(_Data):
    difficulty: Figure
    worker: Name | None = None


class BlockFound(_Data):
    height: Height
    network_diff: Figure | None = None
    reward: Figure | None = None


Count = Annotated[int, Field(ge=0)]


class StatsUpdate(_Data):
    """A producer's stats for a dashboard: the fields of seed 000's ``get_stats`` it sends must
    have their types there (others, e.g. a session's ``wpm``, pass as they are)."""

    hashrate: Figure | None = None
    hashrate_change: float | None = None
    shares_today: Count | None = None
    shares_change: float | None = None
    workers_online: Count | None = None
    workers_total: Count | None = None
    streak: Count | None = None
    best_diff_week: Figure | None = None
    network_diff: Figure | None = None
    best_diff_ratio: Annotated[float, Field(ge=0, le=MAX_FIGURE)] | None = None
    level: Level | None = None
    level_title: Name | None = None
    xp: Count | None = None
    xp_to_next: Count | None = None
    badges_earned: Count | None = None
    network_height: Height | None = None


class FeedItemData(_Data):
    text: Text
    description: Text | None = None
    feed_type: Kind = "announcement"
    metadata: dict = Field(default_factory=dict)


class Action(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    label: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    href: Annotated[str, StringConstraints(min_length=1, max_length=256)]


class EventReminder(_Data):
    title: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    ends_at: Moment
    id: Segment | None = None
    event_type: Kind = "reminder"
    description: Text | None = None
    starts_at: Moment | None = None
    action: Action | None = None
    metadata: dict = Field(default_factory=dict)


class BadgeEarned(_Data):
    badge_id: Segment
    name: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None
    description: Text | None = None
    icon: Annotated[str, StringConstraints(min_length=1, max_length=16)] | None = None
    rarity: Literal["common", "uncommon", "rare", "epic", "legendary"] | None = None
    earned_at: Moment | None = None


class XpGained(_Data):
    amount: int = Field(ge=1, le=1_000_000_000)


class LevelUp(_Data):
    level: Level
    level_title: Name | None = None


class StreakUpdate(_Data):
    streak: int = Field(ge=0, le=100_000)


class LeaderboardUpdate(_Data):
    category: Segment
    score: Score


class MatchUpdate(_Data):
    result: Text | None = None
    text: Text | None = None


class LeagueUpdate(_Data):
    text: Text | None = None


MODELS: dict[str, type[_Data]] = {
    "share_submitted": ShareSubmitted, "worker_status": WorkerStatus,
    "hashrate_update": HashrateUpdate, "best_diff": BestDiff, "stats_update": StatsUpdate,
    "feed_item": FeedItemData, "event_reminder": EventReminder, "block_found": BlockFound,
    "new_miner": _Data, "badge_earned": BadgeEarned, "xp_gained": XpGained, "level_up": LevelUp,
    "streak_update": StreakUpdate, "leaderboard_update": LeaderboardUpdate,
    "match_update": MatchUpdate, "league_update": LeagueUpdate,
}
# Events about one miner: they need to know whose.
NEEDS_USER = frozenset(ROUTES) - {"stats_update", "feed_item", "event_reminder", "block_found",
                                  "match_update", "league_update"}


@dataclass(frozen=True, slots=True)
class Event:
    """A validated ingest body."""

    type: str
    user_id: int | None
    channel: str          # where the event itself is published
    data: dict            # as the producer sent it (JSON-safe, no `type`/`user_id`)
    fields: Any           # the validated model of `data` the handlers persist
    received_at: datetime

    def score(self) -> tuple[str, float] | None:
        """``(category, score)`` if this event moves a leaderboard."""
        category, score = self.data.get("category"), self.data.get("score")
        if self.user_id is None or not isinstance(category, str):
            return None
        if isinstance(score, bool) or not isinstance(score, (int, float)):
            return None
        if not SEGMENT.fullmatch(category) or not math.isfinite(score) or score < 0:
            return None
        return category, float(score)


@dataclass(slots=True)
class Outcome:
    """What persisting an event produced, published only after the transaction commits."""

    extra: dict = field(default_factory=dict)           # fields added to the event's own data
    replace: dict | None = None                         # or its data replaced outright
    publications: list[tuple[str, dict]] = field(default_factory=list)
    stats_users: set[int] = field(default_factory=set)  # whose dashboard stats changed

    def publish(self, channel: str, data: dict) -> None:
        self.publications.append((channel, data))


def parse_event(body: Any, now: datetime | None = None) -> Event:
    """Validate an ingest body; raise :class:`Unprocessable` naming the first problem."""
    problem = json_problem(body)
    if problem is not None:
        raise Unprocessable(problem)
    if not isinstance(body, dict):
        raise Unprocessable("Body must be a JSON object")
    unknown = sorted(set(body) - BODY_FIELDS)
    if unknown:
        raise Unprocessable(f"Unknown field(s): {', '.join(map(str, unknown))}")
    kind = body.get("type")
    if not isinstance(kind, str) or kind not in ROUTES:
        shown = kind if isinstance(kind, str) else json.dumps(kind, default=str)
        raise Unprocessable(f"Unknown event type: {shown[:64]!r}; known: {', '.join(ROUTES)}")
    data = body.get("data")
    if not isinstance(data, dict):
        raise Unprocessable("'data' must be a JSON object")
    user_id = _user_id(body.get("user_id"), data.get("user_id"))
    if kind in NEEDS_USER and user_id is None:
        raise Unprocessable(f"'user_id' is required for {kind}")
    channel = _channel(kind, body.get("channel"), body.get("project_id"))
    data = _data(data)
    try:
        fields = MODELS[kind].model_validate(data)
    except ValidationError as exc:
        raise Unprocessable(describe(exc, "data")) from None
    return Event(kind, user_id, channel, data, fields, as_utc(now or utcnow()))


def _user_id(value: Any, inner: Any) -> int | None:
    """The body's ``user_id``, or ``data.user_id`` where seed producers put it."""
    if value is None:
        value = inner
    elif inner is not None and inner != value:
        raise Unprocessable("'data.user_id' disagrees with 'user_id'")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_USER_ID:
        raise Unprocessable("'user_id' must be a positive integer")
    return value


def _data(data: dict) -> dict:
    """``data`` without ``user_id`` (the body's); :func:`json_problem` found it publishable."""
    if "type" in data:
        raise Unprocessable("'data.type' is reserved: the event type is the body's 'type'")
    return {key: value for key, value in data.items() if key != "user_id"}


def _channel(kind: str, channel: Any, project_id: Any) -> str:
    if channel is not None and project_id is not None:
        raise Unprocessable("Give either 'channel' or 'project_id', not both")
    if project_id is not None:
        if not isinstance(project_id, str) or not SEGMENT.fullmatch(project_id):
            raise Unprocessable("'project_id' must be 1-64 characters of [A-Za-z0-9_-]")
        return f"project:{project_id}:events"
    if channel is not None:
        if not channels.is_valid(channel):
            shown = channel if isinstance(channel, str) else json.dumps(channel, default=str)
            raise Unprocessable(f"Invalid channel: {shown[:64]}")
        return channel
    return ROUTES[kind]


def describe(exc: ValidationError, prefix: str) -> str:
    """``prefix.field: message; …`` from a pydantic error, the way 422 answers read."""
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join([prefix, *(str(p) for p in error.get("loc", ()))])
        parts.append(f"{where}: {error.get('msg')}")
    return "; ".join(parts)
