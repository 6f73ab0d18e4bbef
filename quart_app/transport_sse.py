"""``/sse?channels=a,b``: the Server-Sent Events fallback (DESIGN §4, §9, §10).

Same auth sources and channel rules as ``/ws`` (answered 400/401/403 before streaming), the same
frames as ``data:`` lines. Each publication carries an ``id:`` cursor naming the last offset of
every channel of the stream (``dashboard:12,mining:40``); the browser sends it back as
``Last-Event-ID`` when it reconnects, and the stream resumes exactly like ``subscribe`` with
``since``. A comment line goes out when the stream was quiet for the heartbeat interval.
"""
from __future__ import annotations

import logging
import time

from quart import Blueprint, make_response, request

from . import channels
from .errors import BadRequest, Forbidden, ServiceUnavailable, TooManyRequests
from .hub import Connection, LimitExceeded
from .outbox import Outbox
from .transport_ws import send_snapshot
from .web import current_principal, services

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


def parse_cursor(value: str | None) -> dict[str, int]:
    """``"dashboard:12,mining:40"`` -> ``{"dashboard": 12, "mining": 40}``; BadRequest if malformed."""
    cursor: dict[str, int] = {}
    if not value:
        return cursor
    for part in value.split(","):
        channel, sep, offset = part.strip().rpartition(":")
        if not sep or not channel or not offset.isdigit():
            raise BadRequest(f"Malformed Last-Event-ID: {value[:100]!r}")
        cursor[channel] = int(offset)
    return cursor


def format_cursor(cursor: dict[str, int]) -> bytes:
    return ",".join(f"{ch}:{off}" for ch, off in cursor.items()).encode()


def _requested_channels() -> list[str]:
    raw = request.args.get("channels", "")
    names = [name.strip() for name in raw.split(",") if name.strip()]
    if not names:
        raise BadRequest("Query parameter 'channels' is required, e.g. ?channels=dashboard,mining")
    if len(names) > MAX_CHANNELS_PER_STREAM:
        raise BadRequest(f"Too many channels (max {MAX_CHANNELS_PER_STREAM})")
    return list(dict.fromkeys(names))


@bp.get("/sse")
async def sse_stream():
    svc = services()
    principal = current_principal()
    names = _requested_channels()
    for name in names:
        problem = channels.check(name, principal)
        if problem:
            raise (Forbidden if problem.startswith("Forbidden") else BadRequest)(problem)
    cursor = parse_cursor(request.headers.get("Last-Event-ID")
                          or request.args.get("last_event_id"))
    if svc.shutting_down:
        raise ServiceUnavailable("Server is shutting down")

    def on_overflow() -> None:
        svc.metrics.slow_consumer_closes += 1

    outbox = Outbox(svc.settings.limits.outbox_messages, on_overflow, svc.metrics)
    conn = Connection(principal, outbox, "sse")
    try:
        svc.hub.connect(conn)
    except LimitExceeded as exc:
        raise TooManyRequests(str(exc)) from None
    try:
        for name in names:
            await svc.hub.subscribe(conn, name, cursor.get(name))
    except Exception as exc:
        svc.hub.disconnect(conn)
        log.warning("sse subscribe failed: %s", type(exc).__name__)
        raise ServiceUnavailable("Temporarily unavailable: cannot subscribe") from None
    if "dashboard" in names:
        await send_snapshot(svc, conn)
    # The cursor names, per channel, the last offset this stream has actually written: the
    # client's own position until a channel's replay and ack have gone out.
    positions = {name: cursor[name] for name in names if name in cursor}
    heartbeat = svc.settings.liveness.sse_heartbeat_seconds
    last_write = [time.monotonic()]

    def beat(now: float) -> None:
        if now - last_write[0] >= heartbeat:
            outbox.push(HEARTBEAT)

    def end() -> None:
        outbox.close()

    conn.closer = lambda code, reason: outbox.close()
    svc.sse_heartbeats.add(beat)
    svc.sse_closers.add(end)

    async def stream():
        try:
            yield b"retry: %d\n: connected\n\n" % svc.settings.liveness.sse_retry_ms
            while True:
                items = await outbox.drain()
                if not items:
                    return  # closed: shutdown, slow consumer or recovery
                chunks = []
                for item in items:
                    ack = item.ack
                    if ack is not None:
                        positions[ack[0]] = ack[1]
                    elif item.offset is not None:
                        positions[item.channel] = item.offset
                        chunks.append(b"id: " + format_cursor(positions) + b"\n")
                    chunks.append(item.sse_data())
                last_write[0] = time.monotonic()
                yield b"".join(chunks)
        finally:
            svc.sse_heartbeats.discard(beat)
            svc.sse_closers.discard(end)
            svc.hub.disconnect(conn)

    response = await make_response(stream(), 200, {
        "Content-Type": "text/event-stream; charset=utf-8",
        "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no",
    })
    response.timeout = None
    return response
