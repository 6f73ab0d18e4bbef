"""The direct ``/ws`` endpoint: one small asyncio protocol object per WebSocket (see direct.py
for how a connection gets here).

After the ``101``, frames are parsed in ``data_received`` and handled by the same
:class:`~quart_app.session.Session` as the Quart route; publications are written by the
hub's flusher straight to the transport. Client frames follow RFC 6455 §5: masked, fragmented or
not, control frames answered in place (ping → pong, close → close). Protocol violations close
with 1002, invalid UTF-8 with 1007, a message over ``websocket_max_message_size`` with 1009.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import time
from email.utils import formatdate
from typing import Any

from ..realtime.auth import verify_token
from .routing import Head, hand_over, refuse
from ..errors import Unauthorized
from ..realtime.protocol import CloseCode
from ..realtime.session import CLOSE_HANDSHAKE_SECONDS, Reply, Session, end_session, open_session, \
    principal_from_auth_frame

log = logging.getLogger("pulse.ws")

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

_AUTH, _OPEN, _CLOSING, _CLOSED = range(4)


# -- the handshake -------------------------------------------------------------------------
def upgrade_key(request: Head) -> str | None:
    """The Sec-WebSocket-Key of a well-formed version-13 upgrade, else None."""
    if "websocket" not in request.tokens("upgrade") or "upgrade" not in request.tokens(
            "connection"):
        return None
    if request.headers.get("sec-websocket-version") != "13":
        return None
    key = request.headers.get("sec-websocket-key", "")
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            return None
    except ValueError:
        return None
    return key


def accept_response(key: str) -> bytes:
    accept = base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest())
    return (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept
            + b"\r\nDate: " + formatdate(usegmt=True).encode() + b"\r\n\r\n")


def serve_websocket(svc, config, request: Head, reader, writer,
                    pending: bytes) -> tuple[str, int] | None:
    """Take the connection if ``request`` is a well-formed upgrade (``("websocket", 101)``), or
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
            return "http", 426
        refuse(transport, 400, "Bad Request", "Invalid WebSocket handshake: it needs "
               "'Connection: Upgrade' and a Sec-WebSocket-Key of 16 base64-encoded bytes")
        return "http", 400
    transport = writer.transport
    protocol = DirectWebSocket(svc, transport, config.websocket_max_message_size)
    hand_over(reader, writer, protocol)
    transport.write(accept_response(key))
    protocol.start(request.token(), pending)
    return "websocket", 101


# -- frames --------------------------------------------------------------------------------
def _unmask(payload: bytes, mask: bytes) -> bytes:
    n = len(payload)
    if n == 0:
        return b""
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


def close_frame(code: int, reason: str = "") -> bytes:
    """A close frame; the reason is cut to the 123 bytes allowed, never inside a character."""
    text = reason.encode()[:123].decode("utf-8", "ignore").encode()
    body = int(code).to_bytes(2, "big") + text
    return bytes((0x88, len(body))) + body


class DirectWebSocket(asyncio.Protocol):
    """One WebSocket after the handshake: the frame parser, the endpoint of its Session."""

    __slots__ = ("svc", "transport", "last_seen", "session", "state", "max_message", "_buf",
                 "_frag", "_frag_op", "_skip", "_timer", "_busy", "_backlog", "_keep")

    def __init__(self, svc: Any, transport: Any, max_message: int) -> None:
        self.svc = svc
        self.transport = transport
        self.last_seen = time.monotonic()
        self.session: Session | None = None
        self.state = _AUTH
        self.max_message = max_message
        self._buf = b""
        self._frag: list[bytes] | None = None
        self._frag_op = 0
        self._skip = 0
        self._timer: asyncio.TimerHandle | None = None   # auth deadline, then close deadline
        self._busy: asyncio.Task | None = None           # an action awaiting I/O (subscribe)
        self._backlog: list | None = None                # frames that arrived meanwhile
        self._keep: Any = None

    # -- lifecycle -----------------------------------------------------------------------
    def start(self, token: str | None, pending: bytes) -> None:
        """Right after the 101: authenticate from the request, or wait for an auth frame."""
        if token:
            try:
                principal = verify_token(self.svc.settings.jwt_secret, token)
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
        self.session = open_session(self.svc, self, principal)

    def close(self, code: int, reason: str) -> None:
        """Send our close frame once; the peer has CLOSE_HANDSHAKE_SECONDS to answer it."""
        if self.state >= _CLOSING:
            return
        self.state = _CLOSING
        self._frag = None
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
        transport.write(close_frame(code, reason))
        self._timer = asyncio.get_running_loop().call_later(
            CLOSE_HANDSHAKE_SECONDS, transport.abort)

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
        self._buf = b""
        session = self.session
        if session is not None:
            session.closing = True
            if self._busy is None:
                end_session(self.svc, session)
            # else: the action in flight ends the session when it is done. It is not cancelled:
            # a database call cut in half can leave its aiosqlite thread behind, and shutdown
            # (which waits for sessions to end) should wait for it too.

    def eof_received(self) -> bool:
        return False  # the transport closes itself

    # -- reading -------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.state == _CLOSED:
            return
        self.last_seen = time.monotonic()
        if self._skip:  # the rest of a refused frame
            if len(data) <= self._skip:
                self._skip -= len(data)
                return
            data = data[self._skip:]
            self._skip = 0
        if self._buf:
            data = self._buf + data
            self._buf = b""
        pos = 0
        end = len(data)
        while end - pos >= 2:
            b0 = data[pos]
            b1 = data[pos + 1]
            length = b1 & 0x7F
            head = pos + 2
            if length == 126:
                if end - pos < 4:
                    break
                length = int.from_bytes(data[head:head + 2], "big")
                head += 2
            elif length == 127:
                if end - pos < 10:
                    break
                length = int.from_bytes(data[head:head + 8], "big")
                head += 8
            problem = None
            if not b1 & 0x80:
                problem = (CloseCode.PROTOCOL_ERROR, "Client frames must be masked")
            elif b0 & 0x70:
                problem = (CloseCode.PROTOCOL_ERROR, "Reserved bits set without an extension")
            elif length > self.max_message:
                problem = (CloseCode.MESSAGE_TOO_BIG,
                           f"Message too big (max {self.max_message} bytes)")
            if problem is not None:
                # Refuse the frame but keep the framing: skip its payload and go on reading,
                # so the client's answer to our close frame still ends the connection cleanly.
                self._shut(*problem)
                if length > 16 * self.max_message:  # not worth reading through: hang up
                    self.state = _CLOSED
                    self.transport.close()
                    return
                stop = head + (4 if b1 & 0x80 else 0) + length
                if stop > end:
                    self._skip = stop - end
                    return
                pos = stop
                continue
            stop = head + 4 + length
            if stop > end:
                break
            payload = _unmask(data[head + 4:stop], data[head:head + 4])
            pos = stop
            self._frame(b0 & 0x80, b0 & 0x0F, payload)
            if self.state == _CLOSED:
                return
        if pos < end:
            self._buf = data[pos:]

    def _fail(self, code: int, reason: str) -> None:
        """A violation inside a frame: close (what the client sends meanwhile is ignored)."""
        self._frag = None
        self._shut(code, reason)

    def _frame(self, fin: int, opcode: int, payload: bytes) -> None:
        if opcode >= 0x8:
            if not fin or len(payload) > 125:
                return self._fail(CloseCode.PROTOCOL_ERROR, "Invalid control frame")
            if opcode == 0x8:
                return self._close_received(payload)
            if opcode == 0x9:
                if self.state < _CLOSING:
                    self.transport.write(bytes((0x8A, len(payload))) + payload)
                return None
            if opcode == 0xA:
                return None
            return self._fail(CloseCode.PROTOCOL_ERROR, f"Unknown opcode {opcode}")
        if opcode == 0x0:
            if self._frag is None:
                return self._fail(CloseCode.PROTOCOL_ERROR, "Continuation frame without a message")
            self._frag.append(payload)
            if sum(map(len, self._frag)) > self.max_message:
                return self._fail(CloseCode.MESSAGE_TOO_BIG,
                                  f"Message too big (max {self.max_message} bytes)")
            if not fin:
                return None
            payload = b"".join(self._frag)
            opcode = self._frag_op
            self._frag = None
        elif opcode in (0x1, 0x2):
            if self._frag is not None:
                return self._fail(CloseCode.PROTOCOL_ERROR, "New message before the last one ended")
            if not fin:
                self._frag = [payload]
                self._frag_op = opcode
                return None
        else:
            return self._fail(CloseCode.PROTOCOL_ERROR, f"Unknown opcode {opcode}")
        if self.state >= _CLOSING:
            return None  # we are closing: the client's data no longer matters
        message: str | bytes = payload
        if opcode == 0x1:
            try:
                message = payload.decode()
            except UnicodeDecodeError:
                return self._fail(CloseCode.INVALID_DATA, "Invalid UTF-8 in a text frame")
        self._message(message)
        return None

    def _close_received(self, payload: bytes) -> None:
        if self.state < _CLOSING:
            # Echo the client's code (RFC 6455 §5.5.1), then close the TCP connection.
            if self.session is not None:
                self.session.closing = True
            self.transport.write(close_frame(int.from_bytes(payload[:2], "big"))
                                 if len(payload) >= 2 else b"\x88\x00")
        self.state = _CLOSED
        self.transport.close()

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
