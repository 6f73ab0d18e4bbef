"""Wire frames and close codes (DESIGN §6, §10), defined once and mirrored in static/client/codes.js.

Close codes by range:

* ``1000``–``1999`` (RFC 6455): 1000 normal, 1002 broken framing, 1007 text that is not UTF-8,
  1009 frame over the hard cap, 1011 internal error, 1012 service restart
  (SIGTERM: reconnect, to another instance, at once, and recover).
* ``4000``–``4099``: Pulse codes. 4001 means re-authenticate before reconnecting; every other
  Pulse code means reconnect with backoff and recover with ``since``.
"""
from __future__ import annotations

import json
from enum import IntEnum
from typing import Any

from .broker import MAX_OFFSET, encode_json, frame_text, parse_offset  # noqa: F401


class CloseCode(IntEnum):
    NORMAL = 1000
    PROTOCOL_ERROR = 1002        # the client broke RFC 6455 framing
    INVALID_DATA = 1007          # a text frame that is not UTF-8
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011        # a server bug cost this connection: reconnect with backoff
    SERVICE_RESTART = 1012
    UNAUTHORIZED = 4001          # missing/invalid/expired token: re-authenticate, don't hammer
    SLOW_CONSUMER = 4008         # outbox overflowed: reconnect and recover from history
    IDLE_TIMEOUT = 4009          # nothing heard from the client for the idle timeout
    RECOVER = 4010               # the server lost messages upstream: reconnect and recover
    TOO_MANY = 4029              # too many connections for this user, or inbound rate abuse


class ControlFrame:
    """A server frame that is not a publication (ack, pong, error), queued in order with them."""

    __slots__ = ("frame", "_ws", "ack")
    channel = None
    offset = None
    data: dict = {}

    def __init__(self, body: dict[str, Any]) -> None:
        try:
            self.frame = encode_json(body).encode()
        except (ValueError, UnicodeEncodeError):
            # A lone surrogate echoed from the client (a channel name): escaped, still JSON.
            self.frame = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
        self._ws: bytes | None = None
        # A `subscribed` ack: (channel, offset, user_offset or None, epoch) for SSE cursors.
        self.ack: tuple[str, int, int | None, str] | None = None

    @property
    def event_type(self) -> str | None:
        return None

    def ws_frame(self) -> bytes:
        if self._ws is None:
            self._ws = frame_text(self.frame)
        return self._ws

    def sse_data(self) -> bytes:
        return b"data: " + self.frame + b"\n\n"


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads(text: str | bytes) -> Any:
    """A client's JSON: strict (no NaN or Infinity); deep nesting raises RecursionError."""
    return json.loads(text, parse_constant=_no_constant)


def subscribed(channel: str, offset: int, recovered: bool, epoch: str = "",
               user_offset: int | None = None) -> ControlFrame:
    """The ack: the channel's offset (and, on a user-targeted channel, the caller's own
    ``user_offset``), whether the resume recovered everything, and the epoch to resume with
    (once the channel has one)."""
    body: dict[str, Any] = {"type": "subscribed", "channel": channel, "offset": offset,
                            "recovered": recovered}
    if epoch:
        body["epoch"] = epoch
    if user_offset is not None:
        body["user_offset"] = user_offset
    frame = ControlFrame(body)
    frame.ack = (channel, offset, user_offset, epoch)
    return frame


def join_epoch(shared: str, personal: str | None) -> str:
    """One opaque epoch for a subscription: the channel's, and the caller's own space's."""
    return shared if not personal else f"{shared}.{personal}"


def split_epoch(epoch: str | None) -> tuple[str | None, str | None]:
    if not epoch:
        return None, None
    shared, _, personal = epoch.partition(".")
    return shared or None, personal or None


def valid_epoch(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= 64 and all(
        c.isascii() and (c.isalnum() or c == ".") for c in value)


def unsubscribed(channel: str) -> ControlFrame:
    return ControlFrame({"type": "unsubscribed", "channel": channel})


def pong(ts: Any = None, echo: bool = False) -> ControlFrame:
    return ControlFrame({"type": "pong", "ts": ts} if echo else {"type": "pong"})


def error(message: str, channel: str | None = None) -> ControlFrame:
    """An error frame; subscribe/unsubscribe errors also name the channel they concern."""
    body: dict[str, Any] = {"type": "error", "message": message}
    if channel is not None:
        body["channel"] = channel
    return ControlFrame(body)

