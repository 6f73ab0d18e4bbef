"""What Sentinel and Cluster add to the Redis broker: offsets that survive a failover honestly.

Redis replicates asynchronously. When a primary dies, the replica promoted in its place may lack
its last few writes: a stream's offset counter steps back, and the next publications reuse
offsets that some processes already delivered (other data at the same numbers). The hub drops a
publication whose offset it has already dispatched, so without more, a subscriber would skip the
new ones silently. Two things prevent that:

1. **A new epoch, and a jump in offsets, after every change of writer.** The publish script
   (:func:`failover_lua`, derived from the single-Redis ``PUBLISH_LUA``) keeps, per stream,
   the ``master_replid`` of the Redis that last wrote it (``{prefix}writer:{stream}``). A
   promoted replica, a restarted node and a node that took the slot in a resharding each have
   another replication id, so the stream's first publication there starts a new epoch, and its
   offset jumps :data:`REWIND_GAP` past what the node has: an offset that a lost write took is
   never given to another publication, and whoever saw a number from before sees a hole and
   recovers, with or without an epoch to show. The epoch travels with every message
   (``<unix ts> <epoch>\\n<frame>``).
2. **Reads checked against the epoch this process knows.** The broker remembers, per stream of
   each channel it listens to, the epoch of the newest message, history or latest it saw. A
   history read without an epoch (the listener's resync after a reconnect, its gap fill) is
   checked against it: after a failover, offsets from before are not trusted, and the hub tells
   the stream's subscribers to recover (``recovered: false``), exactly as after Redis lost its
   data. A resume by a client with an old epoch is refused the same way.

What stays unprotected is what Redis itself does not guarantee: a publication acknowledged by a
primary that died before replicating it, and delivered to no process, is lost without anyone
able to notice (docs/scaling.md, "Failure behaviour").
"""
from __future__ import annotations

from .broker import History, Publication, stream_name
from .broker_redis import PUBLISH_LUA, RedisBroker

# How far a stream's offsets jump when its writer changed: more than a replica can lag behind
# in publications of one stream, so no offset a lost write took is ever given out again.
REWIND_GAP = 1_000_000

_EPOCH_LINES = "local epoch = redis.call('GET', KEYS[3])\n"
_WRITER_CHECK = (
    "local epoch = redis.call('GET', KEYS[3])\n"
    "local replid = string.match(redis.call('INFO', 'replication'), 'master_replid:(%w+)')\n"
    "if redis.call('GET', KEYS[5]) ~= replid then\n"
    "  epoch = false\n"
    "  redis.call('SET', KEYS[5], replid)\n"
    "  if offset > 1 then\n"
    f"    offset = redis.call('INCRBY', KEYS[1], {REWIND_GAP})\n"
    "  end\n"
    "end\n")
_USER_EXPIRY = "  redis.call('PEXPIRE', KEYS[3], ARGV[10])\n"
_PUBLISH_LINE = "redis.call('PUBLISH', ARGV[1], ARGV[6] .. '\\n' .. frame)\n"


def failover_lua(publish_command: str) -> str:
    """``PUBLISH_LUA`` with the writer check, the epoch in the message, and ``publish_command``
    (``PUBLISH``, or ``SPUBLISH`` on a cluster). KEYS[5] is the stream's writer key.

    Derived, not copied, so the two scripts cannot drift: a change to ``PUBLISH_LUA`` that
    removes a line this relies on fails here, at import."""
    script = PUBLISH_LUA
    for line, new in ((_EPOCH_LINES, _WRITER_CHECK),
                      (_USER_EXPIRY, _USER_EXPIRY + "  redis.call('PEXPIRE', KEYS[5], ARGV[10])\n"),
                      (_PUBLISH_LINE, f"redis.call('{publish_command}', ARGV[1], "
                                      "ARGV[6] .. ' ' .. epoch .. '\\n' .. frame)\n")):
        if script.count(line) != 1:
            raise RuntimeError(f"PUBLISH_LUA changed: cannot derive the failover script at "
                               f"{line.strip()!r}")
        script = script.replace(line, new)
    return script


class WriterEpochs:
    """Mixed into a :class:`RedisBroker` subclass whose ``publish_lua`` is :func:`failover_lua`."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[call-arg]
        self._epochs: dict[str, dict[str, str]] = {}  # channel -> stream -> newest epoch seen

    def _call(self, channel, data, user, publication_id, body_hash, id_ttl_seconds,
              history_size, history_ttl_seconds):
        keys, args, data_json, now = super()._call(  # type: ignore[misc]
            channel, data, user, publication_id, body_hash, id_ttl_seconds, history_size,
            history_ttl_seconds)
        keys.append(self._key("writer", stream_name(channel, user)))  # type: ignore[attr-defined]
        return keys, args, data_json, now

    async def publish_many(self, requests: list[dict], *, batch_id: str | None = None,
                           batch_id_ttl_seconds: float = 30.0) -> list[Publication]:
        """As a pipeline of the failover script, never the single-Redis batch script (it has no
        writer check, and on a cluster its keys span slots). A batch without ids of its own
        gets one per publication from ``batch_id``, so a retried call still publishes nothing
        twice (and answers the first call's offsets, marked ``duplicate``)."""
        if batch_id is not None and not any(r.get("publication_id") for r in requests):
            requests = [{**r, "publication_id": f"{batch_id}:{i}",
                         "id_ttl_seconds": batch_id_ttl_seconds}
                        for i, r in enumerate(requests)]
        return await self._publish_pipelined(requests)  # type: ignore[attr-defined]

    def _remember(self, channel: str, stream: str, epoch: str) -> None:
        if epoch and channel in self._wanted:  # type: ignore[attr-defined]
            self._epochs.setdefault(channel, {})[stream] = epoch

    def known_epoch(self, channel: str, user: int | None = None) -> str | None:
        return self._epochs.get(channel, {}).get(stream_name(channel, user))

    async def latest(self, channel: str, *, user: int | None = None) -> tuple[int, str]:
        offset, epoch = await super().latest(channel, user=user)  # type: ignore[misc]
        self._remember(channel, stream_name(channel, user), epoch)
        return offset, epoch

    async def history(self, channel: str, since: int, *, user: int | None = None,
                      epoch: str | None = None) -> History:
        if epoch is None:
            epoch = self.known_epoch(channel, user)
        result = await super().history(channel, since, user=user,  # type: ignore[misc]
                                       epoch=epoch)
        self._remember(channel, stream_name(channel, user), result.epoch)
        return result

    async def unsubscribe_upstream(self, channel: str) -> None:
        await super().unsubscribe_upstream(channel)  # type: ignore[misc]
        if channel not in self._wanted:  # type: ignore[attr-defined]
            self._epochs.pop(channel, None)

    def _parse_own(self, raw: bytes) -> Publication | None:
        head, sep, frame = raw.partition(b"\n")
        stamp, _, epoch = head.partition(b" ")
        publication = RedisBroker._parse_own(stamp + sep + frame)
        if publication is not None and epoch:
            self._remember(publication.channel,
                           stream_name(publication.channel, publication.user), epoch.decode())
        return publication

