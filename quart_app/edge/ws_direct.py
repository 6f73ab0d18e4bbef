"""The direct ``/ws`` endpoint: one small asyncio protocol object per WebSocket (see direct.py
for how a connection gets here).

After the ``101``, client bytes are parsed by a :class:`~quart_app.edge.ws_protocol.FrameReader`
(the ``websockets`` library's sans-I/O protocol, within Pulse's limits) and messages handled by
the same :class:`~quart_app.realtime.session.Session` as the Quart route; publications are
written by the hub's flusher straight to the transport. Protocol violations close with 1002,
invalid UTF-8 with 1007, a message over ``websocket_max_message_size`` (or in too many
fragments) with 1009, a frame flood with 1008 — then TCP closes (docs/protocol.md).
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import time
from typing import Any

from .routing import Head, hand_over, http_date, refuse, upgrade_key
from .ws_protocol import FRAME_RATE, FrameReader, lone_pong
from ..errors import Unauthorized
from ..realtime.protocol import CloseCode
from ..realtime.session import CLOSE_HANDSHAKE_SECONDS, Reply, Session, end_session, open_session, \
    principal_from_auth_frame

log = logging.getLogger("pulse.ws")

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

_AUTH, _OPEN, _CLOSING, _CLOSED = range(4)


# -- the handshake -------------------------------------------------------------------------
def accept_response(key: str) -> bytes:
    accept = base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest())
    return (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept
            + b"\r\nDate: " + http_date() + b"\r\n\r\n")



def serve_websocket(svc, config, request: Head, reader, writer,
                    pending: bytes) -> tuple[str, int, Any] | None:
    """Take the connection if ``request`` is a well-formed upgrade (``("websocket", 101,
    protocol)``), or
    refuse a malformed one with a JSON error (RFC 6455 §4.2.2: 426 for another version, else
    400); None leaves anything else (a plain GET) to Quart."""
    key = upgrade_key(request)
    if key is None:
        if "websocket" not in request.tokens("upgrade"):
            return None
        transport = writer.transport
        if request.headers.get("sec-websocket-version") != "13":
            refuse(transport, 426, "Upgrade Required",
                   "Unsupported WebSocket version: this server speaks version 13",
                   (("sec-websocket-version", "13"),))
            return "http", 426, None
        refuse(transport, 400, "Bad Request", "Invalid WebSocket handshake: it needs "
               "'Connection: Upgrade' and a Sec-WebSocket-Key of 16 base64-encoded bytes")
        return "http", 400, None
    protocol = DirectWebSocket(svc, writer.transport, config.websocket_max_message_size)
    hand_over(reader, writer, protocol)
    protocol.accept(key, request, pending)
    return "websocket", 101, protocol


# -- the connection ------------------------------------------------------------------------
PRE_AUTH_MAX_MESSAGE = 16 * 1024  # an auth frame carries a token, nothing more
LINGER_SECONDS = 2.0  # after our FIN, how long a client may take to close its side


class DirectWebSocket(asyncio.Protocol):
    """One WebSocket after the handshake: the endpoint of its Session. Client bytes go through
    a :class:`~quart_app.edge.ws_protocol.FrameReader` (the limits are documented there)."""

    __slots__ = ("svc", "transport", "last_seen", "session", "state", "max_message", "frames",
                 "_timer", "_busy", "_backlog", "_keep", "_paused", "on_lost",
                 "_budget_full_at")

    def __init__(self, svc: Any, transport: Any, max_message: int) -> None:
        self.svc = svc
        self.transport = transport
        self.last_seen = time.monotonic()
        self.session: Session | None = None
        self.state = _AUTH
        self.max_message = max_message
        self.frames: FrameReader | None = None  # made when bytes arrive, dropped when idle
        self._timer: asyncio.TimerHandle | None = None   # auth deadline, then close deadline
        self._busy: asyncio.Task | None = None           # an action awaiting I/O (subscribe)
        self._backlog: list | None = None                # frames that arrived meanwhile
        self._keep: Any = None
        self._paused = False
        self.on_lost: Any = None
        self._budget_full_at = 0.0

    # -- lifecycle -----------------------------------------------------------------------
    def accept(self, key: str, request: Head, pending: bytes) -> None:
        """Answer the upgrade (``101``) on the socket this protocol now owns, and start."""
        self.transport.write(accept_response(key))
        self.start(request.token(), pending)

    def start(self, token: str | None, pending: bytes) -> None:
        """Right after the 101: authenticate from the request, or wait for an auth frame."""
        if token:
            try:
                principal = self.svc.tokens.verify(token)
            except Unauthorized as exc:
                self.svc.metrics.auth_failures += 1
                self.close(CloseCode.UNAUTHORIZED, exc.detail)
                return
            self._open(principal)
        else:
            self._timer = asyncio.get_running_loop().call_later(
                self.svc.settings.limits.auth_timeout_seconds, self._auth_timeout)
        if pending and self.state < _CLOSED:
            self.data_received(pending)

    def _auth_timeout(self) -> None:
        if self.state == _AUTH:
            self.svc.metrics.auth_failures += 1
            self.close(CloseCode.UNAUTHORIZED,
                       "Authentication required: no token and no auth frame in time")

    def _open(self, principal: Any) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.state = _OPEN
        if self.frames is not None:
            self.frames.max_message = self.max_message
        self.session = open_session(self.svc, self, principal)

    def close(self, code: int, reason: str) -> None:
        """Send our close frame once; the peer has CLOSE_HANDSHAKE_SECONDS to answer it."""
        if self.state >= _CLOSING:
            return
        self.state = _CLOSING
        if self._timer is not None:
            self._timer.cancel()
        transport = self.transport
        if transport.is_closing():
            return
        if self.session is not None:
            # What the session queued before it closed (pongs, errors) goes out first: frames
            # leave in the order the server produced them, the close frame last. Not when the
            # socket is backed up (a slow consumer): then only the close frame is owed.
            self.session.conn.outbox.flush_direct(self.svc.flusher.high_water)
        transport.write(self._reader().close(code, reason))
        self._timer = asyncio.get_running_loop().call_later(
            CLOSE_HANDSHAKE_SECONDS, transport.abort)
        self._resume()  # the peer's close frame must still be read

    def _shut(self, code: int, reason: str) -> None:
        if self.session is not None:
            self.session.close(code, reason)
        else:
            self.close(code, reason)

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = _CLOSED
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._backlog = None
        if self.on_lost is not None:
            edge, self.on_lost = self.on_lost, None
            edge.release_socket(self)
        session = self.session
        if session is not None:
            session.closing = True
            if self._busy is None:
                end_session(self.svc, session)
            # else: the action in flight ends the session when it is done. It is not cancelled:
            # a database call cut in half can leave its aiosqlite thread behind, and shutdown
            # (which waits for sessions to end) should wait for it too.

    def eof_received(self) -> bool:
        return False  # the transport closes itself (after our FIN too: the connection is done)

    # -- flow control: a client that does not read is not read from ------------------------
    def pause_writing(self) -> None:
        if not self._paused and self.state < _CLOSING:
            self._paused = True
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._resume()

    def _resume(self) -> None:
        if self._paused:
            self._paused = False
            if not self.transport.is_closing():
                self.transport.resume_reading()

    # -- reading -------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.state == _CLOSED:
            return  # after our FIN: dropped
        now = self.last_seen = time.monotonic()
        if self.frames is None and self.state == _OPEN and lone_pong(data):
            # The answer to our ping on an idle connection: charged to the frame budget as the
            # reader would (while it lasts; past it the reader fails the connection).
            full_at = max(self._budget_full_at, now) + 1.0 / FRAME_RATE
            if full_at - now <= 2.0:
                self._budget_full_at = full_at
                return
        transport = self.transport
        reader = self._reader()
        for event in reader.feed(data, transport.get_write_buffer_size()):
            kind = event[0]
            if kind == "message":
                if self.state == _CLOSING:
                    continue  # we are closing: the client's data no longer matters
                self._message(event[1])
            elif kind == "write":
                chunk = event[1]
                if chunk[0] == 0x88 and self.state < _CLOSING:
                    self._failing()  # the reader failed the connection: this is its close
                if not transport.is_closing():
                    transport.write(chunk)
            elif kind == "closed":
                # The peer closed; the reader already answered. Nothing more goes out.
                if self.state < _CLOSING:
                    self.state = _CLOSING
                    if self.session is not None:
                        self.session.closing = True
            else:  # "eof": the closing handshake is done, or the connection failed
                self._end_tcp()
                return
            if self.state == _CLOSED:
                return
        if self.frames is reader and reader.idle():
            # An idle connection holds no reader and no parser, only when its frame budget is
            # whole again (a float).
            self._budget_full_at = reader.full_at()
            self.frames = None

    def _reader(self) -> FrameReader:
        reader = self.frames
        if reader is None:
            reader = self.frames = FrameReader(
                self.max_message if self.state != _AUTH else
                min(self.max_message, PRE_AUTH_MAX_MESSAGE))
            if self._budget_full_at:
                reader.resume_budget(self._budget_full_at)
        return reader

    def _failing(self) -> None:
        """Before the reader's close frame: what the session queued goes out first (frames
        leave in the order the server produced them), and nothing more is queued."""
        self.state = _CLOSING
        session = self.session
        if session is not None:
            session.conn.outbox.flush_direct(self.svc.flusher.high_water)
            session.stop_output()

    def _end_tcp(self) -> None:
        """Close our side now (FIN); what the client still sends is read and dropped until it
        closes too or a short grace ends, so our close frame is not lost to a reset."""
        self.state = _CLOSED
        if self.session is not None:
            self.session.closing = True
        transport = self.transport
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if transport.is_closing():
            return
        self._resume()
        if transport.can_write_eof():
            transport.write_eof()
            self._timer = asyncio.get_running_loop().call_later(LINGER_SECONDS, transport.abort)
        else:
            transport.close()

    # -- messages ------------------------------------------------------------------------
    def _message(self, message: str | bytes) -> None:
        session = self.session
        if session is None:  # the first frame of a connection that brought no token
            try:
                principal = principal_from_auth_frame(self.svc, message)
            except Unauthorized as exc:
                self.svc.metrics.auth_failures += 1
                self.close(CloseCode.UNAUTHORIZED, exc.detail)
                return
            self._open(principal)
            return
        if session.closing or not session.admit(self._backlog):
            return
        if self._busy is not None:
            self._backlog.append(message)  # type: ignore[union-attr]
            return
        pending = session.receive(message)
        if pending is not None:
            self._backlog = []
            self._busy = asyncio.get_running_loop().create_task(self._finish(pending))

    async def _finish(self, pending: Any) -> None:
        """Await an action, then the frames that arrived meanwhile, in order."""
        session = self.session
        try:
            await pending
            while self._backlog and not session.closing:  # type: ignore[union-attr]
                message = self._backlog.pop(0)  # type: ignore[union-attr]
                if type(message) is Reply:
                    session.conn.outbox.push(message.item)
                    continue
                pending = session.receive(message)
                if pending is not None:
                    await pending
        except Exception:  # a bug must cost this connection only, and be seen
            log.exception("ws action failed")
            self._shut(CloseCode.INTERNAL_ERROR, "Internal error")
        finally:
            self._busy = None
            self._backlog = None
            if self.state == _CLOSED:
                end_session(self.svc, session)  # type: ignore[arg-type]
