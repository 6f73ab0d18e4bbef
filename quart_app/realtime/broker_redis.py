"""The Redis broker: offsets and history in one Lua script, one pub/sub connection per process.

Keys (``prefix`` defaults to ``pulse:``, tests use a unique one each):

* ``{prefix}offset:{stream}``  – the stream's last offset (INCR; never expires for a channel).
* ``{prefix}epoch:{stream}``   – the stream's epoch, set whenever its offsets start from 1 (after
  Redis lost its data, say): a resume with another epoch is not recovered (docs/protocol.md).
* ``{prefix}history:{stream}`` – a stream of ``o`` (offset) / ``f`` (frame), trimmed to the
  newest ``size`` entries and, by stream id (milliseconds), to ``ttl``.
* ``{prefix}pubid:{channel}:{id}`` – an idempotent publication's offset and body hash.
* ``{prefix}ch:{channel}``      – the pub/sub channel; the message is ``<unix ts>\\n<frame>``.

A *stream* is a channel, or ``channel#user`` for one user's own offset space on a user-targeted
channel (its offset and epoch keys expire after a quiet day; its offsets then restart under a
new epoch). The Lua script checks the publication id, increments, appends, trims and publishes
in one step, so every process's listener sees a stream's publications in offset order, history
never disagrees with what was pushed, and a publish retried by the client library after a
timeout (its first attempt may have run) is not given a second offset.

Upstream subscriptions are reference-counted by the hub: the first local subscriber of a channel
SUBSCRIBEs and waits for Redis to confirm (so a history read that follows cannot miss a message),
the last one out UNSUBSCRIBEs. The 12 seed channels (``pubsub:share_submitted`` …) are always
subscribed; raw JSON published there is served best-effort, without an offset, as in seed 000.
"""
from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from typing import Any, AsyncIterator

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .broker import (RESYNC, History, Publication, _Resync, encode_json, history_result,
                     publication_frame, stream_name)
from .namespaces import SEED_REDIS_CHANNELS

log = logging.getLogger("pulse.broker")

# KEYS: offset, history, epoch, publication id (or any key when ARGV[7] is '0').
# ARGV: pub/sub channel, channel JSON, data JSON, history size, history TTL ms, now (unix
#       seconds), id TTL ms ('0': no id), body hash, '1' for a user's own space, its keys' TTL ms.
# Returns {offset, epoch, duplicate (0/1), stored body hash}.
PUBLISH_LUA = """
if ARGV[7] ~= '0' then
  local seen = redis.call('GET', KEYS[4])
  if seen then
    local sep = string.find(seen, ':', 1, true)
    return {tonumber(string.sub(seen, 1, sep - 1)), redis.call('GET', KEYS[3]) or '', 1,
            string.sub(seen, sep + 1)}
  end
end
local offset = redis.call('INCR', KEYS[1])
local epoch = redis.call('GET', KEYS[3])
if offset == 1 or not epoch then
  local t = redis.call('TIME')
  epoch = t[1] .. string.format('%06d', tonumber(t[2]))
  redis.call('SET', KEYS[3], epoch)
end
local frame = '{"channel":' .. ARGV[2] .. ',"data":' .. ARGV[3] .. ',"offset":' .. offset
if ARGV[9] == '1' then
  frame = frame .. ',"user_offset":' .. offset .. '}'
  redis.call('PEXPIRE', KEYS[1], ARGV[10])
  redis.call('PEXPIRE', KEYS[3], ARGV[10])
else
  frame = frame .. '}'
end
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[4], '*', 'o', offset, 'f', frame)
redis.call('XTRIM', KEYS[2], 'MINID', tostring(now_ms - tonumber(ARGV[5])))
redis.call('PEXPIRE', KEYS[2], ARGV[5])
redis.call('PUBLISH', ARGV[1], ARGV[6] .. '\\n' .. frame)
if ARGV[7] ~= '0' then
  redis.call('SET', KEYS[4], offset .. ':' .. ARGV[8], 'PX', ARGV[7])
end
return {offset, epoch, 0, ''}
"""

# Read the latest offset and the entries after `since` in one atomic step: with two round trips
# a publication in between would push the newest-N window past `since` and fail recovery.
HISTORY_LUA = """
local latest = tonumber(redis.call('GET', KEYS[1]) or '0')
local epoch = redis.call('GET', KEYS[3]) or ''
local wanted = latest - tonumber(ARGV[1])
if wanted <= 0 or wanted > tonumber(ARGV[2]) then
  return {latest, {}, epoch}
end
return {latest, redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', wanted), epoch}
"""

LATEST_LUA = """
return {tonumber(redis.call('GET', KEYS[1]) or '0'), redis.call('GET', KEYS[2]) or ''}
"""

USER_STREAM_TTL_MS = 24 * 3600 * 1000  # a user's own offsets restart (new epoch) after a quiet day

RECONNECT_MIN_SECONDS = 0.05
RECONNECT_MAX_SECONDS = 5.0
CONFIRM_TIMEOUT_SECONDS = 3.0
POOL_SIZE = 32


class RedisBroker:
    def __init__(
        self,
        url: str,
        prefix: str = "pulse:",
        history_size: int = 1000,
        history_ttl_seconds: float = 600.0,
        socket_timeout: float = 5.0,
    ) -> None:
        self.url = url
        self._socket_timeout = socket_timeout
        self.prefix = prefix
        self._size = history_size
        self._ttl_ms = int(history_ttl_seconds * 1000)
        self._redis: aioredis.Redis | None = None
        self._pubsub = None
        self._script = None
        self._wanted: set[str] = set()
        self._confirm: dict[str, asyncio.Future] = {}
        self._closed = False
        self._ready = asyncio.Event()  # the listener is connected and reading
        self.reconnects = 0

    # -- lifecycle ----------------------------------------------------------------------
    async def connect(self) -> None:
        self._closed = False
        # A blocking pool: a burst of subscribes waits for a connection instead of failing.
        pool = aioredis.BlockingConnectionPool.from_url(
            self.url, max_connections=POOL_SIZE, timeout=5, socket_connect_timeout=2,
            socket_timeout=self._socket_timeout,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
            retry_on_error=[RedisConnectionError, RedisTimeoutError])
        self._redis = aioredis.Redis(connection_pool=pool)
        # The listener's own connection never retries behind our back: a silent reconnect would
        # resubscribe without telling us, and what was published meanwhile would be skipped.
        self._listen_redis = aioredis.Redis.from_url(
            self.url, socket_connect_timeout=2, retry=Retry(NoBackoff(), 0),
            single_connection_client=False)
        self._script = self._redis.register_script(PUBLISH_LUA)
        self._history_script = self._redis.register_script(HISTORY_LUA)
        self._latest_script = self._redis.register_script(LATEST_LUA)

    async def close(self) -> None:
        self._closed = True
        for fut in self._confirm.values():
            if not fut.done():
                fut.cancel()
        if self._pubsub is not None:
            try:
                await self._pubsub.aclose()
            except (RedisError, OSError):
                pass
        if self._redis is not None:
            await self._redis.aclose(close_connection_pool=True)
            await self._listen_redis.aclose(close_connection_pool=True)

    @property
    def redis(self) -> aioredis.Redis:
        assert self._redis is not None, "RedisBroker.connect() first"
        return self._redis

    async def ping(self) -> None:
        await self.redis.ping()

    # -- publish and history ------------------------------------------------------------
    def _key(self, kind: str, channel: str) -> str:
        return f"{self.prefix}{kind}:{channel}"

    def _call(self, channel: str, data: dict, user: int | None, publication_id: str | None,
              body_hash: str, id_ttl_seconds: float, history_size: int | None,
              history_ttl_seconds: float | None) -> tuple[list, list, str, float]:
        """The publish script's keys and arguments (and the data's JSON, and the time)."""
        data_json = encode_json(data)
        size = self._size if history_size is None else history_size
        ttl_ms = self._ttl_ms if history_ttl_seconds is None else \
            max(1, int(history_ttl_seconds * 1000))
        stream = stream_name(channel, user)
        now = time.time()
        id_key = self._key("pubid", f"{channel}:{publication_id}") if publication_id else \
            self._key("pubid", "-")
        keys = [self._key("offset", stream), self._key("history", stream),
                self._key("epoch", stream), id_key]
        args = [self._key("ch", channel), encode_json(channel), data_json, size, ttl_ms,
                repr(now), int(id_ttl_seconds * 1000) if publication_id else 0, body_hash,
                1 if user is not None else 0, USER_STREAM_TTL_MS]
        return keys, args, data_json, now

    @staticmethod
    def _result(channel: str, data: dict, user: int | None, data_json: str, now: float,
                reply: list) -> Publication:
        offset, _epoch, duplicate, stored_hash = reply
        publication = Publication(channel, data, int(offset),
                                  publication_frame(channel, data_json, int(offset),
                                                    user is not None), now, user)
        if duplicate:
            publication.duplicate = True
            publication.stored_hash = stored_hash.decode() if isinstance(stored_hash, bytes) \
                else str(stored_hash)
        return publication

    async def publish(self, channel: str, data: dict, *, user: int | None = None,
                      publication_id: str | None = None, body_hash: str = "",
                      id_ttl_seconds: float = 600.0, history_size: int | None = None,
                      history_ttl_seconds: float | None = None) -> Publication:
        keys, args, data_json, now = self._call(channel, data, user, publication_id, body_hash,
                                                id_ttl_seconds, history_size,
                                                history_ttl_seconds)
        reply = await self._script(keys=keys, args=args)
        return self._result(channel, data, user, data_json, now, reply)

    async def publish_many(self, requests: list[dict]) -> list[Publication]:
        """Several publishes in one round trip (a pipeline of the same script, run in order:
        a channel's publications keep their order). Each request: ``publish``'s arguments."""
        calls = []
        async with self.redis.pipeline(transaction=False) as pipe:
            for request in requests:
                keys, args, data_json, now = self._call(
                    request["channel"], request["data"], request.get("user"),
                    request.get("publication_id"), request.get("body_hash", ""),
                    request.get("id_ttl_seconds", 600.0), request.get("history_size"),
                    request.get("history_ttl_seconds"))
                await self._script(keys=keys, args=args, client=pipe)
                calls.append((request, data_json, now))
            replies = await pipe.execute()
        return [self._result(r["channel"], r["data"], r.get("user"), data_json, now, reply)
                for (r, data_json, now), reply in zip(calls, replies)]

    def _held(self, channel: str) -> int:
        """How many publications the channel's history keeps (its namespace, or the default)."""
        from .namespaces import history_limits

        size = history_limits(channel)[0]
        return self._size if size is None else size

    async def latest(self, channel: str, *, user: int | None = None) -> tuple[int, str]:
        stream = stream_name(channel, user)
        offset, epoch = await self._latest_script(
            keys=[self._key("offset", stream), self._key("epoch", stream)])
        return int(offset), epoch.decode() if isinstance(epoch, bytes) else str(epoch)

    async def latest_offset(self, channel: str) -> int:
        return (await self.latest(channel))[0]

    async def history(self, channel: str, since: int, *, user: int | None = None,
                      epoch: str | None = None) -> History:
        stream = stream_name(channel, user)
        latest, entries, current = await self._history_script(
            keys=[self._key("offset", stream), self._key("history", stream),
                  self._key("epoch", stream)],
            args=[since, self._held(channel)])
        latest = int(latest)
        current = current.decode() if isinstance(current, bytes) else str(current)
        publications = []
        for entry_id, fields in reversed(entries):
            fields = dict(zip(fields[::2], fields[1::2]))
            frame = fields[b"f"]
            # The stream id's first part is the publishing time in ms: replays that merge a
            # channel's space and a user's keep the order they went out in.
            published_at = int(entry_id.split(b"-", 1)[0]) / 1000.0
            publications.append(Publication(channel, json.loads(frame)["data"], int(fields[b"o"]),
                                            frame, published_at, user))
        return history_result(publications, latest, since, current, epoch)

    # -- the listener's stream ----------------------------------------------------------
    async def subscribe_upstream(self, channel: str) -> None:
        """SUBSCRIBE and wait for Redis to confirm, so a history read that follows misses nothing.

        If the listener is not connected yet, wait for it (bounded): it subscribes everything
        wanted when it connects, and its RESYNC covers what was published before that.
        """
        self._wanted.add(channel)
        try:
            await asyncio.wait_for(self._ready.wait(), CONFIRM_TIMEOUT_SECONDS)
            pubsub = self._pubsub
            if pubsub is None:
                return
            fut = self._confirm.get(channel)
            if fut is None or fut.done():
                fut = self._confirm[channel] = asyncio.get_running_loop().create_future()
            await pubsub.subscribe(self._key("ch", channel))
            await asyncio.wait_for(asyncio.shield(fut), CONFIRM_TIMEOUT_SECONDS)
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            # The listener resubscribes on reconnect and resyncs from history.
            log.warning("upstream subscribe %s not confirmed: %s", channel, type(exc).__name__)

    async def unsubscribe_upstream(self, channel: str) -> None:
        self._wanted.discard(channel)
        if self._pubsub is not None:
            try:
                await self._pubsub.unsubscribe(self._key("ch", channel))
            except (RedisError, OSError):
                pass

    async def _open_pubsub(self):
        pubsub = self._listen_redis.pubsub()
        await pubsub.subscribe(*SEED_REDIS_CHANNELS, *(self._key("ch", c) for c in self._wanted))
        return pubsub

    async def listen(self) -> AsyncIterator[Publication | _Resync]:
        """Yield publications; reconnect with backoff forever; yield RESYNC after a reconnect."""
        delay = RECONNECT_MIN_SECONDS
        first = True
        ch_prefix = self._key("ch", "").encode()
        while not self._closed:
            try:
                self._pubsub = await self._open_pubsub()
            except (RedisError, OSError) as exc:
                log.warning("redis listener connect failed (%s); retry in %.2fs",
                            type(exc).__name__, delay)
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, RECONNECT_MAX_SECONDS)
                continue
            if not first:
                self.reconnects += 1
                log.info("redis listener reconnected")
                yield RESYNC
            first = False
            delay = RECONNECT_MIN_SECONDS
            self._ready.set()
            try:
                async for item in self._read(self._pubsub, ch_prefix):
                    yield item
            except (RedisError, OSError) as exc:
                log.warning("redis listener lost its connection: %s", type(exc).__name__)
            finally:
                self._ready.clear()
                pubsub, self._pubsub = self._pubsub, None
                try:
                    await pubsub.aclose()
                except (RedisError, OSError):
                    pass

    async def _read(self, pubsub, ch_prefix: bytes) -> AsyncIterator[Publication]:
        while not self._closed:
            message = await pubsub.get_message(timeout=1.0)
            if message is None:
                continue
            kind = message["type"]
            channel: bytes = message["channel"]
            if kind == "subscribe":
                if channel.startswith(ch_prefix):
                    fut = self._confirm.pop(channel[len(ch_prefix):].decode(), None)
                    if fut is not None and not fut.done():
                        fut.set_result(None)
                continue
            if kind != "message":
                continue
            if channel.startswith(ch_prefix):
                publication = self._parse_own(message["data"])
            else:
                publication = parse_seed_message(channel.decode(), message["data"])
            if publication is not None:
                yield publication

    @staticmethod
    def _parse_own(raw: bytes) -> Publication | None:
        try:
            stamp, _, frame = raw.partition(b"\n")
            body = json.loads(frame)
            # No offset: a best-effort frame (presence join/leave, realtime/presence.py).
            publication = Publication(body["channel"], body["data"], body.get("offset"), frame,
                                      float(stamp))
            if "user_offset" in body:
                publication.user = publication.user_id
            return publication
        except (ValueError, KeyError, TypeError):
            log.warning("skipping a malformed publication on the pulse channel")
            return None


def parse_seed_message(redis_channel: str, raw: bytes) -> Publication | None:
    """Map a raw seed-000 PUBLISH to its channel: ``{"type": suffix, **payload}``; None if bad."""
    from .namespaces import SEED_CHANNEL_MAP

    ws_channel = SEED_CHANNEL_MAP.get(redis_channel)
    if ws_channel is None:
        return None
    try:
        payload = json.loads(raw, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        log.warning("pubsub_invalid_message on %s: not JSON", redis_channel)
        return None
    if not isinstance(payload, dict):
        log.warning("pubsub_invalid_message on %s: not a JSON object", redis_channel)
        return None
    try:  # encoded here, once: a lone surrogate or a deep nesting fails now, not in the hub
        return Publication(ws_channel, {"type": redis_channel.split(":")[-1], **payload}, None)
    except (ValueError, UnicodeEncodeError, RecursionError):
        log.warning("pubsub_invalid_message on %s: not encodable as JSON text", redis_channel)
        return None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
