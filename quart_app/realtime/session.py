"""One authenticated WebSocket as the protocol sees it (DESIGN §5, §6, §10), whoever owns the
socket.

A :class:`Session` takes client frames (:meth:`Session.admit`, :meth:`Session.receive`), answers
through its connection's outbox, and closes through its *endpoint*, the object that owns the
socket. There are two endpoints:

* the **direct endpoint** (:mod:`quart_app.edge.ws_direct`): under Hypercorn's asyncio worker every
  well-formed ``/ws`` upgrade that opens a connection is served by a small asyncio protocol of
  its own — no task, queue or request context per connection; publications are written straight
  to the socket by the hub's flusher;
* the **Quart route** (:mod:`quart_app.edge.transport_ws`), for everything else (another ASGI
  server, Quart's test client, ``PULSE_WS_DEFLATE=true``, a kept-alive connection): a handler
  task reads frames with ``websocket.receive``.

One liveness task per process pings idle sockets, drops silent ones and expires tokens — no
timer task per connection.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Awaitable

from . import namespaces as channels, protocol
from .auth import Principal
from ..errors import Unauthorized
from .hub import Connection, LimitExceeded
from .outbox import Outbox
from .protocol import CloseCode

log = logging.getLogger("pulse.ws")

PING_FRAME = b"\x89\x00"
CLOSE_HANDSHAKE_SECONDS = 5.0
MAX_DROPPED_BEFORE_CLOSE = 100
# How long a subscribe's ack may wait for its snapshot, to leave in the same write.
SNAPSHOT_HOLD_SECONDS = 0.1
AUTH_REQUIRED = 'Authentication required: send {"action":"auth","token":…} first'

class Session:
    """What the frame handlers, the liveness task and shutdown share about one WebSocket."""

    __slots__ = ("svc", "endpoint", "conn", "hub", "last_seen", "closing", "expiry", "tokens",
                 "stamp", "dropped")

    def __init__(self, svc: Any, endpoint: Any) -> None:
        self.svc = svc
        self.endpoint = endpoint
        self.conn: Connection = None  # type: ignore[assignment]  # set by open_session
        self.hub = svc.hub
        self.last_seen = time.monotonic()
        self.closing = False
        self.expiry: asyncio.TimerHandle | None = None
        self.tokens = svc.settings.limits.max_messages_per_second  # inbound token bucket
        self.stamp = self.last_seen
        self.dropped = 0

    def seen(self) -> float:
        return max(self.last_seen, self.endpoint.last_seen)

    def close(self, code: int, reason: str) -> None:
        """Close from anywhere, once: leave the hub now (nothing more is queued or written),
        then let the endpoint send the close frame; a peer that cannot take it in time is cut
        off by the endpoint."""
        if self.closing:
            return
        self.closing = True
        self.hub.disconnect(self.conn)
        if self.expiry is not None:
            self.expiry.cancel()
        self.endpoint.close(code, reason)

    def stop_output(self) -> None:
        """The endpoint sent a close frame of its own (Hypercorn's 1009): leave the hub, so
        nothing more is queued or written after it."""
        self.closing = True
        self.hub.disconnect(self.conn)

    def on_overflow(self) -> None:
        # Called from inside hub.dispatch: close on the next loop iteration, never while the
        # hub is iterating the channel's subscribers.
        self.svc.metrics.slow_consumer_closes += 1
        asyncio.get_running_loop().call_soon(self.close, CloseCode.SLOW_CONSUMER, "slow consumer")

    def arm_expiry(self, principal: Principal) -> None:
        if self.expiry is not None:
            self.expiry.cancel()
        loop = asyncio.get_running_loop()
        delay = max(0.0, principal.expires_at - time.time())
        self.expiry = loop.call_later(delay, self.close, CloseCode.UNAUTHORIZED, "Token expired")

    # -- client frames -------------------------------------------------------------------
    def admit(self, later: list | None = None) -> bool:
        """Count one client frame against the token bucket (``max_messages_per_second``
        sustained, a burst of as many); False when it is dropped. Persistent abuse closes.

        ``later``: the frames still waiting behind an action in flight; the drop's error is
        queued there instead of sent now, so it follows the answers to the frames before it.
        """
        svc = self.svc
        svc.metrics.messages_in += 1
        rate = svc.settings.limits.max_messages_per_second
        now = time.monotonic()
        self.last_seen = now
        self.tokens = min(rate, self.tokens + (now - self.stamp) * rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        svc.metrics.dropped += 1
        self.dropped += 1
        if self.dropped >= MAX_DROPPED_BEFORE_CLOSE:
            self.close(CloseCode.TOO_MANY, "Rate limit exceeded")
        elif self.dropped == 1 or self.dropped % 10 == 0:
            error = protocol.error(
                f"Rate limit exceeded (max {rate:g} messages/s): message dropped")
            if later is not None:
                later.append(Reply(error))
            else:
                self.conn.outbox.push(error)
        return False

    def receive(self, raw: str | bytes) -> Awaitable[None] | None:
        """Act on one admitted client frame. Returns an awaitable when the action needs I/O
        (subscribe): the caller awaits it before it hands over the next frame, so a client's
        frames take effect in the order they were sent."""
        outbox = self.conn.outbox
        if isinstance(raw, (bytes, bytearray)):
            outbox.push(protocol.error("Binary frames are not supported: send JSON text"))
            return None
        limit = self.svc.settings.limits.max_frame_bytes
        if len(raw) > limit or len(raw.encode()) > limit:
            outbox.push(protocol.error(f"Frame too large (max {limit} bytes)"))
            return None
        try:
            frame = protocol.loads(raw)
        except (ValueError, RecursionError):
            outbox.push(protocol.error("Invalid JSON"))
            return None
        if not isinstance(frame, dict):
            outbox.push(protocol.error("Invalid frame: a JSON object is required"))
            return None
        action = frame.get("action")
        handler = _HANDLERS.get(action) if isinstance(action, str) else None
        if handler is None:
            shown = action if isinstance(action, str) else json.dumps(action)
            outbox.push(protocol.error(f"Unknown action: {shown[:64]}"))
            return None
        return handler(self, frame)


def principal_from_auth_frame(svc, raw: str | bytes) -> Principal:
    """The first frame of a connection that brought no token: ``{"action":"auth","token":…}``,
    as JSON text within the frame size limit like every later frame."""
    limit = svc.settings.limits.max_frame_bytes
    if not isinstance(raw, str):
        raise Unauthorized(AUTH_REQUIRED)
    if len(raw) > limit or len(raw.encode()) > limit:
        raise Unauthorized(f"Authentication frame too large (max {limit} bytes)")
    try:
        frame = protocol.loads(raw)
    except (ValueError, TypeError, RecursionError):
        frame = None
    if not isinstance(frame, dict) or frame.get("action") != "auth":
        raise Unauthorized(AUTH_REQUIRED)
    token = frame.get("token")
    return svc.tokens.verify(token if isinstance(token, str) else None)


def open_session(svc, endpoint: Any, principal: Principal) -> Session | None:
    """Register an authenticated WebSocket with the hub; None (and the endpoint closing) when
    the service is shutting down or the user has too many connections."""
    if svc.shutting_down:
        endpoint.close(CloseCode.SERVICE_RESTART, "Server is shutting down")
        return None
    session = Session(svc, endpoint)
    outbox = Outbox(svc.settings.limits.outbox_messages, session.on_overflow, svc.metrics)
    conn = Connection(principal, outbox, "ws")
    try:
        svc.hub.connect(conn)
    except LimitExceeded as exc:
        endpoint.close(CloseCode.TOO_MANY, str(exc))
        return None
    session.conn = conn
    conn.closer = session.close
    svc.ws_sessions[conn.id] = session
    session.arm_expiry(principal)
    transport = endpoint.transport
    if transport is not None:
        outbox.use_transport(transport, svc.flusher)
    log.debug("ws connected", extra={"conn_id": conn.id, "user_id": principal.user_id})
    return session


def end_session(svc, session: Session) -> None:
    """The socket is gone: forget the session everywhere. Idempotent."""
    conn = session.conn
    if svc.ws_sessions.pop(conn.id, None) is None:
        return
    session.closing = True
    if session.expiry is not None:
        session.expiry.cancel()
    svc.hub.disconnect(conn)
    log.debug("ws disconnected", extra={"conn_id": conn.id, "user_id": conn.user_id})


class Reply:
    """A frame the server owes in its place among the client's queued frames (see admit)."""

    __slots__ = ("item",)

    def __init__(self, item: Any) -> None:
        self.item = item


# -- actions -----------------------------------------------------------------------------
def _handle_subscribe(session: Session, frame: dict) -> Awaitable[None] | None:
    conn = session.conn
    channel = frame.get("channel")
    problem = channels.check(channel, conn.principal)
    ask_proxy = problem == channels.PROXY
    if problem and not ask_proxy:
        named = channel if isinstance(channel, str) and (
            len(channel) <= channels.MAX_CHANNEL_LENGTH) else None
        conn.outbox.push(protocol.error(problem, named))
        return None
    cursor = []
    for name in ("since", "user_since"):
        value = frame.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 0 or value > protocol.MAX_OFFSET):
            conn.outbox.push(protocol.error(
                f"Invalid '{name}': a non-negative integer offset is required", channel))
            return None
        cursor.append(value)
    epoch = frame.get("epoch")
    if epoch is not None and not protocol.valid_epoch(epoch):
        conn.outbox.push(protocol.error(
            "Invalid 'epoch': the string from the last 'subscribed' ack is required", channel))
        return None
    return _subscribe(session.svc, conn, channel, cursor[0], cursor[1], epoch, ask_proxy)


async def _subscribe(svc, conn: Connection, channel: str, since: int | None,
                     user_since: int | None = None, epoch: str | None = None,
                     ask_proxy: bool = False) -> None:
    if ask_proxy:
        problem = await channels.authorize(svc, channel, conn.principal)
        if problem:
            conn.outbox.push(protocol.error(problem, channel))
            return
    snapshot = channel in svc.snapshots
    if snapshot:
        # The ack waits (briefly) for the snapshot: one write for both, not two.
        conn.outbox.hold(SNAPSHOT_HOLD_SECONDS)
    try:
        try:
            ok = await svc.hub.subscribe(conn, channel, since, user_since, epoch)
        except Exception as exc:
            # A broker outage is expected now and then; anything else is a bug, shown in full.
            outage = isinstance(exc, (OSError, TimeoutError)) or \
                type(exc).__module__.startswith("redis")
            log.warning("subscribe %s failed: %s", channel, type(exc).__name__,
                        exc_info=not outage)
            conn.outbox.push(protocol.error(
                f"Temporarily unavailable: cannot subscribe to {channel}", channel))
            return
        if ok and snapshot:
            await send_snapshot(svc, conn, channel)
    finally:
        if snapshot:
            conn.outbox.release()


async def send_snapshot(svc, conn: Connection, channel: str) -> None:
    """Queue the snapshot the app registered for ``channel`` (``Engine.snapshots``): one
    publication without an offset, right after the ack, so a client never waits for the next
    change (docs/protocol.md §5). One user's connections subscribing at once (a reconnect
    storm) share one call of the provider."""
    if channel not in svc.snapshots:
        return
    from .broker import Publication

    try:
        data = await svc.snapshot(channel, conn.user_id)
        if channel in conn.subs and data is not None:
            conn.outbox.push(Publication(channel, data, None))
    except Exception as exc:  # a failing snapshot (or one that cannot be encoded) costs itself
        log.warning("%s snapshot failed: %s", channel, type(exc).__name__)


def _handle_unsubscribe(session: Session, frame: dict) -> None:
    channel = frame.get("channel")
    if not isinstance(channel, str) or not channel:
        session.conn.outbox.push(
            protocol.error("Missing or invalid 'channel': a non-empty string is required"))
        return None
    session.hub.unsubscribe(session.conn, channel)
    return None


def _handle_ping(session: Session, frame: dict) -> None:
    session.conn.outbox.push(protocol.pong(frame.get("ts"), echo="ts" in frame))
    return None


def _handle_auth(session: Session, frame: dict) -> None:
    """Extend a live session with a fresh token for the same user."""
    token = frame.get("token")
    outbox = session.conn.outbox
    try:
        principal = session.svc.tokens.verify(token if isinstance(token, str) else None)
    except Unauthorized as exc:
        outbox.push(protocol.error(f"Authentication failed: {exc.detail}"))
        return None
    if principal.user_id != session.conn.user_id:
        outbox.push(protocol.error("Authentication failed: token is for another user"))
        return None
    session.conn.principal = principal
    session.arm_expiry(principal)
    outbox.push(protocol.ControlFrame(
        {"type": "authenticated", "expires_at": int(principal.expires_at)}))
    return None


_HANDLERS = {
    "subscribe": _handle_subscribe,
    "unsubscribe": _handle_unsubscribe,
    "ping": _handle_ping,
    "auth": _handle_auth,
}


# -- process-wide liveness and shutdown ---------------------------------------------------
async def liveness(svc) -> None:
    """Ping idle WebSockets, close silent ones (4009); heartbeat SSE streams.

    WebSockets are looked at every half ping interval (so a ping goes out 25–37.5 s into a
    silence by default), SSE streams every half heartbeat: one pass over 10,000 idle sockets
    every 12.5 s, not every 7.5 s (docs/scaling.md, "Idle connections")."""
    cfg = svc.settings.liveness
    ws_period = max(0.05, min(cfg.ping_interval_seconds, cfg.idle_timeout_seconds) / 2)
    sse_period = max(0.05, min(cfg.sse_heartbeat_seconds, cfg.idle_timeout_seconds) / 2)
    next_ws = next_sse = time.monotonic()
    while True:
        await asyncio.sleep(max(0.0, min(next_ws, next_sse) - time.monotonic()))
        now = time.monotonic()
        if now >= next_ws:
            next_ws = now + ws_period
            _ping_idle(svc, cfg, now)
        if now >= next_sse:
            next_sse = now + sse_period
            for beat in list(svc.sse_heartbeats):
                beat(now)


def _ping_idle(svc, cfg, now: float) -> None:
    # Compared as moments, not durations: one pass looks at every session (10,000 every 12.5 s).
    close_before = now - cfg.idle_timeout_seconds
    ping_before = now - cfg.ping_interval_seconds
    for session in list(svc.ws_sessions.values()):
        if session.closing:  # its close frame is out: nothing may follow it (RFC 6455 §5.5.1)
            continue
        seen = session.seen()
        if seen > ping_before:
            continue
        if seen <= close_before:
            session.close(CloseCode.IDLE_TIMEOUT, "idle timeout")
        else:
            transport = session.endpoint.transport
            if transport is not None and not transport.is_closing():
                transport.write(PING_FRAME)


async def close_all(svc, code: int = CloseCode.SERVICE_RESTART,
                    reason: str = "Server restarting") -> None:
    """SIGTERM: close every WebSocket with 1012 and end every SSE stream."""
    for session in list(svc.ws_sessions.values()):
        session.close(code, reason)
    for end in list(svc.sse_closers):
        end()
    deadline = time.monotonic() + svc.settings.liveness.shutdown_grace_seconds
    while (svc.ws_sessions or svc.sse_closers) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
