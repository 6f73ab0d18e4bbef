"""``/ws``: the multiplexed WebSocket (DESIGN §5, §6, §10).

The handler task reads and answers client frames; it never writes publications. Those reach the
socket through the connection's outbox: written directly by the hub's flusher on a real Hypercorn
socket, or by a small writer task elsewhere. One liveness task per process pings idle sockets,
drops silent ones and expires tokens — no timer task per connection.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from quart import Blueprint, Quart, websocket

from . import channels, protocol
from .auth import Principal, token_from_request, verify_token
from .errors import Unauthorized
from .hub import Connection, LimitExceeded
from .outbox import Outbox
from .protocol import CloseCode
from .web import services

log = logging.getLogger("pulse.ws")
bp = Blueprint("ws", __name__)

PING_FRAME = b"\x89\x00"
CLOSE_HANDSHAKE_SECONDS = 5.0


class Session:
    """What the handler, the liveness task and shutdown share about one WebSocket."""

    __slots__ = ("ws", "conn", "tap", "hub", "last_seen", "closing", "expiry", "tokens",
                 "stamp", "dropped", "close_task")

    def __init__(self, ws: Any, conn: Connection, tap: Any, hub: Any) -> None:
        self.ws = ws
        self.conn = conn
        self.tap = tap
        self.hub = hub
        self.last_seen = time.monotonic()
        self.closing = False
        self.expiry: asyncio.TimerHandle | None = None
        self.tokens = 0.0   # inbound rate limiter (token bucket)
        self.stamp = time.monotonic()
        self.dropped = 0
        self.close_task: asyncio.Task | None = None

    def seen(self) -> float:
        return max(self.last_seen, self.tap.last_seen) if self.tap is not None else self.last_seen

    def close(self, code: int, reason: str) -> None:
        """Close from any task, once: leave the hub now (nothing more is queued or written),
        then send the close frame; a peer that cannot take it in time is cut off."""
        if self.closing:
            return
        self.closing = True
        self.hub.disconnect(self.conn)
        if self.expiry is not None:
            self.expiry.cancel()
        self.close_task = asyncio.get_running_loop().create_task(self._close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        try:
            await asyncio.wait_for(self.ws.close(int(code), reason), CLOSE_HANDSHAKE_SECONDS)
        except asyncio.TimeoutError:
            # A stalled peer: the close frame is stuck behind unread data.
            if self.tap is not None:
                self.tap.transport.abort()
        except Exception:  # the peer may be gone already
            pass

    def arm_expiry(self, principal: Principal) -> None:
        if self.expiry is not None:
            self.expiry.cancel()
        loop = asyncio.get_running_loop()
        delay = max(0.0, principal.expires_at - time.time())
        self.expiry = loop.call_later(delay, self.close, CloseCode.UNAUTHORIZED, "Token expired")


async def _authenticate(svc) -> Principal:
    """Token from query/cookie/header, else a first frame ``{"action":"auth"}`` within 5 s."""
    token = token_from_request(websocket.args, websocket.cookies, websocket.headers)
    if token:
        return verify_token(svc.settings.jwt_secret, token)
    try:
        raw = await asyncio.wait_for(websocket.receive(), svc.settings.limits.auth_timeout_seconds)
    except asyncio.TimeoutError:
        raise Unauthorized("Authentication required: no token and no auth frame in time") from None
    try:
        frame = json.loads(raw)
    except (ValueError, TypeError):
        frame = None
    if not isinstance(frame, dict) or frame.get("action") != "auth":
        raise Unauthorized('Authentication required: send {"action":"auth","token":…} first')
    token = frame.get("token")
    return verify_token(svc.settings.jwt_secret, token if isinstance(token, str) else None)


@bp.websocket("/ws")
async def ws_endpoint() -> None:
    svc = services()
    ws = websocket._get_current_object()
    await ws.accept()
    try:
        principal = await _authenticate(svc)
    except Unauthorized as exc:
        svc.metrics.auth_failures += 1
        await ws.close(CloseCode.UNAUTHORIZED, exc.detail)
        return
    if svc.shutting_down:
        await ws.close(CloseCode.SERVICE_RESTART, "Server is shutting down")
        return

    session: Session | None = None

    def on_overflow() -> None:
        # Called from inside hub.dispatch: close on the next loop iteration, never while the
        # hub is iterating the channel's subscribers.
        svc.metrics.slow_consumer_closes += 1
        if session is not None:
            asyncio.get_running_loop().call_soon(
                session.close, CloseCode.SLOW_CONSUMER, "slow consumer")

    outbox = Outbox(svc.settings.limits.outbox_messages, on_overflow, svc.metrics)
    conn = Connection(principal, outbox, "ws")
    try:
        svc.hub.connect(conn)
    except LimitExceeded as exc:
        await ws.close(CloseCode.TOO_MANY, str(exc))
        return
    tap = ws.scope.get("extensions", {}).get("pulse.tap") if hasattr(ws, "scope") else None
    session = Session(ws, conn, tap, svc.hub)
    session.tokens = svc.settings.limits.max_messages_per_second
    conn.closer = session.close
    sessions: dict = svc.ws_sessions
    sessions[conn.id] = session
    session.arm_expiry(principal)
    writer = None
    if tap is not None:
        outbox.use_transport(tap.transport, svc.flusher)
    else:
        writer = asyncio.get_running_loop().create_task(_write(ws, outbox))
    log.info("ws connected", extra={"conn_id": conn.id, "user_id": principal.user_id})
    try:
        await _read_loop(svc, session)
        if session.close_task is not None:  # the reader decided to close: let the frame out
            await session.close_task
            await _discard_until_closed(ws)
    except asyncio.CancelledError:
        raise  # Quart cancels the handler when the client disconnects
    finally:
        sessions.pop(conn.id, None)
        if session.expiry is not None:
            session.expiry.cancel()
        svc.hub.disconnect(conn)
        if writer is not None:
            writer.cancel()
        log.info("ws disconnected", extra={"conn_id": conn.id, "user_id": principal.user_id})


async def _discard_until_closed(ws: Any) -> None:
    """Keep reading after our close frame until the client answers it (bounded).

    Hypercorn hands frames to the app through a bounded queue; if the handler stopped reading,
    frames the client sent before seeing our close would fill it, Hypercorn would block and never
    read the client's closing handshake.
    """
    try:
        async with asyncio.timeout(CLOSE_HANDSHAKE_SECONDS):
            while True:
                await ws.receive()
    except TimeoutError:
        pass


async def _write(ws: Any, outbox: Outbox) -> None:
    """Writer for servers without the socket tap: one ``send`` per queued frame."""
    try:
        while not outbox.closed:
            for item in await outbox.drain():
                await ws.send(item.frame.decode())
    except asyncio.CancelledError:
        raise
    except Exception:  # the socket went away; the reader sees the disconnect
        outbox.close()


def _rate_ok(svc, session: Session) -> bool:
    """Token bucket: ``max_messages_per_second`` sustained, a burst of as many."""
    rate = svc.settings.limits.max_messages_per_second
    now = time.monotonic()
    session.tokens = min(rate, session.tokens + (now - session.stamp) * rate)
    session.stamp = now
    if session.tokens >= 1.0:
        session.tokens -= 1.0
        return True
    return False


MAX_DROPPED_BEFORE_CLOSE = 100


async def _read_loop(svc, session: Session) -> None:
    limits = svc.settings.limits
    outbox = session.conn.outbox
    while not session.closing:
        raw = await websocket.receive()
        session.last_seen = time.monotonic()
        svc.metrics.messages_in += 1
        if not _rate_ok(svc, session):
            svc.metrics.dropped += 1
            session.dropped += 1
            if session.dropped >= MAX_DROPPED_BEFORE_CLOSE:
                session.close(CloseCode.TOO_MANY, "Rate limit exceeded")
                return
            if session.dropped == 1 or session.dropped % 10 == 0:
                outbox.push(protocol.error(
                    f"Rate limit exceeded (max {limits.max_messages_per_second:g} messages/s): "
                    "message dropped"))
            continue
        if isinstance(raw, (bytes, bytearray)):
            outbox.push(protocol.error("Binary frames are not supported: send JSON text"))
            continue
        if len(raw) > limits.max_frame_bytes or len(raw.encode()) > limits.max_frame_bytes:
            outbox.push(protocol.error(f"Frame too large (max {limits.max_frame_bytes} bytes)"))
            continue
        try:
            frame = json.loads(raw)
        except ValueError:
            outbox.push(protocol.error("Invalid JSON"))
            continue
        if not isinstance(frame, dict):
            outbox.push(protocol.error("Invalid frame: a JSON object is required"))
            continue
        await _handle(svc, session, frame)


async def _handle(svc, session: Session, frame: dict) -> None:
    action = frame.get("action")
    handler = _HANDLERS.get(action) if isinstance(action, str) else None
    if handler is None:
        shown = action if isinstance(action, str) else json.dumps(action)
        session.conn.outbox.push(protocol.error(f"Unknown action: {shown[:64]}"))
        return
    await handler(svc, session, frame)


async def _handle_subscribe(svc, session: Session, frame: dict) -> None:
    conn = session.conn
    channel = frame.get("channel")
    problem = channels.check(channel, conn.principal)
    if problem:
        named = channel if isinstance(channel, str) and (
            len(channel) <= channels.MAX_CHANNEL_LENGTH) else None
        conn.outbox.push(protocol.error(problem, named))
        return
    since = frame.get("since")
    if since is not None and (isinstance(since, bool) or not isinstance(since, int) or since < 0):
        conn.outbox.push(protocol.error(
            "Invalid 'since': a non-negative integer offset is required", channel))
        return
    try:
        ok = await svc.hub.subscribe(conn, channel, since)
    except Exception as exc:
        log.warning("subscribe %s failed: %s", channel, type(exc).__name__)
        conn.outbox.push(protocol.error(
            f"Temporarily unavailable: cannot subscribe to {channel}", channel))
        return
    if ok and channel == "dashboard":
        await send_snapshot(svc, conn)


async def send_snapshot(svc, conn: Connection) -> None:
    """Queue the caller's current stats as a ``stats_update`` on ``dashboard`` (no offset)."""
    if svc.stats_provider is None:
        return
    from .broker import Publication

    try:
        stats = await svc.stats_provider(conn.user_id)
    except Exception as exc:
        log.warning("dashboard snapshot failed: %s", type(exc).__name__)
        return
    if "dashboard" in conn.subs:
        data = {"type": "stats_update", "user_id": conn.user_id, **stats}
        conn.outbox.push(Publication("dashboard", data, None))


async def _handle_unsubscribe(svc, session: Session, frame: dict) -> None:
    channel = frame.get("channel")
    if not isinstance(channel, str) or not channel:
        session.conn.outbox.push(
            protocol.error("Missing or invalid 'channel': a non-empty string is required"))
        return
    svc.hub.unsubscribe(session.conn, channel)


async def _handle_ping(svc, session: Session, frame: dict) -> None:
    session.conn.outbox.push(protocol.pong(frame.get("ts"), echo="ts" in frame))


async def _handle_auth(svc, session: Session, frame: dict) -> None:
    """Extend a live session with a fresh token for the same user."""
    token = frame.get("token")
    try:
        principal = verify_token(svc.settings.jwt_secret, token if isinstance(token, str) else None)
    except Unauthorized as exc:
        session.conn.outbox.push(protocol.error(f"Authentication failed: {exc.detail}"))
        return
    if principal.user_id != session.conn.user_id:
        session.conn.outbox.push(protocol.error("Authentication failed: token is for another user"))
        return
    session.conn.principal = principal
    session.arm_expiry(principal)
    session.conn.outbox.push(protocol.ControlFrame(
        {"type": "authenticated", "expires_at": int(principal.expires_at)}))


_HANDLERS = {
    "subscribe": _handle_subscribe,
    "unsubscribe": _handle_unsubscribe,
    "ping": _handle_ping,
    "auth": _handle_auth,
}


# -- process-wide liveness and shutdown ---------------------------------------------------
async def liveness(svc) -> None:
    """Ping idle WebSockets, close silent ones (4009); heartbeat SSE streams."""
    cfg = svc.settings.liveness
    period = max(0.05, min(cfg.ping_interval_seconds, cfg.sse_heartbeat_seconds,
                           cfg.idle_timeout_seconds) / 2)
    while True:
        await asyncio.sleep(period)
        now = time.monotonic()
        for session in list(svc.ws_sessions.values()):
            idle = now - session.seen()
            if idle >= cfg.idle_timeout_seconds:
                session.close(CloseCode.IDLE_TIMEOUT, "idle timeout")
            elif idle >= cfg.ping_interval_seconds and session.tap is not None:
                transport = session.tap.transport
                if not transport.is_closing():
                    transport.write(PING_FRAME)
        for beat in list(svc.sse_heartbeats):
            beat(now)


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


def install(app: Quart, svc) -> None:
    def recover(conn: Connection) -> None:
        closer = getattr(conn, "closer", None)
        if closer is not None:
            closer(CloseCode.RECOVER, "recover from history")

    svc.hub.on_recover = recover
    svc.background.append(liveness)

    async def _drain() -> None:
        await close_all(svc)

    svc.shutdown_hooks.append(_drain)
