"""Client bytes of one WebSocket, after the handshake, in and out of frames: I/O-free.

Frame parsing, unmasking and the protocol rules of RFC 6455 (reserved bits, opcodes, control
frame sizes, close codes and reasons, continuation order) are the ``websockets`` library's
sans-I/O :class:`websockets.protocol.Protocol`; this module adds the limits a server on the
internet needs before and after authentication (docs/protocol.md, "Limits"):

* a message is at most ``max_message`` bytes and ``max_fragments`` frames, its size tracked
  incrementally (fragments are joined once, at the end);
* every client frame is charged to a token bucket (``frame_rate`` per second, a burst of twice
  that); a client that exhausts it is failed with 1008. Bytes are parsed in slices of
  :data:`SLICE` so a flood is cut off after at most a slice of work;
* pongs are owed only while the client reads: the endpoint stops reading while its writes back
  up (``pause_writing``), and a pong that finds more than :data:`PONG_BACKLOG` bytes queued is
  dropped (RFC 6455 lets a server answer only the latest ping);
* text is checked as UTF-8 as it arrives, so invalid text fails fast with 1007.

An idle connection holds no parser: one is made when bytes arrive and let go once they end on a
frame boundary outside a fragmented message (``bench/ws_parsers.py``: ~1.1 KB kept per parser,
~10 µs to make one). Outbound publications never come through here: the hub writes pre-framed
bytes straight to the socket (docs/scaling.md).
"""
from __future__ import annotations

import codecs
import logging
import time
from typing import Any

from websockets.exceptions import PayloadTooBig, ProtocolError
from websockets.frames import Close, Opcode
from websockets.protocol import OPEN, SERVER, Protocol
from websockets.streams import StreamReader

SLICE = 4096
PONG_BACKLOG = 64 * 1024
_AT_FRAME_START = StreamReader.at_eof.__code__

# websockets logs "connection closed" at INFO for every server connection; Pulse logs its own.
_quiet = logging.getLogger("pulse.ws.frames")
_quiet.setLevel(logging.WARNING)

# What :meth:`FrameReader.feed` returns, in order: ("message", str | bytes),
# ("write", bytes), ("closed", code, reason) — the peer's close, already answered —, and
# ("eof",): close the TCP connection now.
Event = tuple


def close_frame(code: int, reason: str = "") -> bytes:
    """A server close frame; the reason cut to the 123 bytes allowed, never inside a character."""
    text = reason.encode()[:123].decode("utf-8", "ignore").encode()
    body = int(code).to_bytes(2, "big") + text
    return bytes((0x88, len(body))) + body


FRAME_RATE = 100.0   # client frames per second, a burst of twice as many (FrameReader)


def lone_pong(data: bytes) -> bool:
    """True if ``data`` is exactly one complete, masked PONG frame (FIN set, no RSV bits) with
    a payload of at most 125 bytes. A connection's parser would do nothing with it (a pong
    needs no answer), so an idle connection takes the pong to its ping without building one:
    with 10,000 idle clients that is 400 parsers a second not made. Anything else, and any
    doubt, goes to the parser; tests/test_edge_fuzz.py checks that the two agree."""
    return (len(data) <= 131 and len(data) >= 6 and data[0] == 0x8A and data[1] & 0x80 != 0
            and len(data) == 6 + (data[1] & 0x7F))


class FrameReader:
    """The inbound side of one WebSocket connection (server side, no extensions)."""

    __slots__ = ("max_message", "max_fragments", "frame_rate", "_proto", "_parts", "_decoder",
                 "_tokens", "_stamp", "closing", "closed")

    def __init__(self, max_message: int, max_fragments: int = 64,
                 frame_rate: float = FRAME_RATE):
        self.max_message = max_message
        self.max_fragments = max_fragments
        self.frame_rate = frame_rate
        self._proto: Protocol | None = None
        self._parts: list[bytes] | None = None   # the fragments of a message in progress
        self._decoder: Any = None                 # its incremental UTF-8 decoder, if text
        self._tokens = 2.0 * frame_rate
        self._stamp = time.monotonic()
        self.closing = False  # we sent a close frame
        self.closed = False   # nothing more is read

    @property
    def holds_parser(self) -> bool:
        return self._proto is not None

    def idle(self) -> bool:
        """Nothing in progress: a new reader given :meth:`full_at` would be the same."""
        return not (self._proto is not None or self.closing or self.closed
                    or self._parts is not None)

    def full_at(self) -> float:
        """When (``time.monotonic``) the frame budget will be whole again."""
        self._refill()
        return self._stamp + (2.0 * self.frame_rate - self._tokens) / self.frame_rate

    def resume_budget(self, full_at: float) -> None:
        """Carry the budget over from a reader let go while idle (see :meth:`full_at`)."""
        now = time.monotonic()
        if full_at > now:
            self._tokens = 2.0 * self.frame_rate - (full_at - now) * self.frame_rate

    def _parser(self) -> Protocol:
        proto = self._proto
        if proto is None:
            proto = self._proto = Protocol(SERVER, state=OPEN, max_size=self.max_message,
                                           logger=_quiet)
        return proto

    # -- our close -----------------------------------------------------------------------
    def close(self, code: int, reason: str = "") -> bytes:
        """Our close frame (the caller writes it); the peer's answer then ends the connection."""
        if self.closing or self.closed:
            return b""
        self.closing = True
        proto = self._parser()
        frame = close_frame(code, reason)
        proto.send_close(int.from_bytes(frame[2:4], "big"), frame[4:].decode())
        return b"".join(proto.data_to_send())

    # -- their bytes ---------------------------------------------------------------------
    def feed(self, data: bytes, backlog: int = 0) -> list[Event]:
        """Parse ``data``; ``backlog`` is how many bytes already wait to be written to the peer."""
        if self.closed:
            return []
        proto = self._parser()
        events: list[Event] = []
        queued: list[bytes] = []  # the library's writes taken early, not yet events
        for start in range(0, len(data), SLICE):
            proto.receive_data(data[start:start + SLICE])
            frames = proto.events_received()
            if frames:
                self._refill()
            for frame in frames:
                self._tokens -= 1.0
                if self._tokens < 0 and proto.state is OPEN:
                    proto.fail(1008, "Too many frames")
                    self._parts = self._decoder = None
                    break
                if frame.opcode is Opcode.PING:
                    # Its pong goes out in order with the messages around it (Autobahn 5.6);
                    # what the library queued after it (a close, the end of stream) waits.
                    queued += proto.data_to_send()
                    if queued and queued[0][:1] == b"\x8a":
                        backlog = self._emit([queued.pop(0)], events, backlog)
                    continue
                # Not proto.state: the library has parsed the whole slice, so a close or an
                # error later in it must not cut off the frames before it.
                if self._frame(frame, events):
                    break  # we failed the connection: nothing more is read
            backlog = self._writes(proto, events, backlog, queued)
            queued = []
            if self.closed or proto.parser_exc is not None or proto.state is not OPEN:
                break
        self._release()
        return events

    def _refill(self) -> None:
        now = time.monotonic()
        rate = self.frame_rate
        self._tokens = min(2.0 * rate, self._tokens + (now - self._stamp) * rate)
        self._stamp = now

    def _frame(self, frame: Any, events: list[Event]) -> bool | None:
        """Handle one frame; True if it failed the connection."""
        opcode = frame.opcode
        if opcode is Opcode.PONG:
            return None
        if opcode is Opcode.CLOSE:
            close = self._proto.close_rcvd  # type: ignore[union-attr]
            self._parts = self._decoder = None
            events.append(("closed", close.code if close else 1005, close.reason if close else ""))
            return None
        if self.closing:
            return None  # we are closing: the client's data no longer matters
        if opcode is Opcode.CONT:
            parts = self._parts
            if parts is None:  # the library already refused a stray continuation
                return None
            parts.append(frame.data)
            if len(parts) > self.max_fragments:
                return self._fail(1009, f"Message in too many fragments "
                                        f"(max {self.max_fragments})")
        else:
            if not frame.fin:
                self._parts = [frame.data]
                self._decoder = codecs.getincrementaldecoder("utf-8")() \
                    if opcode is Opcode.TEXT else None
            elif opcode is Opcode.TEXT:
                try:
                    events.append(("message", frame.data.decode()))
                except UnicodeDecodeError:
                    return self._fail(1007, "Invalid UTF-8 in a text frame")
                return None
            else:
                events.append(("message", bytes(frame.data)))
                return None
        decoder = self._decoder
        if decoder is not None:
            try:
                decoder.decode(frame.data, final=frame.fin)
            except UnicodeDecodeError:
                return self._fail(1007, "Invalid UTF-8 in a text frame")
        if frame.fin:
            payload = b"".join(self._parts)  # type: ignore[arg-type]
            self._parts = None
            self._decoder = None
            events.append(("message", payload.decode() if decoder is not None else payload))
        return None

    def _fail(self, code: int, reason: str) -> bool:
        proto = self._proto
        assert proto is not None
        self._parts = self._decoder = None
        if proto.state is OPEN:
            proto.fail(code, reason)
        return True

    def _writes(self, proto: Protocol, events: list[Event], backlog: int,
                queued: list[bytes]) -> int:
        """What the library queued, as events; returns ``backlog`` plus what was kept."""
        writes = queued + proto.data_to_send()
        exc = proto.parser_exc
        if isinstance(exc, PayloadTooBig) and (exc.size or 0) >= 1 << 63:
            # A 64-bit length with its top bit set is malformed (RFC 6455 §5.2), not too big.
            writes = [close_frame(1002, "Invalid frame length") if w[:1] == b"\x88" else w
                      for w in writes]
        elif isinstance(exc, ProtocolError) and proto.close_rcvd is not None:
            # A close frame inside a fragmented message is allowed (RFC 6455 §5.4: control
            # frames may be injected); websockets fails it with 1002, so answer it as any close,
            # echoing its code (Autobahn case 7.1.5). It never reached events_received().
            close = proto.close_rcvd
            echo = b"\x88\x00" if close.code == 1005 else close_frame(close.code, close.reason)
            writes = [echo if w[:1] == b"\x88" else w for w in writes]
            self._parts = self._decoder = None
            events.append(("closed", close.code, close.reason))
        backlog = self._emit(writes, events, backlog)
        if proto.state is not OPEN and not self.closed and not self.closing:
            self.closing = True
        return backlog

    def _emit(self, writes: list[bytes], events: list[Event], backlog: int) -> int:
        """A pong is kept only while the client reads: dropped past PONG_BACKLOG or once we
        are closing. An empty write is the library's end of stream."""
        for chunk in writes:
            if chunk[:1] == b"\x8a" and (self.closing or backlog + len(chunk) > PONG_BACKLOG):
                continue
            if chunk:
                backlog += len(chunk)
                events.append(("write", chunk))
            else:  # the library's end of stream: close TCP, read nothing more
                events.append(("eof",))
                self.closed = True
        return backlog

    def _release(self) -> None:
        """Let go of the parser between frames of an open connection."""
        proto = self._proto
        if (proto is not None and proto.state is OPEN and not self.closing
                and self._parts is None and not proto.reader.buffer
                and proto.parser_exc is None
                and getattr(proto.parser.gi_yieldfrom, "gi_code", None) is _AT_FRAME_START):
            self._proto = None


__all__ = ["FrameReader", "close_frame", "Close", "ProtocolError"]
