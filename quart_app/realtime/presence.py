"""Presence per namespace (docs/namespaces.md: ``presence``, ``join_leave``): who is subscribed
to a channel across every process, and join/leave publications on it.

**What the hub tells us.** :meth:`Presence.joined` once a subscription is live (its ack queued),
:meth:`Presence.left` on unsubscribe, :meth:`Presence.gone` when a connection ends. Each only
updates this process's table (:attr:`Presence.local`) and marks the channel's entry changed;
what changed goes to the store in one batch per event loop iteration (one pipelined round trip,
whatever the number of subscribes in it: a reconnect storm of 10,000 clients costs a handful of
writes, not 10,000). At most one batch is in flight; what changes meanwhile goes in the next.

**One entry per (connection, channel)**: ``<client>/<user>``, where ``<client>`` is
``<process id>-<connection id>``. The store counts entries per user, so a *user* joins when
their first entry on the channel appears anywhere in the cluster and leaves when their last one
goes: a second tab makes no join, closing one of two tabs no leave.

**The Redis store** (keys under ``PULSE_REDIS_PREFIX``; the braces are a Redis Cluster hash tag,
so a channel's two keys live in one slot and one script can touch both):

* ``{prefix}presence:{<channel>}``: a sorted set of entries scored by their deadline, Redis
  server time in ms (no two hosts' clocks are ever compared);
* ``{prefix}presence-users:{<channel>}``: a hash of user id -> number of live entries.

Every write runs :data:`SYNC_LUA`, which first removes the entries whose deadline has passed
(those of a process that died without saying goodbye), then applies the batch, and publishes
each user's ``join``/``leave`` on the channel's pub/sub channel (``{prefix}ch:<channel>``, the
broker's) when the namespace asks for it: atomically, exactly once in the cluster, whoever
notices. Each process rewrites all its entries with a fresh deadline every heartbeat
(:mod:`.cluster`), so an entry outlives its process by at most ``PULSE_HEARTBEAT_TTL_SECONDS``.

**The memory store** (the in-process broker: one process) applies the same batches to a table
and hands join/leave to the hub directly.

Join and leave frames are publications without an offset (``{"channel": C, "data":
{"type": "join", "user": 7}}``): best-effort, not in history, never replayed (as Centrifugo's).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Iterable

from . import namespaces
from .broker import Publication, encode_json

log = logging.getLogger("pulse.presence")

# Entries per script call (the arguments of one EVALSHA); a batch splits into several calls of
# one pipeline.
CHUNK = 1000
# GET /presence lists at most this many clients (the count form has no limit).
MAX_LISTED = 10_000

# KEYS: entries (zset), users (hash).
# ARGV: entry TTL ms, the publish command (PUBLISH, or SPUBLISH for a Redis Cluster's shard
#       channel, in the slot of KEYS), pub/sub channel ('' = no join/leave), channel as JSON, how
#       many entries to list (0: none), number of entries to add, then those entries, then
#       entries to remove.
# Returns {clients, users, listed entries, joins, leaves}.
SYNC_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local stamp = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
local ttl = tonumber(ARGV[1])
local joins, leaves = 0, 0
local function say(kind, user)
  if ARGV[3] ~= '' then
    redis.call(ARGV[2], ARGV[3], stamp .. '\\n{"channel":' .. ARGV[4] ..
               ',"data":{"type":"' .. kind .. '","user":' .. user .. '}}')
  end
end
local function drop(entry)
  local user = string.match(entry, '[^/]*$')
  if redis.call('HINCRBY', KEYS[2], user, -1) <= 0 then
    redis.call('HDEL', KEYS[2], user)
    leaves = leaves + 1
    say('leave', user)
  end
end
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
for i = 1, #expired do
  redis.call('ZREM', KEYS[1], expired[i])
  drop(expired[i])
end
local adds = tonumber(ARGV[6])
for i = 7, 6 + adds do
  local entry = ARGV[i]
  if redis.call('ZADD', KEYS[1], now + ttl, entry) == 1 then
    if redis.call('HINCRBY', KEYS[2], string.match(entry, '[^/]*$'), 1) == 1 then
      joins = joins + 1
      say('join', string.match(entry, '[^/]*$'))
    end
  end
end
for i = 7 + adds, #ARGV do
  if redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then
    drop(ARGV[i])
  end
end
local clients = redis.call('ZCARD', KEYS[1])
if clients > 0 then
  redis.call('PEXPIRE', KEYS[1], 2 * ttl)
  redis.call('PEXPIRE', KEYS[2], 2 * ttl)
else
  redis.call('DEL', KEYS[1], KEYS[2])
end
local listed = {}
if tonumber(ARGV[5]) > 0 then
  listed = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[5]) - 1)
end
return {clients, redis.call('HLEN', KEYS[2]), listed, joins, leaves}
"""

Change = tuple[str, list[str], list[str]]   # (channel, entries to add, entries to remove)


def user_of_entry(entry: str) -> int:
    return int(entry.rpartition("/")[2])


def client_of_entry(entry: str) -> str:
    return entry.rpartition("/")[0]


def _announces(channel: str) -> bool:
    ns = namespaces.namespace_of(channel)
    return ns is not None and ns.join_leave


class RedisStore:
    """Presence entries in Redis, through the broker's client, key prefix and pub/sub channel
    names (``broker._key("ch", channel)``: a Redis Cluster broker's shard channel is
    hash-tagged like the presence keys, and gets ``SPUBLISH``)."""

    def __init__(self, broker: Any, ttl_seconds: float) -> None:
        from redis.asyncio.cluster import RedisCluster

        self.broker = broker
        self.redis = broker.redis
        self.prefix = broker.prefix
        self.ttl_ms = max(1, int(ttl_seconds * 1000))
        # A cluster sends the script's text (EVAL): a promoted replica has no script cache, and
        # a NOSCRIPT inside a cluster pipeline cannot be retried in place.
        self.cluster = isinstance(self.redis, RedisCluster)
        self._command = "SPUBLISH" if self.cluster else "PUBLISH"
        self._sync = None if self.cluster else self.redis.register_script(SYNC_LUA)

    def _pubsub(self, channel: str) -> str:
        name = getattr(self.broker, "_key", None)
        return name("ch", channel) if name is not None else f"{self.prefix}ch:{channel}"

    async def _run(self, keys: list[str], args: list, pipe: Any = None) -> Any:
        """The script, now or queued on ``pipe``."""
        if not self.cluster:
            return await self._sync(keys=keys, args=args, client=pipe)
        if pipe is not None:  # queued as is: awaiting a cluster pipeline re-initialises it
            pipe.eval(SYNC_LUA, len(keys), *keys, *args)
            return None
        return await self.redis.eval(SYNC_LUA, len(keys), *keys, *args)

    def _keys(self, channel: str) -> list[str]:
        tag = f"{{{channel}}}"
        return [f"{self.prefix}presence:{tag}", f"{self.prefix}presence-users:{tag}"]

    def _args(self, channel: str, adds: list[str], removes: list[str], listed: int = 0) -> list:
        pubsub = self._pubsub(channel) if _announces(channel) else ""
        return [self.ttl_ms, self._command, pubsub, encode_json(channel), listed, len(adds),
                *adds, *removes]

    async def write(self, changes: Iterable[Change], extra: Any = None) -> None:
        """Every change in one pipeline (a channel's long lists in several script calls), plus
        ``extra(pipe)``'s commands (the process report)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for channel, adds, removes in changes:
                keys = self._keys(channel)
                calls = [(adds[i:i + CHUNK], []) for i in range(0, len(adds), CHUNK)]
                calls += [([], removes[i:i + CHUNK]) for i in range(0, len(removes), CHUNK)]
                for add, remove in calls or [([], [])]:
                    await self._run(keys, self._args(channel, add, remove), pipe)
            if extra is not None:
                extra(pipe)
            await pipe.execute()

    async def read(self, channel: str, listed: int) -> tuple[int, int, list[str]]:
        """(clients, users, up to ``listed`` entries), after dropping expired entries."""
        clients, users, entries, _joins, _leaves = await self._run(
            self._keys(channel), self._args(channel, [], [], listed))
        return int(clients), int(users), [e.decode() if isinstance(e, bytes) else e
                                          for e in entries]


class MemoryStore:
    """The same semantics in process (the in-process broker serves one process)."""

    def __init__(self, hub: Any) -> None:
        self.hub = hub
        self.entries: dict[str, set[str]] = {}
        self.users: dict[str, dict[int, int]] = {}

    async def write(self, changes: Iterable[Change], extra: Any = None) -> None:
        for channel, adds, removes in changes:
            entries = self.entries.setdefault(channel, set())
            users = self.users.setdefault(channel, {})
            events = []
            for entry in adds:
                if entry not in entries:
                    entries.add(entry)
                    user = user_of_entry(entry)
                    users[user] = users.get(user, 0) + 1
                    if users[user] == 1:
                        events.append(("join", user))
            for entry in removes:
                if entry in entries:
                    entries.discard(entry)
                    user = user_of_entry(entry)
                    users[user] -= 1
                    if users[user] <= 0:
                        del users[user]
                        events.append(("leave", user))
            if not entries:
                del self.entries[channel], self.users[channel]
            if events and _announces(channel):
                for kind, user in events:
                    self.hub.dispatch(Publication(channel, {"type": kind, "user": user}, None))

    async def read(self, channel: str, listed: int) -> tuple[int, int, list[str]]:
        entries = self.entries.get(channel, ())
        return len(entries), len(self.users.get(channel, ())), sorted(entries)[:listed]


class Presence:
    """This process's presence entries and the batches that carry them to the store."""

    def __init__(self, process: str, make_store: Any) -> None:
        self.process = process
        self._make_store = make_store    # () -> store, once the broker is connected
        self.store: Any = None
        # channel -> {entry: connection}: what this process holds (and the store should).
        self.local: dict[str, dict[str, Any]] = {}
        self.held: dict[str, set[str]] = {}    # connection id -> its channels in self.local
        self.dirty: dict[str, set[str]] = {}   # channel -> entries changed since the last write
        self.lock = asyncio.Lock()             # one write in flight: batches stay in order
        self._flushing: asyncio.Task | None = None
        self.closed = False
        self.batches = 0                       # writes done (for tests and curiosity)
        self.failing = False                   # the last write failed (logged once per outage)

    @property
    def entry_count(self) -> int:
        return sum(len(entries) for entries in self.local.values())

    def entry(self, conn: Any) -> str:
        return f"{self.process}-{conn.id}/{conn.user_id}"

    # -- the hub's hooks (synchronous, cheap when the channel keeps no presence) ---------------
    def joined(self, conn: Any, channel: str) -> None:
        if self.closed or namespaces.presence_of(channel) is None:
            return
        entries = self.local.get(channel)
        if entries is None:
            entries = self.local[channel] = {}
        entry = self.entry(conn)
        if entry not in entries:  # a resubscribe keeps its entry
            entries[entry] = conn
            self.held.setdefault(conn.id, set()).add(channel)
            self._changed(channel, entry)

    def left(self, conn: Any, channel: str) -> None:
        entries = self.local.get(channel)
        if entries is None:
            return
        entry = self.entry(conn)
        if entries.pop(entry, None) is not None:
            if not entries:
                del self.local[channel]
            channels = self.held.get(conn.id)
            if channels is not None:
                channels.discard(channel)
                if not channels:
                    del self.held[conn.id]
            self._changed(channel, entry)

    def gone(self, conn: Any) -> None:
        channels = self.held.get(conn.id)
        if channels is not None:
            for channel in list(channels):
                self.left(conn, channel)

    def _changed(self, channel: str, entry: str) -> None:
        changed = self.dirty.get(channel)
        if changed is None:
            changed = self.dirty[channel] = set()
        changed.add(entry)
        if self._flushing is None and not self.closed:
            self._flushing = asyncio.get_running_loop().create_task(self._flush_soon())

    # -- writing -------------------------------------------------------------------------------
    def _store(self) -> Any:
        if self.store is None:
            self.store = self._make_store()
        return self.store

    def _take(self, everything: bool = False) -> list[Change]:
        """What the store must learn: the changed entries (added if held, removed if not) or,
        for a heartbeat, every entry held plus the changed ones that went."""
        changes = []
        if everything:
            for channel, entries in list(self.local.items()):
                # a subscription that ended without a hook (a resubscribe that failed)
                for conn in [c for c in entries.values() if channel not in c.subs]:
                    self.left(conn, channel)
        for channel in set(self.dirty) | (set(self.local) if everything else set()):
            held = self.local.get(channel, {})
            changed = self.dirty.get(channel, ())
            adds = list(held) if everything else [e for e in changed if e in held]
            changes.append((channel, adds, [e for e in changed if e not in held]))
        self.dirty = {}
        return changes

    async def _write(self, changes: list[Change], extra: Any = None) -> bool:
        try:
            await self._store().write(changes, extra)
        except Exception as exc:  # the broker is down: retried with the next heartbeat
            if not self.failing:
                log.warning("presence writes failing (%s): retried every heartbeat; entries "
                            "not refreshed expire", type(exc).__name__)
            self.failing = True
            for channel, adds, removes in changes:
                self.dirty.setdefault(channel, set()).update(adds, removes)
            return False
        if self.failing:
            log.info("presence writes recovered")
            self.failing = False
        self.batches += 1
        return True

    async def _flush_soon(self) -> None:
        try:
            await asyncio.sleep(0)  # let this loop iteration's other subscribes join the batch
            while self.dirty and not self.closed:
                async with self.lock:
                    if self.closed:
                        return
                    if not await self._write(self._take()):
                        return
        finally:
            self._flushing = None

    async def settled(self) -> None:
        """Wait until what this process changed so far has been written (read-your-writes for
        ``GET /presence`` answered here)."""
        task = self._flushing
        if task is not None:
            await asyncio.wait({task})

    async def heartbeat(self, extra: Any = None) -> bool:
        """Rewrite every entry held, with a fresh deadline (and whatever changed), plus
        ``extra(pipe)``'s commands, in one round trip."""
        async with self.lock:
            if self.closed:
                return False
            return await self._write(self._take(everything=True), extra)

    async def close(self, extra: Any = None) -> None:
        """Leave for good: remove every entry this process holds (their users' leaves go out),
        and ignore the hooks from now on."""
        async with self.lock:
            if self.closed:
                return
            self.closed = True
            gone = {channel: set(entries) for channel, entries in self.dirty.items()}
            for channel, entries in self.local.items():
                gone.setdefault(channel, set()).update(entries)
            self.dirty, self.local, self.held = {}, {}, {}
            if not gone and extra is None:
                return
            try:
                await self._store().write([(ch, [], sorted(es)) for ch, es in gone.items()], extra)
            except Exception as exc:  # they expire on their own within the heartbeat bound
                log.warning("presence goodbye failed: %s", type(exc).__name__)

    # -- reading -------------------------------------------------------------------------------
    async def read(self, channel: str, listed: int = 0) -> tuple[int, int, list[dict]]:
        """(clients, users, [{"user", "client"}, ...] up to ``listed``) on ``channel``."""
        await self.settled()
        clients, users, entries = await self._store().read(channel, listed)
        found = sorted((user_of_entry(e), client_of_entry(e)) for e in entries)
        return clients, users, [{"user": user, "client": client} for user, client in found]
