"""The direct endpoints: ``/ws`` and ``/sse`` on sockets Pulse serves itself.

Served through Quart, every WebSocket or SSE stream costs Quart's tasks, queue and request
context on top of Hypercorn's task, task group, stream pair and h11/wsproto state: about 37 KiB
per idle connection, of which Pulse's own state is 2.5 (bench/RESULTS.md). So under Hypercorn's
asyncio worker the first request of each new connection is read here before Hypercorn sees it:

* a well-formed ``GET /ws`` WebSocket upgrade is answered here (``101``) and the socket's asyncio
  transport handed to a :class:`~quart_app.edge.ws_direct.DirectWebSocket`;
* a ``GET /sse`` that passes every check (token, channels, cursor, limits) is answered here
  (``200``, chunked) and its transport handed to a
  :class:`~quart_app.transport_sse.DirectStream`;
* anything else (HTTP, a request that fails a check, a malformed or unusual upgrade, ``/ws``
  with ``PULSE_WS_DEFLATE=true``) goes to Hypercorn unchanged, the bytes already read replayed
  first, and on to Quart, where ``/ws`` and ``/sse`` keep their routes and answer errors.

From the hand-over on, Hypercorn's per-connection task ends: the connection has no task and no
queue, its frames are handled in ``data_received``, and publications are written by the hub's
flusher straight to the transport. Only the first request of a connection can be taken: a
request on a kept-alive connection is Hypercorn's (and Quart's) to serve.
"""
from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qsl

import httptools
from werkzeug.http import parse_cookie

from ..realtime.auth import token_from_request

log = logging.getLogger("pulse.direct")

MAX_HEAD_BYTES = 16 * 1024


class Head:
    """A request head without a body: what the direct endpoints need of it."""

    __slots__ = ("method", "path", "query", "headers", "raw_headers", "_args", "_cookies")

    def __init__(self, method: str, path: str, query: str, headers: dict[str, str],
                 raw_headers: list[tuple[bytes, bytes]]) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers          # lower-case names; repeated headers joined
        self.raw_headers = raw_headers
        self._args: dict | None = None
        self._cookies: Any = None

    @property
    def args(self) -> dict[str, str]:
        if self._args is None:
            args: dict[str, str] = {}
            for name, value in parse_qsl(self.query, keep_blank_values=True):
                args.setdefault(name, value)  # a repeated parameter: the first, as Quart's
            self._args = args
        return self._args

    @property
    def cookies(self) -> Any:
        if self._cookies is None:
            self._cookies = parse_cookie(self.headers.get("cookie", ""))
        return self._cookies

    def token(self) -> str | None:
        """Query, then cookie, then bearer header: as :func:`~quart_app.realtime.auth.token_from_request`."""
        auth = self.headers.get("authorization")
        return token_from_request(self.args, self.cookies,
                                  {"Authorization": auth} if auth is not None else {})

    def tokens(self, name: str) -> set[str]:
        return {t.strip().lower() for t in self.headers.get(name, "").split(",")}

    def scope(self, client: Any, kind: str) -> dict:
        """An ASGI-shaped scope, for Hypercorn's access log (which redacts the token)."""
        return {"type": kind, "http_version": "1.1", "method": self.method,
                "scheme": "ws" if kind == "websocket" else "http", "path": self.path,
                "query_string": self.query.encode("latin-1"), "headers": self.raw_headers,
                "client": tuple(client[:2]) if isinstance(client, tuple) else None}


def parse_head(head: bytes) -> Head | None:
    """A complete HTTP/1.1 request head with no body, parsed by llhttp; None for anything to
    leave to Hypercorn (another version, a body, a malformed head: Hypercorn answers those)."""
    reader = HeadReader()
    try:
        request = reader.feed(head)
    except HeadError:
        return None
    return request


class HeadError(Exception):
    """The bytes are not a request head Pulse serves itself (Hypercorn will answer them)."""


class _HeadsUp(Exception):
    """Raised by the parser's callback when the head is complete: parsing stops there."""


class HeadReader:
    """Reads a new connection's first request head with ``httptools`` (Node's llhttp, strict:
    CRLF line ends, token header names, no control characters), bounded by MAX_HEAD_BYTES.

    What it takes is a subset of what h11 (Hypercorn's parser) takes and reads the same
    (tests/test_edge_fuzz.py checks both on generated heads); anything else raises HeadError
    and Hypercorn answers it, as before. A head read
    into a :class:`Head` costs ~10 µs here where h11 took ~28; a reconnect storm reads 10,000
    (bench/RESULTS.md)."""

    __slots__ = ("_parser", "_url", "_names", "_values", "_done", "_end", "received")

    def __init__(self) -> None:
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._names: list[bytes] = []
        self._values: list[bytes] = []
        self._done = False
        self._end = 0
        self.received = bytearray()  # everything read so far, replayed if Hypercorn serves it

    # -- the parser's callbacks ---------------------------------------------------------
    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._names.append(name)
        self._values.append(value)

    def on_headers_complete(self) -> None:
        self._done = True
        raise _HeadsUp

    # -- reading --------------------------------------------------------------------------
    def feed(self, data: bytes) -> Head | None:
        """The head once complete (None: more bytes needed); HeadError if not for Pulse."""
        if not self.received and data[:1] in (b"\r", b"\n"):
            raise HeadError  # blank lines before the request line: Hypercorn's to skip
        seen = len(self.received)
        self.received += data
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError:
            if not self._done:
                raise HeadError from None
        except httptools.HttpParserError:  # malformed, LF-only line ends, an unknown method
            raise HeadError from None
        if not self._done:
            if len(self.received) > MAX_HEAD_BYTES:
                raise HeadError
            return None
        # Strict CRLF line ends: the head ends at the first empty line.
        end = self.received.find(b"\r\n\r\n", max(0, seen - 3))
        if end < 0 or end + 4 > MAX_HEAD_BYTES:
            raise HeadError
        self._end = end + 4
        return self._head()

    def _head(self) -> Head:
        parser = self._parser
        if parser.get_http_version() != "1.1":
            raise HeadError
        target = self._url.decode("latin-1")
        if not target.startswith("/"):
            raise HeadError
        path, _, query = target.partition("?")
        headers: dict[str, str] = {}
        raw_headers: list[tuple[bytes, bytes]] = []
        for name_b, value_b in zip(self._names, self._values):
            name_b = name_b.lower()
            value_b = value_b.strip(b" \t")  # llhttp keeps trailing whitespace; h11 does not
            name = name_b.decode("latin-1")
            value = value_b.decode("latin-1")
            raw_headers.append((name_b, value_b))
            if name in headers:
                headers[name] += ("; " if name == "cookie" else ", ") + value
            else:
                headers[name] = value
        if "host" not in headers:
            raise HeadError  # RFC 9112 §3.2: Hypercorn answers 400
        if "content-length" in headers or "transfer-encoding" in headers:
            raise HeadError  # a body: Hypercorn's
        return Head(parser.get_method().decode("latin-1"), path, query, headers, raw_headers)

    @property
    def pending(self) -> bytes:
        """Bytes read past the head: pipelined requests, or frames sent before our 101."""
        return bytes(self.received[self._end:]) if self._done else b""


# -- taking connections from Hypercorn ---------------------------------------------------------
class _Replay:
    """The reader Hypercorn gets for a connection Pulse did not take: what was already read
    first, then the socket."""

    __slots__ = ("_head", "_reader")

    def __init__(self, head: bytes, reader: asyncio.StreamReader) -> None:
        self._head: bytes | None = head
        self._reader = reader

    def at_eof(self) -> bool:
        return self._head is None and self._reader.at_eof()

    async def read(self, n: int = -1) -> bytes:
        if self._head is not None:
            head, self._head = self._head, None
            return head
        return await self._reader.read(n)


class _Detached:
    """What a handed-over StreamWriter is left holding instead of the live transport."""

    @staticmethod
    def is_closing() -> bool:
        return True


_DETACHED = _Detached()


_date: list = [0, b""]


def http_date() -> bytes:
    """The Date header's value, formatted once a second (a storm answers thousands a second)."""
    now = int(time.time())
    if _date[0] != now:
        _date[0], _date[1] = now, formatdate(now, usegmt=True).encode()
    return _date[1]


def refuse(transport: Any, status: int, reason: str, detail: str,
           headers: tuple[tuple[str, str], ...] = ()) -> None:
    """Answer a request Pulse took with a JSON error, then close the connection."""
    body = json.dumps({"detail": detail}).encode()
    head = [f"HTTP/1.1 {status} {reason}", "content-type: application/json",
            f"content-length: {len(body)}", "connection: close",
            f"date: {http_date().decode()}", *(f"{k}: {v}" for k, v in headers)]
    transport.write("\r\n".join(head).encode("latin-1") + b"\r\n\r\n" + body)
    transport.close()


def _services_of(app: Any) -> Any:
    """The Pulse services behind Hypercorn's app wrapper, if this is Pulse."""
    quart = getattr(app, "app", app)
    extensions = getattr(quart, "extensions", None)
    return extensions.get("pulse") if isinstance(extensions, dict) else None


# -- the first bytes of every connection ---------------------------------------------------------
async def start_server(client_connected_cb: Any, *args: Any, **kwargs: Any) -> Any:
    """``asyncio.start_server`` as Hypercorn's worker sees it (hypercorn_hooks.py): each new
    connection starts as a :class:`FirstRequest`, which serves a well-formed WebSocket
    upgrade itself and gives anything else to Hypercorn's stream pair and task, unchanged.
    Another app than Pulse gets the plain ``asyncio.start_server``."""
    import inspect

    found = inspect.getclosurevars(client_connected_cb).nonlocals
    svc = _services_of(found.get("app"))
    config = found.get("config")
    if svc is None or config is None:
        return await asyncio.start_server(client_connected_cb, *args, **kwargs)
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: FirstRequest(svc, config, client_connected_cb, loop), *args, **kwargs)


class FirstRequest(asyncio.Protocol):
    """A new connection until its first request head is read: with no task, stream pair or
    queue, the common case of a reconnect storm (a ``GET /ws`` upgrade that is well formed,
    from an allowed Origin, whose client is still there) is answered here and the socket given
    to a :class:`~quart_app.edge.ws_direct.DirectWebSocket`. Anything else (HTTP, ``/sse``, a
    malformed or refused upgrade, a server at its connection cap or stopping) goes, with the
    bytes read so far, to the stream pair and task Hypercorn's ``start_server`` would have
    made, and on through :func:`_route`, which answers it as before."""

    __slots__ = ("svc", "config", "cb", "loop", "transport", "head", "request", "extra",
                 "eof", "closed", "timer", "started")

    def __init__(self, svc: Any, config: Any, cb: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.svc, self.config, self.cb, self.loop = svc, config, cb, loop
        self.transport: Any = None
        self.head: HeadReader | None = None
        self.request: Head | None = None
        self.extra = b""
        self.eof = self.closed = False
        self.timer: asyncio.TimerHandle | None = None
        self.started = 0.0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        svc = self.svc
        if refuse_unserved(svc, transport, svc.sockets_open + 1):
            self.closed = True
            return
        if svc.settings.ws_deflate:
            self._to_streams()  # Quart serves /ws with deflate
            return
        self.started = self.loop.time()
        self.head = HeadReader()
        svc.edge_pending.add(self)
        svc.sockets_open += 1  # counted until _done (the direct endpoint's from then on)
        self.timer = self.loop.call_later(svc.settings.edge.head_timeout_seconds,
                                          self._head_timeout)

    def data_received(self, data: bytes) -> None:
        if self.head is None:  # refused at connection_made: closing
            return
        if self.request is not None:  # the head is read; the upgrade is answered next turn
            self.extra += data
            return
        try:
            request = self.head.feed(data)  # type: ignore[union-attr]
        except HeadError:
            self._to_streams()
            return
        if request is None:
            return
        if request.method == "GET" and request.path == "/ws" and upgrade_key(request):
            # Two loop turns first (the socket is polled in between): a FIN that came with the
            # upgrade (a client that gave up while it waited in the listen queue) is read by
            # then, and _route counts it.
            self.request = request
            self.loop.call_soon(self.loop.call_soon, self._upgrade)
        else:
            self._to_streams()

    def eof_received(self) -> bool | None:
        self.eof = True
        if self.head is None:  # refused at connection_made: closing
            return None
        if self.request is None:
            return self._to_streams()
        return True  # decided in _upgrade, which hands the connection on

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._done()

    def close(self) -> None:
        """The server stops: a connection that has not sent its request yet is closed."""
        self._done()
        if not self.closed:
            self.transport.abort()

    def _done(self, keep_count: bool = False) -> None:
        """No longer a first request: served here, handed on, or gone."""
        svc = self.svc
        if self in svc.edge_pending:
            svc.edge_pending.discard(self)
            if not keep_count:
                svc.sockets_open -= 1
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _head_timeout(self) -> None:
        self.timer = None
        if self.request is None and not self.closed:
            self.svc.metrics.head_timeouts += 1
            self._done()
            self.transport.close()

    def _upgrade(self) -> None:
        if self.closed:
            return
        svc, request = self.svc, self.request
        assert request is not None
        if self.eof or svc.origins.refuses(request.headers, websocket=True) is not None:
            self._to_streams()  # abandoned, or refused (403): counted and answered there
            return
        self._done(keep_count=True)
        from .ws_direct import DirectWebSocket

        transport = self.transport
        protocol = DirectWebSocket(svc, transport, self.config.websocket_max_message_size)
        svc.edge_connections.add(protocol)
        protocol.on_lost = svc
        transport.set_protocol(protocol)
        try:
            protocol.accept(upgrade_key(request), request,  # type: ignore[arg-type]
                            self.head.pending + self.extra)  # type: ignore[union-attr]
        except Exception:  # a bug here must cost one connection, never the worker
            log.exception("direct endpoint failed on /ws")
            transport.abort()
            return
        logger = getattr(self.config.log, "access_logger", None) \
            if self.config.accesslog is not None else None
        if logger is not None and logger.isEnabledFor(logging.DEBUG):
            self.loop.create_task(_access(self.config, request, transport, "websocket", 101,
                                          self.loop.time() - self.started))

    def _to_streams(self) -> bool | None:
        """Go on as ``asyncio.start_server`` would have: a StreamReader fed what was read, its
        writer, and Hypercorn's connection task (which reaches :func:`_route`)."""
        self._done()
        reader = asyncio.StreamReader(loop=self.loop)
        protocol = asyncio.StreamReaderProtocol(reader, self.cb, loop=self.loop)
        transport = self.transport
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        received = bytes(self.head.received) if self.head is not None else b""
        if received or self.extra:
            protocol.data_received(received + self.extra)
        self.head = None
        if self.eof:
            return protocol.eof_received()
        return None


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


def wrap_tcp_server(original: Any) -> Any:
    """Replacement for ``hypercorn.asyncio.run.TCPServer``: route each new connection."""

    def tcp_server(app, loop, config, context, state, reader, writer):
        return _route(original, app, loop, config, context, state, reader, writer)

    tcp_server.__wrapped__ = original  # type: ignore[attr-defined]
    return tcp_server


def hand_over(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
              protocol: asyncio.Protocol) -> None:
    """Give the socket to ``protocol``; Hypercorn's stream pair is left detached from it."""
    transport = writer.transport
    if hasattr(type(writer), "__del__"):
        # Python closes a StreamWriter's transport when the writer is collected; the socket
        # lives on here, so detach the writer from it (or, failing that, keep it alive).
        if hasattr(writer, "_transport"):
            writer._transport = _DETACHED
        else:
            protocol._keep = writer  # type: ignore[attr-defined]
    transport.set_protocol(protocol)
    transport.resume_reading()


async def _route(original, app, loop, config, context, state, reader, writer) -> None:
    svc = _services_of(app)
    if svc is None:
        await original(app, loop, config, context, state, reader, writer)
        return
    transport = writer.transport  # the writer lets go of it if the connection is handed over
    svc.sockets_open += 1
    handed_over = False
    try:
        if refuse_unserved(svc, transport, svc.sockets_open):
            return
        handed_over = await _take(svc, original, app, loop, config, context, state, reader,
                                  writer)
    except asyncio.CancelledError:
        # Hypercorn cancels connection tasks that outlive its graceful timeout. One still ours
        # (reading its head, or subscribing) closes its socket now, not when the collector finds
        # it after the loop is gone; and it ends quietly, since this is the connection's own
        # top-level task (Python 3.11's stream callback would log a cancelled task as an error).
        if writer.transport is transport:
            transport.abort()
        else:
            raise
    finally:
        if not handed_over:
            svc.sockets_open -= 1


def refuse_unserved(svc, transport: Any, open_with_it: int) -> bool:
    """Answer a new connection ``503`` at once, before reading it, if the server is stopping
    or it would take the process past its connection cap; True if it was refused.

    Between SIGTERM and the listener closing, a reconnecting client is told to go elsewhere
    instead of being upgraded, authenticated and subscribed only to be closed with 1012
    (docs/operations.md, "SIGTERM"); a restart storm sends thousands of them, so this costs a
    write and a close, with no stream pair or task."""
    if svc.shutting_down:
        svc.metrics.connections_refused += 1
        refuse(transport, 503, "Service Unavailable", "This server is shutting down: reconnect",
               (("retry-after", "1"),))
        return True
    if open_with_it > connection_cap(svc):
        svc.metrics.connections_refused += 1
        refuse(transport, 503, "Service Unavailable",
               "Too many connections to this server: retry shortly", (("retry-after", "2"),))
        return True
    return False


def connection_cap(svc) -> int:
    """``PULSE_MAX_CONNECTIONS``, or what the open-files limit leaves after a reserve for the
    database, Redis and files (docs/operations.md)."""
    cap = svc.settings.edge.max_connections
    if cap:
        return cap
    global _FD_CAP
    if _FD_CAP is None:
        try:
            import resource

            soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        except (ImportError, OSError, ValueError):  # pragma: no cover - not POSIX
            soft = 1024
        _FD_CAP = max(16, soft - FD_RESERVE) if soft != -1 else 1 << 20
    return _FD_CAP


_FD_CAP: int | None = None
FD_RESERVE = 128


async def _take(svc, original, app, loop, config, context, state, reader, writer) -> bool:
    """Serve the connection's first request here or hand it to Hypercorn; True when the socket
    was handed to a direct endpoint (which then owns its end)."""
    started = loop.time()
    transport = writer.transport
    head = HeadReader()
    request: Head | None = None
    try:
        async with asyncio.timeout(svc.settings.edge.head_timeout_seconds):
            while request is None:
                data = await reader.read(65536)
                if not data:  # EOF before a whole head
                    if head.received:
                        await original(app, loop, config, context, state,
                                       _Replay(bytes(head.received), reader), writer)
                    else:
                        writer.close()
                    return False
                request = head.feed(data)
    except HeadError:
        await original(app, loop, config, context, state, _Replay(bytes(head.received), reader),
                       writer)
        return False
    except (TimeoutError, ConnectionError):
        svc.metrics.head_timeouts += 1
        writer.close()
        return False
    if request.path == "/ws":
        await asyncio.sleep(0)  # a FIN that came with the upgrade is read by now (see below)
    pending = head.pending
    buffer = getattr(reader, "_buffer", None)  # read by the stream, not yet by us
    if buffer:
        pending += bytes(buffer)
        head.received += buffer
        buffer.clear()
    if reader.at_eof() and request.method == "GET" and request.path == "/ws":
        # The client sent its upgrade and left (a reconnect storm's client that timed out while
        # it waited in the listen queue; a WebSocket ends at its client's FIN anyway):
        # upgrading, authenticating and subscribing it would only spend the CPU the clients
        # still waiting need (docs/scaling.md).
        svc.metrics.abandoned += 1
        transport.abort()
        return False
    refusal = svc.origins.refuses(request.headers, websocket="upgrade" in request.headers)
    if refusal is not None and request.path in ("/ws", "/sse"):
        svc.metrics.origin_refusals += 1
        refuse(transport, 403, "Forbidden", refusal)
        await _access(config, request, transport, "http", 403, loop.time() - started)
        return False
    served = None
    try:
        if request.method == "GET":
            if request.path == "/ws" and not svc.settings.ws_deflate:
                from .ws_direct import serve_websocket

                served = serve_websocket(svc, config, request, reader, writer, pending)
            elif request.path == "/sse" and not pending:
                from .transport_sse import serve_direct

                served = await serve_direct(svc, request, reader, writer)
    except Exception:  # a bug here must cost one connection, never the worker
        log.exception("direct endpoint failed on %s", request.path)
        transport.abort()
        return False
    if served is None:
        await original(app, loop, config, context, state,
                       _Replay(bytes(head.received), reader), writer)
        return False
    kind, status, protocol = served
    if protocol is not None:
        svc.edge_connections.add(protocol)
        protocol.on_lost = svc  # its connection_lost calls svc.release_socket (before: no loop turn)
    await _access(config, request, transport, kind, status, loop.time() - started)
    return protocol is not None


async def _access(config, request: Head, transport, kind: str, status: int,
                  seconds: float) -> None:
    if config.accesslog is not None:
        await config.log.access(request.scope(transport.get_extra_info("peername"), kind),
                                {"status": status, "headers": []}, seconds)
