"""The hub: connections, channel subscriptions, fan-out. No Quart or Redis imports.

``dispatch`` is synchronous and never awaits a socket: it hands the publication (encoded once by
the broker) to every recipient's bounded :class:`~quart_app.realtime.outbox.Outbox`.

Recovery without gap or duplicate (DESIGN §9): a subscription starts *buffering*; the hub makes
sure the upstream subscription is live, then reads history (or the latest offset), queues the
replay, the ``subscribed`` ack and whatever arrived meanwhile, skipping anything at or below the
offset already delivered. From then on a subscription drops publications whose offset is not
above the last one it delivered, so a publication racing the replay is delivered exactly once.
"""
from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass
from typing import Any, Callable

from . import namespaces, protocol
from .auth import Principal
from .broker import Broker, Publication, stream_name
from .outbox import Outbox

_ids = itertools.count(1)


def _published_at(publication: Any) -> float:
    return publication.published_at


@dataclass(slots=True)
class Resume:
    """Where a subscriber stands on a channel after reading its spaces (:func:`read_spaces`)."""

    publications: list       # missed ones, in the order they went out
    latest: int              # the channel's last offset
    user_latest: int | None  # the caller's own space's (user-targeted channels only)
    recovered: bool
    epoch: str               # the joined epoch (protocol.join_epoch)


async def read_spaces(broker: Broker, channel: str, user: int, since: int | None,
                      user_since: int | None, epoch: str | None) -> Resume:
    """Read the channel's space and, on a user-targeted channel, the caller's own: what was
    missed after ``since`` / ``user_since`` (or only the latest offsets), for a subscribe and
    for ``/history`` alike. ``recovered`` is true only if every space asked was recovered."""
    targeted = namespaces.targets_user(channel)
    shared_epoch, user_epoch = protocol.split_epoch(epoch)
    # Both spaces are asked at once: a broker that batches reads answers them in one trip.
    reads = [broker.latest(channel) if since is None else
             broker.history(channel, since, epoch=shared_epoch)]
    if targeted:
        reads.append(broker.latest(channel, user=user) if user_since is None else
                     broker.history(channel, user_since, user=user, epoch=user_epoch))
    if all(isinstance(read, asyncio.Future) for read in reads):
        answers = [await read for read in reads]  # asked already: no task per read
    else:
        answers = await asyncio.gather(*reads)
    found: list = []
    recovered = since is not None or user_since is not None
    if since is None:
        latest, current = answers[0]
    else:
        history = answers[0]
        latest, current = history.latest, history.epoch
        found += history.publications
        recovered = recovered and history.complete
    user_latest = user_current = None
    if targeted:
        if user_since is None:
            user_latest, user_current = answers[1]
        else:
            mine = answers[1]
            user_latest, user_current = mine.latest, mine.epoch
            recovered = recovered and mine.complete
            if found and mine.publications:
                found = sorted(found + mine.publications, key=_published_at)
            else:
                found += mine.publications
        # another user's, published in the shared space (not through Engine.publish)
        found = [p for p in found if p.user is not None or p.user_id in (None, user)]
    return Resume(found, latest, user_latest, recovered,
                  protocol.join_epoch(current, user_current))


class Subscription:
    """``last``: the channel's offset delivered last; ``user_last``: the same in the caller's own
    space on a user-targeted channel (None elsewhere)."""

    __slots__ = ("last", "user_last", "pending")

    def __init__(self) -> None:
        self.last = 0
        self.user_last: int | None = None
        self.pending: list | None = []   # buffering until the subscribe completes


class Connection:
    """One client session (WebSocket or SSE) as the hub sees it."""

    __slots__ = ("id", "principal", "outbox", "subs", "transport", "opened_at", "closer",
                 "__weakref__")

    def __init__(self, principal: Principal, outbox: Outbox, transport: str) -> None:
        self.id = f"c{next(_ids)}"
        self.principal = principal
        self.outbox = outbox
        self.transport = transport
        self.subs: dict[str, Subscription] = {}
        self.opened_at = time.time()
        self.closer: Callable[[int, str], None] | None = None

    @property
    def user_id(self) -> int:
        return self.principal.user_id


class LimitExceeded(Exception):
    pass


class Hub:
    def __init__(self, broker: Broker, metrics: Any, max_connections_per_user: int = 20,
                 max_subscriptions: int = 100) -> None:
        self.broker = broker
        self.metrics = metrics
        self.max_connections_per_user = max_connections_per_user
        self.max_subscriptions = max_subscriptions
        self._connections: dict[str, Connection] = {}
        self._channels: dict[str, set[Connection]] = {}
        self._users: dict[int, set[Connection]] = {}
        self._open: dict[str, int] = {}  # open connections per transport (metrics, cluster)
        self._departures = self._swept = 0  # subscriptions ended, and as of the last sweep
        self._arrivals = 0                   # subscriptions begun
        self._upstream: dict[str, asyncio.Future] = {}
        # Highest offset dispatched per upstream channel: the listener's gap and dup check.
        self.last_offset: dict[str, int] = {}
        self.on_recover: Callable[[Connection], None] = lambda conn: None
        # presence.Presence (set by the engine): told when a subscription is live and when it ends.
        self.presence: Any = None

    # -- connections -------------------------------------------------------------------
    def connect(self, conn: Connection) -> None:
        """Register ``conn``; LimitExceeded if its user already has the maximum."""
        users = self._users.get(conn.user_id)
        if users is not None and len(users) >= self.max_connections_per_user:
            raise LimitExceeded(
                f"Too many connections for this user (max {self.max_connections_per_user})")
        self._connections[conn.id] = conn
        if users is None:
            users = self._users[conn.user_id] = set()
        users.add(conn)
        self._open[conn.transport] = self._open.get(conn.transport, 0) + 1
        self.metrics.count_accepted(conn.transport)

    def disconnect(self, conn: Connection) -> None:
        """Forget ``conn`` and every subscription it held. Idempotent."""
        if self._connections.pop(conn.id, None) is None:
            return
        self._open[conn.transport] -= 1
        if self.presence is not None:
            self.presence.gone(conn)
        for channel in conn.subs:
            self._leave(conn, channel)
        conn.subs.clear()
        users = self._users.get(conn.user_id)
        if users is not None:
            users.discard(conn)
            if not users:
                del self._users[conn.user_id]
        conn.outbox.close()

    def _leave(self, conn: Connection, channel: str) -> None:
        self._departures += 1
        members = self._channels.get(channel)
        if members is not None:
            members.discard(conn)
            if not members:
                del self._channels[channel]

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    def count_by_transport(self) -> dict[str, int]:
        """Open connections per transport, every known one present: kept as they open and
        close, so a scrape or a heartbeat does not walk 10,000 connections."""
        from .metrics import TRANSPORTS

        counts = dict.fromkeys(TRANSPORTS, 0)
        counts.update(self._open)
        return counts

    def connections(self) -> list[Connection]:
        return list(self._connections.values())

    def subscribers(self, channel: str) -> set[Connection]:
        return self._channels.get(channel, set())

    @property
    def changes(self) -> int:
        """Grows with every subscription begun or ended: unchanged, so is every member set."""
        return self._arrivals + self._departures

    def subscription_count(self) -> int:
        return sum(len(members) for members in self._channels.values())

    def get_stats(self) -> dict:
        """Seed 000's ``ConnectionManager.get_stats`` shape."""
        return {
            "total_connections": len(self._connections),
            "unique_users": len(self._users),
            "channels": {ch: len(members) for ch, members in self._channels.items()},
        }

    # -- subscriptions -----------------------------------------------------------------
    async def _ensure_upstream(self, channel: str) -> None:
        ready = self._upstream.get(channel)
        if ready is not None and ready.done():
            ready.result()  # the common case: live (or its failure, raised)
            return
        if ready is None:
            ready = self._upstream[channel] = asyncio.get_running_loop().create_future()
            try:
                await self.broker.subscribe_upstream(channel)
            except BaseException as exc:
                del self._upstream[channel]
                ready.set_exception(exc)
                ready.exception()  # mark retrieved; the caller sees `exc` below
                raise
            ready.set_result(None)
        else:
            await asyncio.shield(ready)

    async def subscribe(self, conn: Connection, channel: str, since: int | None = None,
                        user_since: int | None = None, epoch: str | None = None) -> bool:
        """Subscribe and queue (replay, ack, buffered live) on the outbox; False if refused.

        On a user-targeted channel the caller's own offset space is read too (``user_since``
        resumes it); ``recovered`` is true only if every space asked to resume was recovered.
        Errors from the broker propagate after the half-made subscription is undone.
        """
        if channel in conn.subs:
            self._leave(conn, channel)
            del conn.subs[channel]
        elif len(conn.subs) >= self.max_subscriptions:
            conn.outbox.push(protocol.error(
                f"Subscription limit reached (max {self.max_subscriptions} channels)", channel))
            return False
        sub = conn.subs[channel] = Subscription()
        self._arrivals += 1
        self._channels.setdefault(channel, set()).add(conn)
        user = conn.user_id
        try:
            await self._ensure_upstream(channel)
            at = await read_spaces(self.broker, channel, user, since, user_since, epoch)
        except BaseException:
            if conn.subs.get(channel) is sub:
                del conn.subs[channel]
                self._leave(conn, channel)
            raise
        if conn.subs.get(channel) is not sub:  # unsubscribed or disconnected meanwhile
            return False
        self.last_offset.setdefault(channel, at.latest)
        if at.user_latest is not None:
            self.last_offset.setdefault(stream_name(channel, user), at.user_latest)
        sub.last = at.latest
        sub.user_last = at.user_latest
        conn.outbox.push_replay([*at.publications, protocol.subscribed(
            channel, at.latest, at.recovered, at.epoch, at.user_latest)])
        pending, sub.pending = sub.pending, None
        for publication in pending or ():
            self._deliver(sub, conn.outbox, publication)
        if self.presence is not None:
            self.presence.joined(conn, channel)
        return True

    def unsubscribe(self, conn: Connection, channel: str) -> None:
        if conn.subs.pop(channel, None) is not None:
            self._leave(conn, channel)
            if self.presence is not None:
                self.presence.left(conn, channel)
        conn.outbox.push(protocol.unsubscribed(channel))

    def idle_upstream(self) -> list[str]:
        """Forget upstream channels nobody here subscribes to; return them (to unsubscribe).
        Users' own spaces nobody here follows any more are forgotten too."""
        idle = [ch for ch, ready in self._upstream.items()
                if ch not in self._channels and ready.done()]
        for channel in idle:
            del self._upstream[channel]
            self.last_offset.pop(channel, None)
        if self._departures != self._swept:  # else no user's own space can have lost its last
            self._swept = self._departures   # subscriber: 10,000 idle dashboards cost nothing
            for stream in [s for s in self.last_offset if "#" in s]:
                channel, _, user = stream.rpartition("#")
                if not any(channel in c.subs for c in self._users.get(int(user), ())):
                    del self.last_offset[stream]
        return idle

    def wants_upstream(self, channel: str) -> bool:
        return channel in self._upstream or channel in self._channels

    def upstream_channels(self) -> list[str]:
        return [ch for ch, ready in self._upstream.items() if ready.done()]

    # -- fan-out -----------------------------------------------------------------------
    @staticmethod
    def _deliver(sub: Subscription, outbox: Outbox, publication: Any) -> bool:
        offset = publication.offset
        if offset is not None:
            if publication.user is not None:
                if sub.user_last is None or offset <= sub.user_last:
                    return False
                sub.user_last = offset
            else:
                if offset <= sub.last:
                    return False
                sub.last = offset
        return outbox.push(publication)

    def stream_of(self, publication: Publication) -> str:
        return stream_name(publication.channel, publication.user)

    def dispatch(self, publication: Publication) -> int:
        """Hand ``publication`` to every recipient's outbox; return how many got it."""
        channel = publication.channel
        members = self._channels.get(channel)
        offset = publication.offset
        user = publication.user
        if offset is not None and channel in self._upstream:
            stream = channel if user is None else stream_name(channel, user)
            last = self.last_offset.get(stream)
            if (last is not None or user is None) and offset > (last or 0):
                self.last_offset[stream] = offset
        if not members:
            return 0
        if user is not None:
            members = [c for c in self._users.get(user, ()) if channel in c.subs]
        elif namespaces.targets_user(channel):
            # In the shared space but for one user (a raw seed PUBLISH, or a publish that did
            # not go through Engine.publish): still only to that user.
            user_id = publication.user_id
            if user_id is not None:
                members = [c for c in self._users.get(user_id, ()) if channel in c.subs]
        delivered = 0
        deliver = self._deliver
        for conn in members:
            sub = conn.subs[channel]
            if sub.pending is not None:
                sub.pending.append(publication)
            elif deliver(sub, conn.outbox, publication):
                delivered += 1
        metrics = self.metrics
        metrics.publications += 1
        if delivered:
            metrics.messages_out += delivered
            metrics.delivery_latency.observe(max(0.0, time.time() - publication.published_at),
                                             delivered)
        return delivered

    def send_to_user(self, user_id: int, channel: str, item: Any) -> int:
        """Queue ``item`` for ``user_id``'s connections on this process subscribed to ``channel``."""
        sent = 0
        for conn in self._users.get(user_id, ()):
            sub = conn.subs.get(channel)
            if sub is not None and sub.pending is None and conn.outbox.push(item):
                sent += 1
        return sent

    # -- after an upstream outage ------------------------------------------------------
    async def resync(self) -> int:
        """Fetch what every upstream channel missed and dispatch it; recover who can't be."""
        replayed = 0
        upstream = set(self.upstream_channels())
        streams = [(ch, None) for ch in upstream] + [
            (s.rpartition("#")[0], int(s.rpartition("#")[2])) for s in list(self.last_offset)
            if "#" in s and s.rpartition("#")[0] in upstream]
        for channel, user in streams:
            stream = stream_name(channel, user)
            since = self.last_offset.get(stream, 0)
            history = await self.broker.history(channel, since, user=user)
            if history.complete:
                for publication in history.publications:
                    self.dispatch(publication)
                    replayed += 1
            else:
                for conn in list(self._channels.get(channel, ())):
                    if user is None or conn.user_id == user:
                        self.on_recover(conn)
                self.last_offset[stream] = history.latest
        return replayed
