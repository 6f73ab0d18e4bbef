"""The channel table (DESIGN §7): which names exist and who may join them.

One row per shape. ``check(channel, principal)`` returns ``None`` when the caller may subscribe,
otherwise the error message the client gets. Channel names stay within 128 characters of
``[A-Za-z0-9_-]`` segments separated by ``:``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from .auth import Principal

STATIC_CHANNELS = frozenset({"mining", "dashboard", "gamification", "competition"})

# Publications carrying `user_id` on these go only to that user's connections (send-to-user).
USER_TARGETED_CHANNELS = frozenset({"mining", "gamification", "dashboard"})

# Seed 000 §3.3.3: raw Redis pub/sub channel -> WebSocket channel.
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
SEED_REDIS_CHANNELS = tuple(SEED_CHANNEL_MAP)

_SEGMENT = r"[A-Za-z0-9_-]{1,64}"
MAX_CHANNEL_LENGTH = 128


def _anyone(_match: re.Match, _who: Principal) -> str | None:
    return None


def _owner_only(match: re.Match, who: Principal) -> str | None:
    if match.group("id") != str(who.user_id):
        return f"Forbidden channel: {match.string} belongs to another user"
    return None


def _project_member(match: re.Match, who: Principal) -> str | None:
    if match.group("id") not in who.projects:
        return f"Forbidden channel: {match.string} (not a member of this project)"
    return None


@dataclass(frozen=True, slots=True)
class ChannelRule:
    pattern: re.Pattern
    may_join: Callable[[re.Match, Principal], str | None]


RULES: tuple[ChannelRule, ...] = (
    ChannelRule(re.compile(r"(mining|dashboard|gamification|competition)"), _anyone),
    ChannelRule(re.compile(rf"leaderboard:{_SEGMENT}"), _anyone),
    ChannelRule(re.compile(r"activity:(feed|achievements|high-scores)"), _anyone),
    ChannelRule(re.compile(rf"session:{_SEGMENT}:(live|competitors)"), _anyone),
    ChannelRule(re.compile(r"user:(?P<id>[0-9]{1,19}):(progress|achievements|rank-changes)"),
                _owner_only),
    ChannelRule(re.compile(rf"project:(?P<id>{_SEGMENT}):events"), _project_member),
)


def is_valid(channel: object) -> bool:
    """True if ``channel`` names a channel that exists (whoever may join it)."""
    return (
        isinstance(channel, str)
        and len(channel) <= MAX_CHANNEL_LENGTH
        and any(rule.pattern.fullmatch(channel) for rule in RULES)
    )


def check(channel: object, who: Principal) -> str | None:
    """None if ``who`` may subscribe to ``channel``; otherwise the error message to send."""
    if not isinstance(channel, str) or not channel:
        return "Missing or invalid 'channel': a non-empty string is required"
    if len(channel) <= MAX_CHANNEL_LENGTH:
        for rule in RULES:
            match = rule.pattern.fullmatch(channel)
            if match:
                return rule.may_join(match, who)
    shown = channel if len(channel) <= 64 else channel[:64] + "…"
    return f"Invalid channel: {shown}"


def is_public(channel: str) -> bool:
    """True if anyone may join ``channel``; False for owner- or member-only ones (and invalid)."""
    for rule in RULES:
        if rule.pattern.fullmatch(channel):
            return rule.may_join is _anyone
    return False


def targets_user(channel: str) -> bool:
    return channel in USER_TARGETED_CHANNELS
