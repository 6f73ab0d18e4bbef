"""The dashboard REST API (seed 000 §3.5.2, DESIGN §4), validated and documented by
quart-schema, plus :func:`install`: the stats provider behind the ``dashboard`` snapshot and the
background jobs.

Every route needs a JWT; the blueprint checks it before anything else, so a request without one
is a 401 whatever its query says. A bad query value is a 422 naming the parameter.
"""
from __future__ import annotations


from pydantic import BaseModel, Field, field_validator
from quart import Blueprint, Quart, g
from quart_schema import validate_querystring, validate_response

from . import channels, stats, feed, leaderboard, tasks
from .events import SEGMENT
from ..errors import BadRequest
from ..web import current_principal, services

bp = Blueprint("dashboard", __name__)


@bp.before_request
async def _authenticate() -> None:
    g.principal = current_principal()


def _caller() -> int:
    return g.principal.user_id


class _Query(BaseModel):
    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_missing(cls, value):
        return None if value == "" else value  # `?before_id=` means no cursor


class FeedQuery(_Query):
    limit: int = Field(20, ge=1, le=50)
    # As seed 000's `if before_id:`: 0 means no cursor; below every id, an empty page.
    before_id: int | None = Field(None, ge=-(2**63), le=2**63 - 1)


class BadgesQuery(_Query):
    limit: int = Field(5, ge=1, le=20)


class LeaderboardQuery(_Query):
    limit: int = Field(10, ge=1, le=100)


class DashboardStats(BaseModel):
    hashrate: float
    hashrate_change: float
    shares_today: int
    shares_change: float
    workers_online: int
    workers_total: int
    streak: int
    best_diff_week: float
    network_diff: float
    best_diff_ratio: float
    level: int
    level_title: str
    xp: int
    xp_to_next: int
    badges_earned: int
    network_height: int


class FeedItem(BaseModel):
    id: int
    type: str
    text: str
    description: str | None
    time: str
    metadata: dict


class EventAction(BaseModel):
    label: str
    href: str | None


class UpcomingEvent(BaseModel):
    id: str
    type: str
    title: str
    description: str | None
    ends_at: str
    action: EventAction | None


class RecentBadge(BaseModel):
    id: str
    badge_id: str
    name: str
    description: str | None
    icon: str | None
    rarity: str
    earned_at: str


class LeaderboardEntry(BaseModel):
    rank: int | None
    previous_rank: int | None
    rank_change: int
    user_id: int
    display_name: str
    score: float


@bp.get("/dashboard/stats")
@validate_response(DashboardStats)
async def get_stats():
    """Aggregated stats for the caller (cached 10 s)."""
    return await stats.get_stats(services(), _caller())


@bp.get("/dashboard/feed")
@validate_querystring(FeedQuery)
@validate_response(list[FeedItem])
async def get_feed(query_args: FeedQuery):
    """The global activity feed, newest first; page with ``before_id`` (the last id seen)."""
    return await feed.page(services().db, query_args.limit, query_args.before_id)


@bp.get("/dashboard/events")
@validate_response(list[UpcomingEvent])
async def get_events():
    """Upcoming events, global and the caller's own, soonest first (at most 10)."""
    return await stats.upcoming_events(services().db, _caller())


@bp.get("/dashboard/recent-badges")
@validate_querystring(BadgesQuery)
@validate_response(list[RecentBadge])
async def get_recent_badges(query_args: BadgesQuery):
    """The caller's badges, newest first."""
    return await stats.recent_badges(services().db, _caller(), query_args.limit)


@bp.get("/leaderboard/<category>")
@validate_querystring(LeaderboardQuery)
@validate_response(list[LeaderboardEntry])
async def get_leaderboard(category: str, query_args: LeaderboardQuery):
    """The category's ranking, best first, with each entry's last rank change."""
    if not SEGMENT.fullmatch(category):
        raise BadRequest("Invalid category: use 1-64 characters of [A-Za-z0-9_-]")
    return await leaderboard.top(services().db, category, query_args.limit)


def install(app: Quart, svc) -> None:
    """The ``dashboard`` snapshot, seed 000's raw Redis channels, the stats pusher and the
    background jobs (the app's namespaces are installed by create_app)."""
    svc.raw_channels.update(channels.SEED_CHANNEL_MAP)
    svc.stats_pusher = stats.StatsPusher(svc)

    async def dashboard_snapshot(user_id: int) -> dict:
        return {"type": "stats_update", "user_id": user_id, **await stats.get_stats(svc, user_id)}

    svc.snapshots["dashboard"] = dashboard_snapshot
    svc.background.extend([tasks.stats_aggregator, tasks.stats_flusher, tasks.pruner])
