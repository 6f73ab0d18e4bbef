"""The broker interface: publish with offsets, bounded history, one stream for the listener.

Two implementations sit beside this module: :mod:`broker_memory` (the embedded default, one
process) and :mod:`broker_redis` (any number of processes sharing Redis).

Contract shared by both (the test ``tests/test_broker.py`` runs it against each):

* ``publish(channel, data)`` gives the publication the next offset of its channel (1, 2, …),
  appends it to the channel's bounded history (``size`` messages, ``ttl_seconds`` age) and delivers
  it to every process's :meth:`Broker.listen` stream, all atomically: no listener ever sees offset
  ``n + 1`` of a channel before ``n``.
* ``history(channel, since)`` returns the publications after ``since`` in order, with
  ``complete=False`` when the history no longer reaches back to ``since + 1`` (or ``since`` is
  ahead of the channel, e.g. after Redis lost its data).
* ``listen()`` is consumed by exactly one task per process. It yields :class:`Publication` and,
  after the upstream connection was lost and regained, a :data:`RESYNC` marker: what was published
  in between must then be fetched from history.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Protocol

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
_SURROGATE = re.compile("[\ud800-\udfff]")


def encode_json(value: Any) -> str:
    """Compact JSON; the one encoder the service uses for wire frames.

    Raises ``ValueError`` rather than emit what a browser cannot parse: NaN and
    Infinity (not JSON) and lone surrogates (``"\\ud800"`` from a producer's JSON: text that has
    no UTF-8 form). Callers that frame untrusted data must handle it.
    """
    text = _dumps(value)
    if not text.isascii() and _SURROGATE.search(text):  # isascii() is O(1) on CPython
        raise ValueError("lone surrogate in JSON text: not encodable as UTF-8")
    return text


MAX_OFFSET = 2**63 - 1


def parse_offset(raw: str) -> int | None:
    """A non-negative offset written in ASCII digits (at most 19 of them), else None.

    ``str.isdigit`` accepts "²" and "٣", which ``int`` then rejects or reads, and ``int`` of
    thousands of digits raises: neither may reach a client as a 500.
    """
    if not raw or len(raw) > 19 or not raw.isascii() or not raw.isdigit():
        return None
    value = int(raw)
    return value if value <= MAX_OFFSET else None


def publication_frame(channel: str, data_json: str, offset: int | None,
                      personal: bool = False) -> bytes:
    """The wire text of a publication: ``{"channel","data","offset"}``, plus ``user_offset``
    (the same number) when the offset is in the subscriber's own space (docs/protocol.md)."""
    head = '{"channel":' + encode_json(channel) + ',"data":' + data_json
    if offset is None:
        return (head + "}").encode()
    if personal:
        return (head + f',"offset":{offset},"user_offset":{offset}}}').encode()
    return (head + f',"offset":{offset}}}').encode()


def user_of(data: dict) -> int | None:
    """The user a publication's data targets (``user_id``: an int, or a string of digits)."""
    value = data.get("user_id")
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value <= MAX_OFFSET else None
    if isinstance(value, str):
        return parse_offset(value)
    return None


def stream_name(channel: str, user: int | None) -> str:
    """Where a publication's offsets and history live: the channel, or ``channel#user`` for a
    user's own space on a user-targeted channel (``#`` never appears in a channel name)."""
    return channel if user is None else f"{channel}#{user}"


EPOCH_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.")


class Publication:
    """One message on a channel, encoded once and shared by every recipient.

    ``frame`` is the exact JSON text every subscriber receives. ``offset`` is ``None`` for
    best-effort messages (raw PUBLISH on the seed channels, the dashboard snapshot). ``user`` is
    set for a publication in a user's own offset space on a user-targeted channel
    (docs/protocol.md, "Offsets"): its frame carries ``user_offset`` too.
    """

    __slots__ = ("channel", "data", "offset", "frame", "published_at", "user", "duplicate",
                 "stored_hash", "_ws", "_sse")
    ack = None  # only a `subscribed` ack (protocol.ControlFrame) carries (channel, offset)

    def __init__(
        self,
        channel: str,
        data: dict,
        offset: int | None,
        frame: bytes | None = None,
        published_at: float | None = None,
        user: int | None = None,
    ) -> None:
        self.channel = channel
        self.data = data
        self.offset = offset
        self.user = user
        # Set by an idempotent publish that found its id already used: nothing went out again.
        self.duplicate = False
        self.stored_hash = ""
        if frame is None:
            frame = publication_frame(channel, encode_json(data), offset, user is not None)
        self.frame = frame
        self.published_at = time.time() if published_at is None else published_at
        self._ws: bytes | None = None
        self._sse: bytes | None = None

    @property
    def event_type(self) -> str | None:
        value = self.data.get("type")
        return value if isinstance(value, str) else None

    @property
    def user_id(self) -> int | None:
        return user_of(self.data)

    def ws_frame(self) -> bytes:
        """The RFC 6455 text frame (server frames are unmasked: same bytes for everyone)."""
        if self._ws is None:
            self._ws = frame_text(self.frame)
        return self._ws

    def sse_data(self) -> bytes:
        """The ``data:`` line and record end of a Server-Sent Event (the ``id:`` is per stream)."""
        if self._sse is None:
            self._sse = b"data: " + self.frame + b"\n\n"
        return self._sse

    def __repr__(self) -> str:
        return f"Publication({self.channel!r}, offset={self.offset}, type={self.event_type!r})"


def frame_text(payload: bytes) -> bytes:
    """Frame ``payload`` as one unmasked, final WebSocket text frame (RFC 6455 §5.2)."""
    length = len(payload)
    if length < 126:
        return bytes((0x81, length)) + payload
    if length < 65536:
        return bytes((0x81, 126)) + length.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + length.to_bytes(8, "big") + payload



@dataclass(frozen=True, slots=True)
class History:
    publications: list[Publication]
    latest: int
    complete: bool
    epoch: str = ""   # the stream's epoch: changes whenever its offsets restart from 1


def history_result(publications: list, latest: int, since: int, epoch: str,
                   their_epoch: str | None) -> History:
    """What a resume from ``since`` gets, given what the broker holds after it (oldest first)."""
    if since > 0 and their_epoch and their_epoch != epoch:
        return History([], latest, False, epoch)  # the offsets restarted: theirs mean nothing
    if since > latest:
        return History([], latest, False, epoch)
    if since == latest:
        return History([], latest, True, epoch)
    complete = bool(publications) and publications[0].offset == since + 1
    return History(publications if complete else [], latest, complete, epoch)


class _Resync:
    def __repr__(self) -> str:
        return "RESYNC"


RESYNC = _Resync()


class Broker(Protocol):
    """What the hub, the listener, ingest and recovery need from a broker."""

    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise if the broker is unreachable (used by ``/readyz``)."""

    async def publish(self, channel: str, data: dict, *, user: int | None = None,
                      publication_id: str | None = None, body_hash: str = "",
                      id_ttl_seconds: float = 600.0) -> Publication:
        """Append to history with the next offset and deliver to every process.

        ``user``: publish in that user's own offset space of ``channel``. ``publication_id``:
        publish at most once per id (a retry gets the first offset back, with ``duplicate``
        set on the result, and nothing goes out twice); ``body_hash`` is kept with it so a
        reuse with another body can be told apart (``stored_hash`` on the result)."""

    async def history(self, channel: str, since: int, *, user: int | None = None,
                      epoch: str | None = None) -> History: ...

    async def latest(self, channel: str, *, user: int | None = None) -> tuple[int, str]:
        """The stream's last offset and its epoch (``""`` while it has none)."""

    async def latest_offset(self, channel: str) -> int: ...

    async def subscribe_upstream(self, channel: str) -> None:
        """First local subscriber joined: make sure publications on ``channel`` reach us."""

    async def unsubscribe_upstream(self, channel: str) -> None:
        """Last local subscriber left."""

    def listen(self) -> AsyncIterator[Publication | _Resync]: ...
