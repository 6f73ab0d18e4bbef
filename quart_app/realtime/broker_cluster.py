"""The Redis Cluster broker: ``REDIS_URL=redis+cluster://host:port[,host:port…]``.

It is :class:`RedisBroker` with three things changed (docs/scaling.md, "Redis Cluster"):

* **Keys hash-tagged by channel.** Every key of a stream carries its channel in braces:
  ``{prefix}offset:{mining}``, ``{prefix}offset:{mining}#42`` (user 42's own space),
  ``{prefix}history:…``, ``{prefix}epoch:…``, ``{prefix}writer:…``,
  ``{prefix}pubid:{mining}:<id>``, and the shard channel ``{prefix}ch:{mining}``. So one
  channel, with all its users' spaces, lives in one slot and the publish script runs on one
  node. Commands go through redis-py's ``RedisCluster``, which follows the slot map and retries
  MOVED, ASK, TRYAGAIN, CLUSTERDOWN and connection errors a bounded number of times
  (:data:`PUBLISH_RETRIES`); the publication id makes a retried publish idempotent.
* **Sharded pub/sub.** The script ends with ``SPUBLISH`` to the channel's shard channel (same
  slot as its keys), so a message goes only to the shard that owns the channel, not to every
  node. The listener holds one pub/sub connection per primary that owns a subscribed channel
  (``SSUBSCRIBE``), plus one classic ``SUBSCRIBE`` connection to any node for the application's
  raw channels (seed 000's ``pubsub:*``: classic pub/sub reaches every node of a cluster).
* **Reconnect means the whole view.** When any of those connections fails, or a node drops a
  subscription because its slot moved (a ``sunsubscribe`` Pulse did not ask for: resharding,
  failover), the listener closes them all, reloads the slot map, subscribes every wanted channel
  on its current owner, waits for every confirmation, and then yields RESYNC: the hub re-reads
  history from its last offsets, as after a single Redis reconnects. The failover script of
  :mod:`broker_ha` makes offsets from a dead primary distrusted (a new epoch, and a jump).

Why plain connections per primary rather than redis-py's ``ClusterPubSub``: the latter
reconnects and moves shard subscriptions by itself, in the background, without telling its
user, so what was published in between would be skipped unnoticed; and its reader polls the
node connections in turn, each with the read timeout. Here every shard has its own reader task
feeding one queue, and every lost subscription becomes a RESYNC.
"""
from __future__ import annotations

import asyncio
import logging
import random
from typing import Any, AsyncIterator

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError

from . import redis_urls
from .broker import RESYNC, Publication, _Resync
from .broker_ha import WriterEpochs, failover_lua
from .broker_redis import (CONFIRM_TIMEOUT_SECONDS, POOL_SIZE, RECONNECT_MIN_SECONDS,
                           RedisBroker, parse_raw_message)

log = logging.getLogger("pulse.broker")

# MOVED, ASK and TRYAGAIN are handled by redis-py itself (up to 16 tries a command); these are the further attempts after a connection error, a timeout, CLUSTERDOWN
# (after 250 ms) or a slot no node serves, each after reloading the slot map. redis-py makes
# them without a pause of its own: while a failover is under way (cluster-node-timeout, then an
# election) a publish can still fail, and the error reaches the caller (a 503 for HTTP, whose
# producer retries with its Idempotency-Key: the publication id makes every retry safe).
PUBLISH_RETRIES = 8
RECONNECT_MAX_SECONDS = 1.0   # the listener's retries while a failover completes
# redis-py's cluster pools raise when a node's connections run out, where the single-Redis
# broker's blocking pool waits: so at most POOL_SIZE broker commands run at once (a burst of
# subscribes waits), below the per-node cap, which leaves room for the stats cache.
MAX_CONNECTIONS_PER_NODE = 2 * POOL_SIZE

_LOST = object()


class _Shard:
    """One pub/sub connection to one primary, and the Pulse channels subscribed on it."""

    __slots__ = ("name", "client", "pubsub", "task", "leaving")

    def __init__(self, name: str, client: aioredis.Redis) -> None:
        self.name = name
        self.client = client
        self.pubsub = client.pubsub()
        self.task: asyncio.Task | None = None
        self.leaving: dict[bytes, int] = {}   # our SUNSUBSCRIBEs not yet confirmed


class ClusterBroker(WriterEpochs, RedisBroker):
    publish_lua = failover_lua("SPUBLISH")

    def __init__(self, url: str, prefix: str = "pulse:", history_size: int = 1000,
                 history_ttl_seconds: float = 600.0, socket_timeout: float = 5.0,
                 raw_channels: dict[str, str] | None = None) -> None:
        if "{" in prefix or "}" in prefix:
            raise ValueError("on a Redis Cluster the key prefix cannot contain '{' or '}' "
                             "(the channel is the hash tag)")
        super().__init__(url, prefix, history_size, history_ttl_seconds, socket_timeout,
                         raw_channels)
        self.topology = redis_urls.parse(url)
        self._queue: asyncio.Queue | None = None
        self._shards: dict[str, _Shard] = {}
        self._seed: _Shard | None = None
        self._shard_lock = asyncio.Lock()
        self._on_shard: dict[str, str] = {}   # channel -> the shard it is subscribed on
        self._commands = asyncio.Semaphore(POOL_SIZE)
        self._initialized = False
        self._initializing = asyncio.Lock()

    # -- keys: the channel is the hash tag ---------------------------------------------------
    def _key(self, kind: str, name: str) -> str:
        channel, sep, user = name.partition("#")
        return f"{self.prefix}{kind}:{{{channel}}}{sep}{user}"

    def _id_key(self, channel: str, publication_id: str | None) -> str:
        return f"{self.prefix}pubid:{{{channel}}}:{publication_id or '-'}"

    def _channel_of(self, shard_channel: bytes) -> str:
        text = shard_channel.decode()
        head = f"{self.prefix}ch:{{"
        return text[len(head):-1] if text.startswith(head) and text.endswith("}") else text

    # -- connections --------------------------------------------------------------------------
    def _make_clients(self) -> tuple[Any, Any]:
        target = self.topology
        cluster = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
            username=target.username, password=target.password, ssl=target.ssl,
            socket_connect_timeout=2, socket_timeout=self._socket_timeout,
            max_connections=MAX_CONNECTIONS_PER_NODE,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), PUBLISH_RETRIES))  # count only
        return cluster, None

    def _node_client(self, host: str, port: int) -> aioredis.Redis:
        """A plain connection to one node that never reconnects by itself."""
        target = self.topology
        return aioredis.Redis(host=host, port=port, username=target.username,
                              password=target.password, ssl=target.ssl,
                              socket_connect_timeout=2, retry=Retry(NoBackoff(), 0))

    async def connect(self) -> None:
        await super().connect()
        try:  # the slot map now, if the cluster answers (the stats cache uses the client too)
            await asyncio.wait_for(self._initialize(), 5)
        except (RedisError, RedisClusterException, OSError, asyncio.TimeoutError) as exc:
            log.warning("redis cluster not reachable at start (%s); retrying on use",
                        type(exc).__name__)

    async def close(self) -> None:
        self._closed = True
        for fut in self._confirm.values():
            if not fut.done():
                fut.cancel()
        await self._teardown()
        if self._redis is not None:
            await self._redis.aclose()

    async def _initialize(self) -> None:
        """Load the slot map once, before any command: redis-py 8.1's RedisCluster, given a
        burst of first commands at once, lets them race through its initialisation (they fail
        with ``'NoneType' object has no attribute 'writelines'``)."""
        if self._initialized:
            return
        async with self._initializing:
            if not self._initialized:
                await self.redis.initialize()
                self._initialized = True

    # -- commands: a cluster-level failure is the broker being unavailable (503), as on one Redis
    async def publish(self, *args: Any, **kwargs: Any) -> Publication:
        try:
            await self._initialize()
            async with self._commands:
                return await super().publish(*args, **kwargs)
        except RedisClusterException as exc:   # e.g. a slot no node serves, mid-failover
            raise _unavailable(exc) from exc

    async def ping(self) -> None:
        try:
            await self._initialize()
            await super().ping()
        except RedisClusterException as exc:
            raise _unavailable(exc) from exc

    # -- pipelines (publish_many, broker_ha.py, and the reads of one loop iteration) ------------
    # One cluster pipeline: redis-py sends each node its commands in one round trip, in order (a
    # channel stays on one node, so its publications keep their order). EVAL with the script's
    # text, not EVALSHA: a replica promoted in a failover has no script cache, and a NOSCRIPT
    # inside a pipeline would have to be retried out of order.
    def _pipeline(self) -> Any:
        return self.redis.pipeline()

    async def _queue_script(self, pipe: Any, script: Any, keys: list, args: list) -> None:
        pipe.eval(script.script, len(keys), *keys, *args)

    async def _execute(self, pipe: Any) -> list:
        try:
            await self._initialize()
            async with self._commands:
                return await pipe.execute()
        except RedisClusterException as exc:
            raise _unavailable(exc) from exc

    def _latest_groups(self, streams: list[str]) -> list[list[str]]:
        """One latest read per stream: a stream's two keys are in its channel's slot, and one
        script call may not read across slots."""
        return [[stream] for stream in streams]

    # -- upstream subscriptions ---------------------------------------------------------------
    async def subscribe_upstream(self, channel: str) -> None:
        """SSUBSCRIBE on the channel's primary and wait for the confirmation (bounded)."""
        self._wanted.add(channel)
        try:
            await asyncio.wait_for(self._ready.wait(), CONFIRM_TIMEOUT_SECONDS)
            fut = await self._ssubscribe(channel)
            await asyncio.wait_for(asyncio.shield(fut), CONFIRM_TIMEOUT_SECONDS)
        except (RedisError, RedisClusterException, OSError, asyncio.TimeoutError) as exc:
            # A moved slot or a lost node: the listener starts over and resyncs.
            log.warning("upstream subscribe %s not confirmed: %s", channel, type(exc).__name__)

    async def unsubscribe_upstream(self, channel: str) -> None:
        self._wanted.discard(channel)
        shard = self._shards.get(self._on_shard.pop(channel, ""))
        if shard is not None:
            key = self._key("ch", channel).encode()
            shard.leaving[key] = shard.leaving.get(key, 0) + 1
            try:
                await shard.pubsub.sunsubscribe(key)
            except (RedisError, OSError):
                pass
        await super().unsubscribe_upstream(channel)

    async def _ssubscribe(self, channel: str) -> asyncio.Future:
        """Send SSUBSCRIBE to the channel's current primary, on this generation's connection to
        it (opened here if need be); the future is the confirmation. Between generations it
        sends nothing: the next one subscribes every wanted channel."""
        key = self._key("ch", channel)
        fut = self._confirm.get(channel)
        if fut is None or fut.done():
            fut = self._confirm[channel] = asyncio.get_running_loop().create_future()
        async with self._shard_lock:
            queue = self._queue
            if queue is None:
                return fut
            try:
                node = self.redis.get_node_from_key(key)
            except RedisClusterException:   # a slot no node serves now: start over, later
                queue.put_nowait(_LOST)
                raise
            shard = self._shards.get(node.name)
            if shard is None:
                shard = _Shard(node.name, self._node_client(node.host, node.port))
                try:
                    await shard.pubsub.ssubscribe(key)   # connects
                except BaseException:
                    queue.put_nowait(_LOST)   # a wanted channel is not heard: start over
                    await _close(shard)
                    raise
                if self._queue is not queue:   # the generation ended meanwhile
                    await _close(shard)
                    return fut
                self._shards[node.name] = shard
                shard.task = asyncio.get_running_loop().create_task(
                    self._read(shard, queue), name=f"pulse-shard-{node.name}")
                self._on_shard[channel] = shard.name
                return fut
        self._on_shard[channel] = shard.name
        await shard.pubsub.ssubscribe(key)
        return fut

    # -- the listener -------------------------------------------------------------------------
    async def listen(self) -> AsyncIterator[Publication | _Resync]:
        """Yield publications from every shard; after any shard was lost, start over (slot map,
        subscriptions, confirmations) and yield RESYNC."""
        delay = RECONNECT_MIN_SECONDS
        first = True
        while not self._closed:
            queue: asyncio.Queue = asyncio.Queue()
            try:
                await self._open(queue, refresh=not first)
            except Exception as exc:  # whatever it was, start over: never skip the RESYNC
                if isinstance(exc, (RedisError, RedisClusterException, OSError,
                                    asyncio.TimeoutError)):
                    log.warning("redis cluster listener connect failed (%s: %s); retry in "
                                "%.2fs", type(exc).__name__, exc, delay)
                else:
                    log.exception("redis cluster listener connect failed; retry in %.2fs",
                                  delay)
                await self._teardown()
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, RECONNECT_MAX_SECONDS)
                continue
            if not first:
                self.reconnects += 1
                log.info("redis cluster listener resubscribed on %d shards", len(self._shards))
                yield RESYNC
            first = False
            delay = RECONNECT_MIN_SECONDS
            self._ready.set()
            try:
                while True:
                    item = await queue.get()
                    if item is _LOST:
                        break
                    yield item
            finally:
                self._ready.clear()
                await self._teardown()

    async def _open(self, queue: asyncio.Queue, refresh: bool) -> None:
        cluster = self.redis
        await self._initialize()
        if refresh:  # the slot map as it is now (after a failover or a slot move)
            await cluster.nodes_manager.initialize()
        self._queue = queue
        if self.raw_channels:  # classic pub/sub reaches every node: any one will do
            node = random.choice(cluster.get_primaries())
            self._seed = _Shard(node.name, self._node_client(node.host, node.port))
            await self._seed.pubsub.subscribe(*self.raw_channels)
            self._seed.task = asyncio.get_running_loop().create_task(
                self._read(self._seed, queue), name="pulse-raw-channels")
        confirmations = [await self._ssubscribe(channel) for channel in list(self._wanted)]
        if confirmations:
            await asyncio.wait_for(asyncio.gather(*map(asyncio.shield, confirmations)),
                                   CONFIRM_TIMEOUT_SECONDS)

    async def _teardown(self) -> None:
        shards = list(self._shards.values()) + ([self._seed] if self._seed else [])
        self._shards, self._seed, self._queue = {}, None, None
        self._on_shard.clear()
        for shard in shards:
            if shard.task is not None and shard.task is not asyncio.current_task():
                shard.task.cancel()
        for shard in shards:
            if shard.task is not None and shard.task is not asyncio.current_task():
                await asyncio.gather(shard.task, return_exceptions=True)
            await _close(shard)

    async def _read(self, shard: _Shard, queue: asyncio.Queue) -> None:
        """One connection's reader: messages into the queue; on any loss, ``_LOST``."""
        head = f"{self.prefix}ch:{{".encode()
        try:
            while not self._closed:
                message = await shard.pubsub.get_message(timeout=1.0)
                if message is None:
                    continue
                kind = message["type"]
                channel: bytes = message["channel"]
                if kind == "smessage":
                    publication = self._parse_own(message["data"])
                elif kind == "message":
                    publication = parse_raw_message(self.raw_channels, channel.decode(),
                                                    message["data"])
                elif kind == "ssubscribe":
                    fut = self._confirm.pop(self._channel_of(channel), None)
                    if fut is not None and not fut.done():
                        fut.set_result(None)
                    continue
                elif kind == "sunsubscribe":
                    if shard.leaving.get(channel):
                        shard.leaving[channel] -= 1
                        if not shard.leaving[channel]:
                            del shard.leaving[channel]
                    elif channel.startswith(head) and self._channel_of(channel) in self._wanted:
                        # The node gave the slot away (resharding, or it is a replica now).
                        log.warning("redis cluster: %s dropped %s (slot moved)", shard.name,
                                    channel.decode())
                        queue.put_nowait(_LOST)
                        return
                    continue
                else:
                    continue
                if publication is not None:
                    queue.put_nowait(publication)
        except asyncio.CancelledError:
            raise
        except (RedisError, OSError) as exc:
            if not self._closed:
                log.warning("redis cluster listener lost %s: %s", shard.name,
                            type(exc).__name__)
            queue.put_nowait(_LOST)
        except Exception:  # a reader that ended silently would leave its shard unheard
            log.exception("redis cluster reader of %s failed", shard.name)
            queue.put_nowait(_LOST)


async def _close(shard: _Shard) -> None:
    try:
        await shard.pubsub.aclose()
        await shard.client.aclose()
    except (RedisError, OSError):
        pass


def _unavailable(exc: Exception) -> RedisError:
    return RedisConnectionError(f"Redis Cluster: {type(exc).__name__}: {exc}")
