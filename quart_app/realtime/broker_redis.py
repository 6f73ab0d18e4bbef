"""The Redis broker: offsets and history in one Lua script, one pub/sub connection per process.

Keys (``prefix`` defaults to ``pulse:``, tests use a unique one each):

* ``{prefix}offset:{stream}``  – the stream's last offset (INCR; never expires for a channel).
* ``{prefix}epoch:{stream}``   – the stream's epoch, set whenever its offsets start from 1 (after
  Redis lost its data, say): a resume with another epoch is not recovered (docs/protocol.md).
* ``{prefix}history:{stream}`` – a stream of ``o`` (offset) / ``f`` (frame), trimmed to the
  newest ``size`` entries and, by stream id (milliseconds), to ``ttl``.
* ``{prefix}pubid:{channel}:{id}`` – an idempotent publication's offset and body hash.
* ``{prefix}batch:{id}``        – a batch of publications' offsets (a retried call returns them).
* ``{prefix}ch:{channel}``      – the pub/sub channel; the message is ``<unix ts>\\n<frame>``.

A *stream* is a channel, or ``channel#user`` for one user's own offset space on a user-targeted
channel (its offset and epoch keys expire after a quiet day; its offsets then restart under a
new epoch). The Lua script checks the publication id, increments, appends, trims and publishes
in one step, so every process's listener sees a stream's publications in offset order, history
never disagrees with what was pushed, and a publish retried by the client library after a
timeout (its first attempt may have run) is not given a second offset.

Upstream subscriptions are reference-counted by the hub: the first local subscriber of a channel
SUBSCRIBEs and waits for Redis to confirm (so a history read that follows cannot miss a message),
the last one out UNSUBSCRIBEs. Raw channels (``raw_channels``: Redis channel -> Pulse channel,
given by the application, e.g. seed 000's ``pubsub:share_submitted`` -> ``mining``) are always
subscribed; raw JSON published there is served best-effort, without an offset.
"""
from __future__ import annotations

import asyncio
import bisect
import json
import logging
import random
import time
from typing import Any, AsyncIterator, Awaitable

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .batching import IterationBatch
from .broker import (RESYNC, History, Publication, _Resync, encode_json, history_result,
                     publication_frame, stream_name)

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

# Many publications in one call (one script run, one reply): for publish_many without ids of
# their own. The batch as a whole carries an id, so a call retried after a timeout (its first
# run may have happened) returns the first run's offsets instead of publishing twice.
# KEYS: the batch id key, then the offset, history and epoch keys of each stream in the batch.
# ARGV: batch id TTL ms ('0': no id), the user streams' keys TTL ms, and a JSON array with one
#       entry per publication: [stream number (1-based), pub/sub channel, channel JSON,
#       data JSON, history size, history TTL ms, '1' for a user's own space].
# Returns 'offset,offset,…' ('D' first when the batch had already run).
PUBLISH_BATCH_LUA = """
if ARGV[1] ~= '0' then
  local seen = redis.call('GET', KEYS[1])
  if seen then return 'D' .. seen end
end
local pubs = cjson.decode(ARGV[3])
local count, last, left = {}, {}, {}
for _, p in ipairs(pubs) do count[p[1]] = (count[p[1]] or 0) + 1 end
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local stamp = now[1] .. '.' .. string.format('%06d', tonumber(now[2])) .. '\\n'
local offsets = {}
for i, p in ipairs(pubs) do
  local n = p[1]
  local k = 1 + 3 * (n - 1)
  local offset = last[n]
  if offset == nil then
    offset = redis.call('INCRBY', KEYS[k + 1], count[n]) - count[n]
    if offset == 0 or redis.call('EXISTS', KEYS[k + 3]) == 0 then
      redis.call('SET', KEYS[k + 3], now[1] .. string.format('%06d', tonumber(now[2])))
    end
    if p[7] == '1' then
      redis.call('PEXPIRE', KEYS[k + 1], ARGV[2])
      redis.call('PEXPIRE', KEYS[k + 3], ARGV[2])
    end
    left[n] = count[n]
  end
  offset = offset + 1
  last[n] = offset
  local frame = '{"channel":' .. p[3] .. ',"data":' .. p[4] .. ',"offset":' .. offset
  if p[7] == '1' then
    frame = frame .. ',"user_offset":' .. offset .. '}'
  else
    frame = frame .. '}'
  end
  redis.call('XADD', KEYS[k + 2], 'MAXLEN', p[5], '*', 'o', offset, 'f', frame)
  left[n] = left[n] - 1
  if left[n] == 0 then  -- the stream's last publication in this batch: trim by age once
    redis.call('XTRIM', KEYS[k + 2], 'MINID', tostring(now_ms - tonumber(p[6])))
    redis.call('PEXPIRE', KEYS[k + 2], p[6])
  end
  redis.call('PUBLISH', p[2], stamp .. frame)
  offsets[i] = offset
end
local reply = table.concat(offsets, ',')
if ARGV[1] ~= '0' then redis.call('SET', KEYS[1], reply, 'PX', ARGV[1]) end
return reply
"""

# Read the latest offset and the entries after `since` in one atomic step: with two round trips
# a publication in between would push the newest-N window past `since` and fail recovery.
# ARGV: since, history size, '1' to read the newest `size` entries even when `since` is older
# (a read shared by several resumes, each of which keeps what follows its own `since`).
HISTORY_LUA = """
local latest = tonumber(redis.call('GET', KEYS[1]) or '0')
local epoch = redis.call('GET', KEYS[3]) or ''
local wanted = latest - tonumber(ARGV[1])
if wanted > tonumber(ARGV[2]) and ARGV[3] == '1' then wanted = tonumber(ARGV[2]) end
if wanted <= 0 or wanted > tonumber(ARGV[2]) then
  return {latest, {}, epoch}
end
return {latest, redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', wanted), epoch}
"""

# The latest offset and epoch of several streams (KEYS: offset, epoch, offset, epoch, ...).
LATEST_LUA = """
local out = {}
for i = 1, #KEYS, 2 do
  out[#out + 1] = tonumber(redis.call('GET', KEYS[i]) or '0')
  out[#out + 1] = redis.call('GET', KEYS[i + 1]) or ''
end
return out
"""

USER_STREAM_TTL_MS = 24 * 3600 * 1000  # a user's own offsets restart (new epoch) after a quiet day

RECONNECT_MIN_SECONDS = 0.05
RECONNECT_MAX_SECONDS = 5.0
CONFIRM_TIMEOUT_SECONDS = 3.0
POOL_SIZE = 32
# A subscribe's reads wait at most this long for others to share their round trip (batching.py).
READ_LINGER_SECONDS = 0.002


class RedisBroker:
    publish_lua = PUBLISH_LUA  # ClusterBroker and SentinelBroker run a variant (broker_ha.py)

    def __init__(
        self,
        url: str,
        prefix: str = "pulse:",
        history_size: int = 1000,
        history_ttl_seconds: float = 600.0,
        socket_timeout: float = 5.0,
        raw_channels: dict[str, str] | None = None,
    ) -> None:
        self.url = url
        # Read when the listener connects: the application fills it before the engine starts.
        self.raw_channels: dict[str, str] = {} if raw_channels is None else raw_channels
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
        self._reads = IterationBatch(self._read_together, linger=READ_LINGER_SECONDS)
        self.read_trips = 0  # pipelines of reads sent (tests, bench)
        self._ready = asyncio.Event()  # the listener is connected and reading
        self.reconnects = 0

    # -- lifecycle ----------------------------------------------------------------------
    async def connect(self) -> None:
        self._closed = False
        self._redis, self._listen_redis = self._make_clients()
        self._script = self._redis.register_script(self.publish_lua)
        self._batch_script = self._redis.register_script(PUBLISH_BATCH_LUA)
        self._history_script = self._redis.register_script(HISTORY_LUA)
        self._latest_script = self._redis.register_script(LATEST_LUA)
        self._scripts = (self._script, self._batch_script, self._history_script,
                         self._latest_script)

    def _make_clients(self) -> tuple[Any, Any]:
        """The commands client and the listener's client (SentinelBroker finds the master)."""
        # A blocking pool: a burst of subscribes waits for a connection instead of failing.
        pool = aioredis.BlockingConnectionPool.from_url(
            self.url, max_connections=POOL_SIZE, timeout=5, socket_connect_timeout=2,
            socket_timeout=self._socket_timeout,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
            retry_on_error=[RedisConnectionError, RedisTimeoutError])
        redis = aioredis.Redis(connection_pool=pool)
        # The listener's own connection never retries behind our back: a silent reconnect would
        # resubscribe without telling us, and what was published meanwhile would be skipped.
        listen_redis = aioredis.Redis.from_url(
            self.url, socket_connect_timeout=2, retry=Retry(NoBackoff(), 0),
            single_connection_client=False)
        return redis, listen_redis

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

    def _id_key(self, channel: str, publication_id: str | None) -> str:
        """An idempotent publication's key (any key of the stream's slot when there is no id)."""
        return self._key("pubid", f"{channel}:{publication_id}" if publication_id else "-")

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
        id_key = self._id_key(channel, publication_id)
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

    async def publish_many(self, requests: list[dict], *, batch_id: str | None = None,
                           batch_id_ttl_seconds: float = 30.0) -> list[Publication]:
        """Several publishes in one round trip, in order (a channel's publications keep their
        order). Each request: ``publish``'s arguments. Requests without ids of their own run as
        one script call under ``batch_id`` (a retried call cannot publish twice); with ids, as
        a pipeline of the one-publication script."""
        if any(r.get("publication_id") for r in requests):
            return await self._publish_pipelined(requests)
        streams: dict[str, int] = {}
        keys = [self._key("batch", batch_id) if batch_id else self._key("batch", "-")]
        entries, made = [], []
        for request in requests:
            channel, data, user = request["channel"], request["data"], request.get("user")
            stream = stream_name(channel, user)
            number = streams.get(stream)
            if number is None:
                number = streams[stream] = len(streams) + 1
                keys += [self._key("offset", stream), self._key("history", stream),
                         self._key("epoch", stream)]
            size, keep = request.get("history_size"), request.get("history_ttl_seconds")
            data_json = encode_json(data)
            entries.append([number, self._key("ch", channel), encode_json(channel), data_json,
                            str(self._size if size is None else size),
                            str(self._ttl_ms if keep is None else max(1, int(keep * 1000))),
                            "1" if user is not None else "0"])
            made.append((channel, data, user, data_json))
        reply = await self._batch_script(
            keys=keys, args=[int(batch_id_ttl_seconds * 1000) if batch_id else 0,
                             USER_STREAM_TTL_MS, json.dumps(entries, ensure_ascii=False)])
        text = reply.decode() if isinstance(reply, bytes) else str(reply)
        duplicate = text.startswith("D")
        now = time.time()
        publications = []
        for (channel, data, user, data_json), offset in zip(
                made, text.lstrip("D").split(",")):
            publication = Publication(channel, data, int(offset),
                                      publication_frame(channel, data_json, int(offset),
                                                        user is not None), now, user)
            publication.duplicate = duplicate
            publications.append(publication)
        return publications

    async def _publish_pipelined(self, requests: list[dict]) -> list[Publication]:
        calls = []
        pipe = self._pipeline()
        for request in requests:
            keys, args, data_json, now = self._call(
                request["channel"], request["data"], request.get("user"),
                request.get("publication_id"), request.get("body_hash", ""),
                request.get("id_ttl_seconds", 600.0), request.get("history_size"),
                request.get("history_ttl_seconds"))
            await self._queue_script(pipe, self._script, keys, args)
            calls.append((request, data_json, now))
        replies = await self._execute(pipe)
        return [self._result(r["channel"], r["data"], r.get("user"), data_json, now, reply)
                for (r, data_json, now), reply in zip(calls, replies)]

    # -- pipelines: what ClusterBroker changes (its pipeline, EVAL by text, its failures) --------
    def _pipeline(self) -> Any:
        return self.redis.pipeline(transaction=False)

    async def _queue_script(self, pipe: Any, script: Any, keys: list, args: list) -> None:
        """Queue a registered script on ``pipe`` as a plain EVALSHA. (redis-py's own way, the
        script called with the pipeline, asks SCRIPT EXISTS before every pipeline: one more
        round trip per batch.) A script Redis lacks answers NOSCRIPT without running; then
        :meth:`_execute` loads it and sends those calls again."""
        pipe.evalsha(script.sha, len(keys), *keys, *args)

    async def _execute(self, pipe: Any) -> list:
        """Run ``pipe``; raise its first error, as ``pipe.execute()`` would."""
        stack = list(pipe.command_stack)
        replies = await pipe.execute(raise_on_error=False)  # the pipeline resets itself
        again = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if again:  # Redis restarted or flushed its scripts: none of these ran
            known = {script.sha: script for script in self._scripts}
            for sha in {stack[i][0][1] for i in again}:
                if sha in known:
                    await self.redis.script_load(known[sha].script)
            retry = self._pipeline()
            for i in again:
                retry.execute_command(*stack[i][0], **stack[i][1])
            for i, reply in zip(again, await retry.execute(raise_on_error=False)):
                replies[i] = reply
        for reply in replies:
            if isinstance(reply, ResponseError):
                raise reply
        return replies

    def _latest_groups(self, streams: list[str]) -> list[list[str]]:
        """The streams whose latest offsets one script call reads: all of them, on one Redis."""
        return [streams] if streams else []

    def _held(self, channel: str) -> int:
        """How many publications the channel's history keeps (its namespace, or the default)."""
        from .namespaces import history_limits

        size = history_limits(channel)[0]
        return self._size if size is None else size

    # Reads made in one event-loop iteration go to Redis together, as one pipeline: the latest
    # offsets of every stream asked in one script call, and one history read per stream from
    # the oldest `since` asked, shared by every resume of that stream. A reconnect storm of
    # 10,000 clients then costs a few round trips per loop iteration, not two per client.
    # Both answer with a future, asked at once: a caller that reads two streams (a subscribe on
    # a user-targeted channel) gets both into the same pipeline without a task per read.
    def latest(self, channel: str, *, user: int | None = None) -> Awaitable[tuple[int, str]]:
        return self._reads.ask(("latest", stream_name(channel, user), user, 0, 0, None))

    async def latest_offset(self, channel: str) -> int:
        return (await self.latest(channel))[0]

    def history(self, channel: str, since: int, *, user: int | None = None,
                epoch: str | None = None) -> Awaitable[History]:
        return self._reads.ask(
            ("history", stream_name(channel, user), user, since, self._held(channel), epoch))

    async def _read_together(self, reads: list[tuple[tuple, asyncio.Future]]) -> None:
        latest: dict[str, None] = {}                   # the streams asked, in order
        histories: dict[str, list] = {}                # stream -> [oldest since, size, user, n]
        for (kind, stream, user, since, held, _epoch), _future in reads:
            if kind == "latest":
                latest[stream] = None
            else:
                group = histories.get(stream)
                if group is None:
                    histories[stream] = [since, held, user, 1]
                else:
                    group[0] = min(group[0], since)
                    group[3] += 1
        self.read_trips += 1
        found_latest, found_histories = await self._run_reads(list(latest), histories)
        latest_of = dict(zip(latest, found_latest))
        found = {stream: self._parse_history(stream.partition("#")[0], user, reply)
                 for (stream, (_since, _held, user, _n)), reply
                 in zip(histories.items(), found_histories)}
        for (kind, stream, _user, since, _held, epoch), future in reads:
            if future.done():
                continue
            if kind == "latest":
                offset, current = latest_of[stream]
                future.set_result((int(offset), current.decode()
                                   if isinstance(current, bytes) else str(current)))
            else:
                last, publications, current = found[stream]
                start = bisect.bisect_right(publications, since, key=_offset_of)
                future.set_result(history_result(publications[start:], last, since, current,
                                                 epoch))

    async def _run_reads(self, latest: list[str], histories: dict[str, list]
                         ) -> tuple[list[tuple[Any, Any]], list]:
        """One pipeline: the latest offset and epoch of each of ``latest`` (as few script calls
        as :meth:`_latest_groups` allows), then one history read per stream of ``histories``
        from its oldest ``since`` (the newest ``size`` entries when several share it). Returns
        ``([(offset, epoch) per latest stream], [history reply per stream])``."""
        pipe = self._pipeline()
        groups = self._latest_groups(latest)
        for group in groups:
            keys = [key for stream in group
                    for key in (self._key("offset", stream), self._key("epoch", stream))]
            await self._queue_script(pipe, self._latest_script, keys, [])
        for stream, (since, held, _user, n) in histories.items():
            await self._queue_script(pipe, self._history_script,
                              [self._key("offset", stream), self._key("history", stream),
                               self._key("epoch", stream)], [since, held, 1 if n > 1 else 0])
        replies = await self._execute(pipe)
        flat = [value for reply in replies[:len(groups)] for value in reply]
        return list(zip(flat[::2], flat[1::2])), replies[len(groups):]

    @staticmethod
    def _parse_history(channel: str, user: int | None, reply: list) -> tuple[int, list, str]:
        latest, entries, current = reply
        publications = []
        for entry_id, fields in reversed(entries):
            fields = dict(zip(fields[::2], fields[1::2]))
            frame = fields[b"f"]
            # The stream id's first part is the publishing time in ms: replays that merge a
            # channel's space and a user's keep the order they went out in.
            published_at = int(entry_id.split(b"-", 1)[0]) / 1000.0
            publications.append(Publication(channel, json.loads(frame)["data"], int(fields[b"o"]),
                                            frame, published_at, user))
        return (int(latest), publications,
                current.decode() if isinstance(current, bytes) else str(current))

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
        channels = [*self.raw_channels, *(self._key("ch", c) for c in self._wanted)]
        if channels:
            await pubsub.subscribe(*channels)
        else:  # a SUBSCRIBE of nothing is an error: connect, and subscribe_upstream subscribes
            await pubsub.connect()
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
                publication = parse_raw_message(self.raw_channels, channel.decode(),
                                                message["data"])
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


def _offset_of(publication: Publication) -> int:
    return publication.offset  # type: ignore[return-value]


def parse_raw_message(raw_channels: dict[str, str], redis_channel: str,
                      raw: bytes) -> Publication | None:
    """Map a raw PUBLISH to its Pulse channel: ``{"type": <last segment>, **payload}`` (as seed
    000 §3.3.3 does); None if the channel is not mapped or the message is not a JSON object."""
    ws_channel = raw_channels.get(redis_channel)
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
