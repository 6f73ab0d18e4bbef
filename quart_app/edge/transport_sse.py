"""``/sse?channels=a,b``: the Server-Sent Events fallback (DESIGN §4, §9, §10).

Same auth sources and channel rules as ``/ws`` (answered 400/401/403 before streaming), the same
frames as ``data:`` lines. Each publication carries an ``id:`` cursor naming the last offset of
every channel of the stream (``dashboard:12,mining:40``); the browser sends it back as
``Last-Event-ID`` when it reconnects, and the stream resumes exactly like ``subscribe`` with
``since``. A comment line goes out when the stream was quiet for the heartbeat interval.

Two writers share one :class:`Stream`: the Quart route (a generator that drains the outbox) and,
for a stream that is the first request of its connection under Hypercorn, the direct endpoint
(:class:`DirectStream`, see direct.py): the hub's flusher writes each batch as one HTTP chunk,
with no task per stream.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from quart import Blueprint, make_response, request

from .routing import http_date
from ..realtime import namespaces as channels
from ..realtime.auth import Principal
from ..errors import BadRequest, Forbidden, ServiceUnavailable, TooManyRequests
from ..realtime.hub import Connection, LimitExceeded
from ..realtime.outbox import Outbox
from ..realtime.protocol import parse_offset, valid_epoch
from ..realtime.session import send_snapshot
from ..web import current_principal, services

log = logging.getLogger("pulse.sse")
bp = Blueprint("sse", __name__)

MAX_CHANNELS_PER_STREAM = 32


class _Comment:
    """A heartbeat: an SSE comment line, which EventSource ignores."""

    __slots__ = ()
    channel = None
    offset = None
    ack = None
    event_type = None
    data: dict = {}

    def sse_data(self) -> bytes:
        return b": keepalive\n\n"


HEARTBEAT = _Comment()


class _Expired(_Comment):
    """The stream's token expired: a named event (``token_expired``), then the stream ends.
    EventSource would reconnect with the same expired token; the client asks for a new one."""

    __slots__ = ()

    def sse_data(self) -> bytes:
        return (b'event: token_expired\ndata: {"type":"error","code":4001,'
                b'"message":"Token expired"}\n\n')


TOKEN_EXPIRED = _Expired()


class Position:
    """Where a stream stands on one channel: the channel's offset, the caller's own offset on a
    user-targeted channel, and the epoch they belong to."""

    __slots__ = ("offset", "user_offset", "epoch")

    def __init__(self, offset: int, user_offset: int | None = None, epoch: str | None = None):
        self.offset = offset
        self.user_offset = user_offset
        self.epoch = epoch

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Position) and (self.offset, self.user_offset, self.epoch) == (
            other.offset, other.user_offset, other.epoch)

    def __repr__(self) -> str:
        return format_cursor({"_": self}).decode()[2:]


def parse_cursor(value: str | None) -> dict[str, Position]:
    """``"dashboard:12/3@E1.E2,mining:40"`` (``<channel>:<offset>[/<user_offset>][@<epoch>]``
    per channel) -> positions; BadRequest if malformed."""
    cursor: dict[str, Position] = {}
    if not value:
        return cursor
    if len(value) > 8192:
        raise BadRequest("Malformed Last-Event-ID: too long")
    for part in value.split(","):
        channel, sep, rest = part.strip().rpartition(":")
        spot, _, epoch = rest.partition("@")
        raw_offset, slash, raw_user = spot.partition("/")
        offset = parse_offset(raw_offset) if sep and channel else None
        user_offset = parse_offset(raw_user) if slash else None
        if offset is None or (slash and user_offset is None) or (
                epoch and not valid_epoch(epoch)):
            raise BadRequest(f"Malformed Last-Event-ID: {value[:100]!r}")
        cursor[channel] = Position(offset, user_offset, epoch or None)
    return cursor


def format_cursor(cursor: dict[str, Position]) -> bytes:
    parts = []
    for channel, at in cursor.items():
        text = f"{channel}:{at.offset}"
        if at.user_offset is not None:
            text += f"/{at.user_offset}"
        if at.epoch:
            text += f"@{at.epoch}"
        parts.append(text)
    return ",".join(parts).encode()


def requested_channels(raw: str) -> list[str]:
    names = [name.strip() for name in raw.split(",") if name.strip()]
    if not names:
        raise BadRequest("Query parameter 'channels' is required, e.g. ?channels=dashboard,mining")
    if len(names) > MAX_CHANNELS_PER_STREAM:
        raise BadRequest(f"Too many channels (max {MAX_CHANNELS_PER_STREAM})")
    return list(dict.fromkeys(names))


class Stream:
    """One SSE stream as the hub sees it, whoever writes its bytes (Quart's response or a
    :class:`DirectStream`)."""

    __slots__ = ("svc", "conn", "outbox", "positions", "last_write", "on_end", "ended", "expiry")

    def __init__(self, svc, conn: Connection, positions: dict[str, Position]) -> None:
        self.svc = svc
        self.conn = conn
        self.outbox = conn.outbox
        # The cursor names, per channel, the last offset this stream has actually written: the
        # client's own position until a channel's replay and ack have gone out.
        self.positions = positions
        self.last_write = time.monotonic()
        self.on_end: Any = None  # the direct endpoint's: end the HTTP response now
        self.ended = False
        self.expiry: asyncio.TimerHandle | None = None

    def arm_expiry(self, expires_at: float) -> None:
        delay = max(0.0, expires_at - time.time())
        self.expiry = asyncio.get_running_loop().call_later(delay, self.expire)

    def expire(self) -> None:
        """The token ran out: say so (after what is already queued), then end the stream."""
        self.expiry = None
        if self.ended or self.outbox.closed:
            return
        self.svc.metrics.auth_failures += 1
        self.outbox.push(TOKEN_EXPIRED)
        asyncio.get_running_loop().call_soon(self.end)

    def preamble(self) -> bytes:
        return b"retry: %d\n: connected\n\n" % self.svc.settings.liveness.sse_retry_ms

    def render(self, items: list) -> bytes:
        """Queued items as SSE records, each publication and each ``subscribed`` ack after its
        ``id:`` cursor line (the ack's too: a stream that drops before a channel's first
        publication resumes from the ack's offset, not from live)."""
        chunks = []
        positions = self.positions
        for item in items:
            ack = item.ack
            if ack is not None:
                positions[ack[0]] = Position(ack[1], ack[2], ack[3] or None)
                chunks.append(b"id: " + format_cursor(positions) + b"\n")
            elif item.offset is not None:
                at = positions.get(item.channel)
                if at is None:
                    at = positions[item.channel] = Position(0)
                if item.user is not None:
                    at.user_offset = item.offset
                else:
                    at.offset = item.offset
                chunks.append(b"id: " + format_cursor(positions) + b"\n")
            chunks.append(item.sse_data())
        self.last_write = time.monotonic()
        return b"".join(chunks)

    def beat(self, now: float) -> None:
        if now - self.last_write >= self.svc.settings.liveness.sse_heartbeat_seconds:
            self.outbox.push(HEARTBEAT)

    def end(self, *_: Any) -> None:
        """Shutdown, recovery (4010's SSE equivalent) or a slow consumer: the stream ends and
        the browser reconnects with its Last-Event-ID."""
        self.outbox.close()
        if self.on_end is not None:
            self.on_end()

    def close(self) -> None:
        """The stream is over: forget it everywhere. Idempotent."""
        if self.ended:
            return
        self.ended = True
        if self.expiry is not None:
            self.expiry.cancel()
            self.expiry = None
        svc = self.svc
        svc.sse_heartbeats.discard(self.beat)
        svc.sse_closers.discard(self.end)
        svc.hub.disconnect(self.conn)


async def open_stream(svc, principal: Principal, channel_list: str,
                      last_event_id: str | None) -> Stream:
    """Check, register and subscribe a stream; the HTTP error to answer otherwise."""
    names = requested_channels(channel_list)
    for name in names:
        problem = await channels.authorize(svc, name, principal)
        if problem:
            raise (Forbidden if problem.startswith("Forbidden") else BadRequest)(problem)
    cursor = parse_cursor(last_event_id)
    if svc.shutting_down:
        raise ServiceUnavailable("Server is shutting down")
    stream: Stream | None = None

    def on_overflow() -> None:
        svc.metrics.slow_consumer_closes += 1
        if stream is not None and stream.on_end is not None:
            asyncio.get_running_loop().call_soon(stream.on_end)

    outbox = Outbox(svc.settings.limits.outbox_messages, on_overflow, svc.metrics)
    conn = Connection(principal, outbox, "sse")
    try:
        svc.hub.connect(conn)
    except LimitExceeded as exc:
        raise TooManyRequests(str(exc)) from None
    try:
        for name in names:
            at = cursor.get(name)
            if at is None:
                await svc.hub.subscribe(conn, name)
            else:
                await svc.hub.subscribe(conn, name, at.offset, at.user_offset, at.epoch)
    except Exception as exc:
        svc.hub.disconnect(conn)
        log.warning("sse subscribe failed: %s", type(exc).__name__)
        raise ServiceUnavailable("Temporarily unavailable: cannot subscribe") from None
    for name in names:
        if name in svc.snapshots:
            await send_snapshot(svc, conn, name)
    stream = Stream(svc, conn, {name: cursor[name] for name in names if name in cursor})
    conn.closer = stream.end
    stream.arm_expiry(principal.expires_at)
    svc.sse_heartbeats.add(stream.beat)
    svc.sse_closers.add(stream.end)
    return stream


@bp.get("/sse")
async def sse_stream():
    svc = services()
    stream = await open_stream(svc, current_principal(), request.args.get("channels", ""),
                               request.headers.get("Last-Event-ID")
                               or request.args.get("last_event_id"))

    async def body():
        try:
            yield stream.preamble()
            while True:
                items = await stream.outbox.drain()
                if not items:
                    return  # closed: shutdown, slow consumer or recovery
                yield stream.render(items)
        finally:
            stream.close()

    response = await make_response(body(), 200, dict(RESPONSE_HEADERS))
    response.timeout = None
    return response


RESPONSE_HEADERS = (
    ("Content-Type", "text/event-stream; charset=utf-8"),
    ("Cache-Control", "no-cache"),
    ("X-Accel-Buffering", "no"),
)


# -- the direct endpoint (see direct.py) ---------------------------------------------------
def _response_head(extra: list[tuple[str, str]] = ()) -> bytes:
    lines = [b"HTTP/1.1 200 OK"] + [f"{k}: {v}".encode("latin-1")
                                    for k, v in (*RESPONSE_HEADERS, *extra)]
    lines += [b"Transfer-Encoding: chunked", b"Date: " + http_date()]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _chunk(body: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(body), body)


class DirectStream(asyncio.Protocol):
    """An SSE stream on a socket Pulse serves itself: one HTTP chunk per flush, no task."""

    __slots__ = ("stream", "transport", "done", "_keep", "on_lost")

    def __init__(self, stream: Stream, transport: Any) -> None:
        self.stream = stream
        self.transport = transport
        self.done = False
        self._keep: Any = None
        self.on_lost: Any = None

    def render(self, items: list) -> bytes:
        return _chunk(self.stream.render(items))

    def finish(self) -> None:
        """End the response (the last chunk) and the connection; the browser reconnects."""
        if self.done:
            return
        self.done = True
        self.stream.close()
        if not self.transport.is_closing():
            self.transport.write(b"0\r\n\r\n")
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        pass  # the client of a stream has nothing more to say; pipelined requests are refused

    def eof_received(self) -> bool:
        return False  # the client went away: close

    def connection_lost(self, exc: Exception | None) -> None:
        self.done = True
        self.stream.close()
        if self.on_lost is not None:
            edge, self.on_lost = self.on_lost, None
            edge.release_socket(self)


async def serve_direct(svc, request: Any, reader: Any, writer: Any
                       ) -> tuple[str, int, Any] | None:
    """Take the connection if its stream opens (``("http", 200, protocol)``); None leaves it to Quart,
    which answers the same checks' errors (401, 400, 403, 429, 503) itself."""
    if request.tokens("upgrade") != {""}:
        return None
    try:
        principal = svc.tokens.verify(request.token())
        stream = await open_stream(svc, principal, request.args.get("channels", ""),
                                   request.headers.get("last-event-id")
                                   or request.args.get("last_event_id"))
    except Exception:
        return None
    from .routing import hand_over

    transport = writer.transport
    protocol = DirectStream(stream, transport)
    hand_over(reader, writer, protocol)
    if transport.is_closing() or reader.at_eof():  # the client left while we subscribed
        protocol.done = True
        stream.close()
        transport.close()
        return "http", 200, protocol
    cors = svc.origins.cors_headers(request.headers.get("origin"))
    transport.write(_response_head(cors) + _chunk(stream.preamble()))
    stream.on_end = protocol.finish
    stream.outbox.use_transport(transport, svc.flusher, protocol.render)
    return "http", 200, protocol
