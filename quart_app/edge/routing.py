"""The direct endpoints: ``/ws`` and ``/sse`` on sockets Pulse serves itself.

Served through Quart, every WebSocket or SSE stream costs Quart's tasks, queue and request
context on top of Hypercorn's task, task group, stream pair and h11/wsproto state: about 37 KiB
per idle connection, of which Pulse's own state is 2.5 (bench/RESULTS.md). So under Hypercorn's
asyncio worker the first request of each new connection is read here before Hypercorn sees it:

* a well-formed ``GET /ws`` WebSocket upgrade is answered here (``101``) and the socket's asyncio
  transport handed to a :class:`~quart_app.ws_direct.DirectWebSocket`;
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
import json
import logging
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qsl

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
        """Query, then cookie, then bearer header: as :func:`~quart_app.auth.token_from_request`."""
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
    """An HTTP/1.1 request head with no body, or None for anything to leave to Hypercorn."""
    try:
        request_line, *lines = head.decode("latin-1").split("\r\n")
        method, target, version = request_line.split(" ")
    except ValueError:
        return None
    if version != "HTTP/1.1" or not target.startswith("/"):
        return None
    path, _, query = target.partition("?")
    headers: dict[str, str] = {}
    raw_headers: list[tuple[bytes, bytes]] = []
    for line in lines:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            return None  # malformed: Hypercorn answers it
        name = name.lower()
        value = value.strip()
        raw_headers.append((name.encode("latin-1"), value.encode("latin-1")))
        if name in headers:
            headers[name] += ("; " if name == "cookie" else ", ") + value
        else:
            headers[name] = value
    if "content-length" in headers or "transfer-encoding" in headers or "host" not in headers:
        return None  # a body, or no Host (HTTP/1.1 requires one: Hypercorn answers 400)
    return Head(method, path, query, headers, raw_headers)


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


def refuse(transport: Any, status: int, reason: str, detail: str,
           headers: tuple[tuple[str, str], ...] = ()) -> None:
    """Answer a request Pulse took with a JSON error, then close the connection."""
    body = json.dumps({"detail": detail}).encode()
    head = [f"HTTP/1.1 {status} {reason}", "content-type: application/json",
            f"content-length: {len(body)}", "connection: close",
            f"date: {formatdate(usegmt=True)}", *(f"{k}: {v}" for k, v in headers)]
    transport.write("\r\n".join(head).encode("latin-1") + b"\r\n\r\n" + body)
    transport.close()


def _services_of(app: Any) -> Any:
    """The Pulse services behind Hypercorn's app wrapper, if this is Pulse."""
    quart = getattr(app, "app", app)
    extensions = getattr(quart, "extensions", None)
    return extensions.get("pulse") if isinstance(extensions, dict) else None


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
    try:
        await _take(svc, original, app, loop, config, context, state, reader, writer)
    except asyncio.CancelledError:
        # Hypercorn cancels connection tasks that outlive its graceful timeout. One still ours
        # (reading its head, or subscribing) closes its socket now, not when the collector finds
        # it after the loop is gone; and it ends quietly, since this is the connection's own
        # top-level task (Python 3.11's stream callback would log a cancelled task as an error).
        if writer.transport is transport:
            transport.abort()
        else:
            raise


async def _take(svc, original, app, loop, config, context, state, reader, writer) -> None:
    started = loop.time()
    transport = writer.transport
    try:
        async with asyncio.timeout(config.keep_alive_timeout):
            head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        await original(app, loop, config, context, state, reader, writer)
        return
    except asyncio.IncompleteReadError as exc:  # EOF before a whole head: Hypercorn's call
        if not exc.partial:
            writer.close()
            return
        await original(app, loop, config, context, state, _Replay(exc.partial, reader), writer)
        return
    except (TimeoutError, ConnectionError):
        writer.close()
        return
    # Bytes already read past the head: pipelined requests, or frames sent before our 101.
    buffer = getattr(reader, "_buffer", None)
    pending = bytes(buffer) if buffer else b""
    if buffer:
        buffer.clear()
    request = parse_head(head) if len(head) <= MAX_HEAD_BYTES else None
    served = None
    try:
        if request is not None and request.method == "GET":
            if request.path == "/ws" and not svc.settings.ws_deflate:
                from .ws_direct import serve_websocket

                served = serve_websocket(svc, config, request, reader, writer, pending)
            elif request.path == "/sse" and not pending:
                from .transport_sse import serve_direct

                served = await serve_direct(svc, request, reader, writer)
    except Exception:  # a bug here must cost one connection, never the worker
        log.exception("direct endpoint failed on %s", request.path if request else "?")
        transport.abort()
        return
    if served is None:
        await original(app, loop, config, context, state, _Replay(head + pending, reader), writer)
        return
    kind, status = served
    if config.accesslog is not None:
        await config.log.access(request.scope(transport.get_extra_info("peername"), kind),
                                {"status": status, "headers": []}, loop.time() - started)
