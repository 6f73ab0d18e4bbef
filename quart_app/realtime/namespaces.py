"""Channel namespaces (docs/namespaces.md): which channel names exist, who may subscribe, how
long their history is, whether publications carrying ``user_id`` go only to that user, and which
event types are latest-value (conflated for a slow client).

A namespace declares a shape of literal segments and named variables separated by ``:``::

    project:{project}:events         # any segment value
    user:{id:int}:{kind:progress|achievements|rank-changes}
    activity:{kind:feed|achievements|high-scores}

and a subscribe rule: ``anyone``; ``owner:<var>`` (the variable equals the token's ``sub``);
``member:<var>:<claim>`` (the variable's value is in the token's list claim); ``token`` (the
token's ``channels`` claim lists the channel, ``*`` matching any run of characters); ``proxy``
(the application decides over HTTP: :class:`SubscribeProxy`); ``none`` (published to by servers
only).

The engine has no table of its own: the application installs one (the built-in mining dashboard's
is ``quart_app/dashboard/channels.py``), and an operator adds or overrides namespaces by name in a
TOML file (``PULSE_NAMESPACES``, :func:`load_file`), validated at start.
Channel names stay within 128 characters of ``[A-Za-z0-9_-]`` segments separated by ``:``.
"""
from __future__ import annotations

import asyncio
import fnmatch
import re
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from .auth import Principal

MAX_CHANNEL_LENGTH = 128
_SEGMENT = r"[A-Za-z0-9_-]{1,64}"
_VAR = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([^{}]*))?\}")
RULES = ("anyone", "owner", "member", "token", "proxy", "none")
PROXY = "proxy"  # what check() answers for a channel whose namespace asks the subscribe proxy

class NamespaceError(ValueError):
    """A namespace definition that cannot be used (the message names what and why)."""


@dataclass(frozen=True)
class Namespace:
    name: str
    pattern: str
    subscribe: str = "anyone"
    history_size: int | None = None          # None: the service default (PULSE_HISTORY_SIZE)
    history_ttl_seconds: float | None = None
    user_targeted: bool = False
    latest_value: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    presence: bool = False     # who is subscribed, across processes (realtime/presence.py)
    join_leave: bool = False   # join/leave publications on the channel (needs presence)
    regex: re.Pattern = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "regex", _compile(self.pattern))
        _check_rule(self.subscribe, self.regex)
        if self.join_leave and not self.presence:
            raise NamespaceError("'join_leave' = true needs 'presence' = true")

    def may_join(self, match: re.Match, who: Principal, channel: str) -> str | None:
        kind, _, rest = self.subscribe.partition(":")
        if kind == "anyone":
            return None
        if kind == "none":
            return f"Forbidden channel: {channel} (published by the server only)"
        if kind == "proxy":
            return PROXY
        if kind == "owner":
            if match.group(rest) != str(who.user_id):
                return f"Forbidden channel: {channel} belongs to another user"
            return None
        if kind == "member":
            var, _, claim = rest.partition(":")
            values = who.projects if claim == "projects" else who.claims.get(claim)
            if not isinstance(values, (list, tuple, set, frozenset)) or \
                    match.group(var) not in {str(v) for v in values}:
                if claim == "projects":
                    return f"Forbidden channel: {channel} (not a member of this project)"
                return f"Forbidden channel: {channel} (not a member per the {claim!r} claim)"
            return None
        allowed = who.claims.get("channels")  # "token"
        if isinstance(allowed, list) and any(
                isinstance(p, str) and fnmatch.fnmatchcase(channel, p) for p in allowed):
            return None
        return f"Forbidden channel: {channel} (not in the token's 'channels' claim)"


def _compile(pattern: str) -> re.Pattern:
    if not isinstance(pattern, str) or not pattern or len(pattern) > MAX_CHANNEL_LENGTH:
        raise NamespaceError("'pattern' must be a non-empty string of at most 128 characters")
    parts, pos, names = [], 0, set()
    for found in _VAR.finditer(pattern):
        literal = pattern[pos:found.start()]
        if not re.fullmatch(r"[A-Za-z0-9_.:-]*", literal):
            raise NamespaceError(f"pattern {pattern!r}: literal text may only use "
                                 "letters, digits, '_', '.', '-' and ':'")
        parts.append(re.escape(literal))
        name, kind = found.group(1), found.group(2)
        if name in names:
            raise NamespaceError(f"pattern {pattern!r}: variable {name!r} appears twice")
        names.add(name)
        if kind is None or kind == "":
            body = _SEGMENT
        elif kind == "int":
            body = "[0-9]{1,19}"
        else:
            choices = kind.split("|")
            if not all(re.fullmatch(_SEGMENT, c) for c in choices):
                raise NamespaceError(f"pattern {pattern!r}: {{{name}:{kind}}} must be 'int' or "
                                     "choices like a|b|c of segment characters")
            body = "|".join(re.escape(c) for c in choices)
        parts.append(f"(?P<{name}>{body})")
        pos = found.end()
    tail = pattern[pos:]
    if not re.fullmatch(r"[A-Za-z0-9_.:-]*", tail):
        raise NamespaceError(f"pattern {pattern!r}: literal text may only use letters, digits, "
                             "'_', '.', '-' and ':'")
    parts.append(re.escape(tail))
    return re.compile("".join(parts))


def _check_rule(rule: str, regex: re.Pattern) -> None:
    kind, _, rest = rule.partition(":") if isinstance(rule, str) else ("", "", "")
    if kind not in RULES:
        raise NamespaceError(f"'subscribe' must be one of anyone, owner:<var>, "
                             f"member:<var>:<claim>, token, proxy, none; got {rule!r}")
    if kind == "owner" and rest not in regex.groupindex:
        raise NamespaceError(f"'subscribe' = {rule!r}: the pattern has no variable {rest!r}")
    if kind == "member":
        var, _, claim = rest.partition(":")
        if var not in regex.groupindex or not claim:
            raise NamespaceError(f"'subscribe' = {rule!r}: use member:<variable>:<claim>")
    if kind in ("anyone", "token", "proxy", "none") and rest:
        raise NamespaceError(f"'subscribe' = {rule!r} takes no argument")


class Registry:
    """Namespaces in the order they are tried; the first whose pattern matches decides."""

    def __init__(self, namespaces: Iterable[Namespace]) -> None:
        self.namespaces = tuple(namespaces)
        self._cache: dict[str, tuple[Namespace, re.Match] | None] = {}

    def find(self, channel: object) -> tuple[Namespace, re.Match] | None:
        if not isinstance(channel, str) or not channel or len(channel) > MAX_CHANNEL_LENGTH:
            return None
        cache = self._cache
        if channel in cache:
            return cache[channel]
        found = None
        for ns in self.namespaces:
            match = ns.regex.fullmatch(channel)
            if match:
                found = (ns, match)
                break
        if len(cache) > 50_000:
            cache.clear()
        cache[channel] = found
        return found

    def merged(self, extra: Iterable[Namespace]) -> "Registry":
        """This table with ``extra`` replacing namespaces of the same name, new ones first."""
        extra = tuple(extra)
        names = {ns.name for ns in extra}
        return Registry(extra + tuple(ns for ns in self.namespaces if ns.name not in names))


_registry = Registry(())  # the application installs its table (create_app)


def install(registry: Registry) -> None:
    """Make ``registry`` the process's table (create_app does, from PULSE_NAMESPACES)."""
    global _registry
    _registry = registry


def current() -> Registry:
    return _registry


def load_file(path: str, base: Registry | None = None) -> Registry:
    """``base`` (the application's table) merged with the namespaces of a TOML file::

        [namespaces.project]
        pattern = "project:{project}:events"
        subscribe = "member:project:projects"
        history_size = 500
        history_ttl_seconds = 3600
        user_targeted = false
        latest_value = { "agent_status" = ["agent_id"] }
        presence = false
        join_leave = false

    Raises :class:`NamespaceError` naming the file, the namespace and the problem."""
    import tomllib

    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise NamespaceError(f"{path}: cannot read it ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise NamespaceError(f"{path}: not valid TOML ({exc})") from None
    table = data.get("namespaces")
    unknown = set(data) - {"namespaces"}
    if unknown or not isinstance(table, dict) or not table:
        raise NamespaceError(f"{path}: expected [namespaces.<name>] tables only"
                             + (f" (unknown: {', '.join(sorted(unknown))})" if unknown else ""))
    extra = [_namespace(path, name, spec) for name, spec in table.items()]
    return (base or Registry(())).merged(extra)


_KEYS = {"pattern", "subscribe", "history_size", "history_ttl_seconds", "user_targeted",
         "latest_value", "presence", "join_leave"}


def _namespace(path: str, name: str, spec: Any) -> Namespace:
    where = f"{path}: namespace {name!r}"
    if not isinstance(spec, dict):
        raise NamespaceError(f"{where}: must be a table")
    unknown = set(spec) - _KEYS
    if unknown:
        raise NamespaceError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} "
                             f"(known: {', '.join(sorted(_KEYS))})")
    if "pattern" not in spec:
        raise NamespaceError(f"{where}: 'pattern' is required")
    size, ttl = spec.get("history_size"), spec.get("history_ttl_seconds")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int)
                             or not 0 <= size <= 1_000_000):
        raise NamespaceError(f"{where}: 'history_size' must be an integer from 0 to 1000000")
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, (int, float))
                            or not 0 <= ttl <= 30 * 86400):
        raise NamespaceError(f"{where}: 'history_ttl_seconds' must be 0 to 2592000")
    targeted, presence, join_leave = (spec.get(key, False) for key in (
        "user_targeted", "presence", "join_leave"))
    for key, value in (("user_targeted", targeted), ("presence", presence),
                       ("join_leave", join_leave)):
        if not isinstance(value, bool):
            raise NamespaceError(f"{where}: {key!r} must be true or false")
    latest = spec.get("latest_value", {})
    if not isinstance(latest, dict) or not all(
            isinstance(k, str) and isinstance(v, list) and all(isinstance(f, str) for f in v)
            for k, v in latest.items()):
        raise NamespaceError(f"{where}: 'latest_value' must map event types to lists of "
                             "key field names")
    try:
        return Namespace(name, spec["pattern"], spec.get("subscribe", "anyone"), size,
                         None if ttl is None else float(ttl), targeted,
                         {k: tuple(v) for k, v in latest.items()}, presence, join_leave)
    except NamespaceError as exc:
        raise NamespaceError(f"{where}: {exc}") from None


# -- what the engine asks -------------------------------------------------------------------
def namespace_of(channel: object) -> Namespace | None:
    found = _registry.find(channel)
    return found[0] if found else None


def is_valid(channel: object) -> bool:
    """True if ``channel`` names a channel that exists (whoever may join it)."""
    return _registry.find(channel) is not None


def check(channel: object, who: Principal) -> str | None:
    """None if ``who`` may subscribe to ``channel``; otherwise the error message to send."""
    if not isinstance(channel, str) or not channel:
        return "Missing or invalid 'channel': a non-empty string is required"
    found = _registry.find(channel)
    if found is not None:
        return found[0].may_join(found[1], who, channel)
    shown = channel if len(channel) <= 64 else channel[:64] + "…"
    return f"Invalid channel: {shown}"


def is_public(channel: str) -> bool:
    """True if anyone may join ``channel``; False for restricted ones (and invalid names)."""
    ns = namespace_of(channel)
    return ns is not None and ns.subscribe == "anyone"


def targets_user(channel: str) -> bool:
    ns = namespace_of(channel)
    return ns is not None and ns.user_targeted


def latest_value_key(channel: str, event_type: str | None, data: Mapping) -> tuple | None:
    """The conflation key of a latest-value event (a newer one with the same key supersedes
    it for a slow client), or None for an event that must be kept."""
    ns = namespace_of(channel)
    if ns is None or event_type is None:
        return None
    fields = ns.latest_value.get(event_type)
    if fields is None:
        return None
    return (channel, event_type, *(str(data.get(f)) for f in fields))


def presence_of(channel: object) -> Namespace | None:
    """The channel's namespace if it keeps presence (``presence = true``), else None."""
    found = _registry.find(channel)
    return found[0] if found is not None and found[0].presence else None


def history_limits(channel: str) -> tuple[int | None, float | None]:
    ns = namespace_of(channel)
    return (ns.history_size, ns.history_ttl_seconds) if ns else (None, None)


class SubscribeProxy:
    """Asks the application whether a user may subscribe (namespaces with ``subscribe =
    "proxy"``): ``POST PULSE_SUBSCRIBE_PROXY_URL`` with ``{"user", "channel", "claims"}``; a 200
    answer ``{"allow": true}`` allows, anything else refuses. Answers are cached per user and
    channel for ``cache_seconds`` (0: not cached); a proxy that fails or does not answer within
    ``timeout_seconds`` refuses (fail closed) and is not cached. Concurrent asks for one user and
    channel (a reconnect storm) share one request."""

    def __init__(self, url: str, timeout_seconds: float = 2.0,
                 cache_seconds: float = 30.0) -> None:
        self.url = url
        self.timeout_seconds = timeout_seconds
        self.cache_seconds = cache_seconds
        self._cache: dict[tuple[int, str], tuple[float, str | None]] = {}
        self._asking: dict[tuple[int, str], asyncio.Future] = {}
        self._client: Any = None
        self.requests = 0  # sent to the application (for tests and /metrics readers)

    async def ask(self, who: Principal, channel: str) -> str | None:
        key = (who.user_id, channel)
        hit = self._cache.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        pending = self._asking.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        pending = self._asking[key] = asyncio.get_running_loop().create_future()
        try:
            problem, cacheable = await self._request(who, channel)
            if cacheable and self.cache_seconds > 0:
                if len(self._cache) > 100_000:
                    self._cache.clear()
                self._cache[key] = (time.monotonic() + self.cache_seconds, problem)
            pending.set_result(problem)
            return problem
        except BaseException as exc:  # cancelled: whoever shares the ask is refused, not hung
            pending.set_result(f"Forbidden channel: {channel} (the subscribe proxy did not answer)")
            raise exc
        finally:
            del self._asking[key]

    async def _request(self, who: Principal, channel: str) -> tuple[str | None, bool]:
        import httpx

        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout_seconds)
        self.requests += 1
        try:
            response = await self._client.post(self.url, json={
                "user": who.user_id, "channel": channel, "claims": dict(who.claims)})
            if response.status_code >= 500:
                raise RuntimeError(f"subscribe proxy answered {response.status_code}")
            allowed = response.status_code == 200 and response.json().get("allow") is True
        except Exception:  # network, timeout, 5xx, not JSON: refuse, and do not remember it
            return f"Forbidden channel: {channel} (the subscribe proxy did not answer)", False
        return (None if allowed else f"Forbidden channel: {channel} (refused by the app)"), True

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


async def authorize(svc: Any, channel: object, who: Principal) -> str | None:
    """:func:`check`, with the subscribe proxy asked where the namespace says so."""
    problem = check(channel, who)
    if problem != PROXY:
        return problem
    proxy = getattr(svc, "subscribe_proxy", None)
    if proxy is None:
        return f"Forbidden channel: {channel} (no subscribe proxy configured)"
    return await proxy.ask(who, channel)  # type: ignore[arg-type]
