"""The built-in app's channels, handed to the engine at start (docs/namespaces.md).

:data:`NAMESPACES` is the reference app's namespace table (seed 000's statics, seed 001's
patterns, seed 003's project events); ``PULSE_NAMESPACES`` adds to it or overrides it by name.
:data:`SEED_CHANNEL_MAP` is seed 000 §3.3.3's raw Redis pub/sub channels, which the Redis broker
subscribes and serves on Pulse channels, best-effort and without offsets (docs/protocol.md).
"""
from __future__ import annotations

from ..realtime.namespaces import Namespace

# Latest-value (conflated) event types and the fields that tell one value from another.
_KEY = ("user_id", "worker", "category")
_LATEST = {"stats_update": _KEY, "hashrate_update": _KEY, "leaderboard_update": _KEY}

NAMESPACES: tuple[Namespace, ...] = (
    Namespace("mining", "mining", user_targeted=True, latest_value=_LATEST),
    Namespace("dashboard", "dashboard", user_targeted=True, latest_value=_LATEST),
    Namespace("gamification", "gamification", user_targeted=True, latest_value=_LATEST),
    Namespace("competition", "competition", latest_value=_LATEST),
    Namespace("leaderboard", "leaderboard:{category}", latest_value=_LATEST),
    Namespace("activity", "activity:{kind:feed|achievements|high-scores}"),
    Namespace("session", "session:{id}:{part:live|competitors}"),
    Namespace("user", "user:{id:int}:{kind:progress|achievements|rank-changes}",
              subscribe="owner:id"),
    Namespace("project", "project:{project}:events", subscribe="member:project:projects"),
)

# Seed 000 §3.3.3: raw Redis pub/sub channel -> Pulse channel.
SEED_CHANNEL_MAP = {
    "pubsub:share_submitted": "mining",
    "pubsub:worker_status": "mining",
    "pubsub:hashrate_update": "mining",
    "pubsub:best_diff": "mining",
    "pubsub:block_found": "dashboard",
    "pubsub:badge_earned": "gamification",
    "pubsub:xp_gained": "gamification",
    "pubsub:level_up": "gamification",
    "pubsub:streak_update": "gamification",
    "pubsub:leaderboard_update": "competition",
    "pubsub:match_update": "competition",
    "pubsub:feed_item": "dashboard",
}
