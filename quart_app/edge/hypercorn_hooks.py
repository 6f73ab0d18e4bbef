"""Three small Hypercorn hooks that the fan-out hot path depends on (see bench/RESULTS.md).

1. **permessage-deflate off by default.** Hypercorn offers it to every client unconditionally
   (pgjones/hypercorn#307): ~100 KB of zlib state per connection and most of the fan-out time
   once used. ``PULSE_WS_DEFLATE=true`` switches it back on.
2. **A socket tap in the WebSocket scope.** After the handshake, ``scope["extensions"]
   ["pulse.tap"]`` holds the connection's asyncio transport and the time the client last sent
   anything (pongs included, which Hypercorn never passes to the app). The hub then writes each
   publication's pre-framed bytes (identical for every recipient: server frames are unmasked)
   straight to the transport, coalesced per loop iteration, instead of an ASGI message and a
   wsproto framing per client. Close frames and everything else still go through Hypercorn.

3. **The direct endpoints.** Each new connection's first request is looked at before
   Hypercorn's; a well-formed ``/ws`` upgrade or ``/sse`` request is served by
   :mod:`quart_app.edge.routing` with no task, queue or ASGI machinery per connection (hook 2 then
   only serves ``/ws`` requests that reach Quart: with ``PULSE_WS_DEFLATE=true``, or a second
   request on a kept-alive socket). The worker's ``asyncio.start_server`` is
   :func:`~quart_app.edge.routing.start_server`: a ``/ws`` upgrade is answered from the
   connection's first bytes, before any stream pair or task is made for it.

All are applied by :func:`install`, idempotently, after checking that every Hypercorn internal
they replace is there with the signature they expect; if one is not (a Hypercorn upgrade), none
is applied, an error is logged and ``pulse_edge_fallbacks_total`` is 1: every connection is then
served by Quart. Hypercorn's handling of a client's protocol violation is also fixed here (a
close frame before TCP closes, TCP closed after its own 1009). Without the hooks (another ASGI
server, the Quart test client) the service writes with ``websocket.send`` from a writer task.
"""
from __future__ import annotations

import asyncio
import logging
import time
import types
from typing import Any

log = logging.getLogger("pulse.edge")

_installed: dict[str, Any] = {}


class SocketTap:
    __slots__ = ("transport", "last_seen", "on_close")

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.last_seen = time.monotonic()
        # Called once when Hypercorn sends a close frame (its own, e.g. 1009, or the app's):
        # direct writes must stop there, since nothing may follow a close frame.
        self.on_close: Any = None


def _find_transport(stream: Any) -> Any | None:
    """WSStream.send -> H11Protocol.stream_send -> TCPServer.protocol_send -> writer.transport."""
    protocol = getattr(stream.send, "__self__", None)
    server = getattr(getattr(protocol, "send", None), "__self__", None)
    writer = getattr(server, "writer", None)
    transport = getattr(writer, "transport", None)
    if transport is None or not hasattr(transport, "get_write_buffer_size"):
        return None
    return transport


# What the hooks replace, with the parameters they rely on: checked before anything is patched.
_EXPECTED = {
    ("hypercorn.asyncio.tcp_server", "TCPServer.__init__"): (
        "self", "app", "loop", "config", "context", "state", "reader", "writer"),
    ("hypercorn.protocol.ws_stream", "Handshake.accept"): (
        "self", "subprotocol", "additional_headers"),
    ("hypercorn.protocol.ws_stream", "WSStream._accept"): ("self", "message"),
    ("hypercorn.protocol.ws_stream", "WSStream.handle"): ("self", "event"),
    ("hypercorn.protocol.ws_stream", "WSStream._send_wsproto_event"): ("self", "event"),
    ("hypercorn.protocol.ws_stream", "WSStream._handle_events"): ("self",),
}
_NAMES = (("hypercorn.asyncio.run", "TCPServer"), ("hypercorn.protocol.events", "StreamClosed"),
          ("hypercorn.protocol.ws_stream", "FrameTooLargeError"),
          ("hypercorn.asyncio.run", "asyncio"))


class _HypercornAsyncio(types.ModuleType):
    """``asyncio`` as ``hypercorn.asyncio.run`` sees it once patched: the module itself, but
    for ``start_server`` (routing.start_server)."""

    def __init__(self) -> None:
        super().__init__("asyncio")
        from .routing import start_server

        self.start_server = start_server

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

status: dict[str, Any] = {"installed": False, "problem": None}


def _check() -> str | None:
    """None if every internal the hooks patch is there with the expected signature."""
    import importlib
    import inspect

    try:
        for (module_name, path), params in _EXPECTED.items():
            target: Any = importlib.import_module(module_name)
            for part in path.split("."):
                target = getattr(target, part)
            found = tuple(inspect.signature(target).parameters)
            if found[:len(params)] != params:
                return f"{module_name}.{path}: expected parameters {params}, found {found}"
        for module_name, name in _NAMES:
            getattr(importlib.import_module(module_name), name)
        from hypercorn.asyncio import run

        source = inspect.getsource(run.worker_serve)
        if "asyncio.start_server(" not in source or "TCPServer(app, loop, config" not in source:
            return "hypercorn.asyncio.run.worker_serve no longer starts its servers with " \
                "asyncio.start_server and a callback holding app and config"
    except (ImportError, AttributeError, TypeError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def install(deflate: bool = False) -> bool:
    """Patch Hypercorn once; False (after an error log) when its internals are not what the
    hooks expect, in which case every connection is served by Quart (docs/operations.md)."""
    _installed["deflate"] = deflate
    if "patched" in _installed:
        return status["installed"]
    _installed["patched"] = True
    problem = _check()
    if problem is not None:
        status["problem"] = problem
        log.error("Hypercorn's internals changed (%s): the direct endpoints and the socket tap "
                  "are off, every connection is served by Quart (slower, same protocol); "
                  "pulse_edge_fallbacks_total counts this", problem)
        return False
    _patch()
    status["installed"] = True
    return True


def _patch() -> None:
    from hypercorn.asyncio import run
    from hypercorn.protocol import ws_stream
    from hypercorn.protocol.events import Data, StreamClosed
    from wsproto.connection import ConnectionState
    from wsproto.events import CloseConnection, Message, Ping
    from wsproto.frame_protocol import CloseReason

    from .routing import wrap_tcp_server

    run.TCPServer = wrap_tcp_server(run.TCPServer)  # type: ignore[attr-defined]
    run.asyncio = _HypercornAsyncio()  # type: ignore[attr-defined]

    original_accept = ws_stream.Handshake.accept
    original_stream_accept = ws_stream.WSStream._accept
    original_handle = ws_stream.WSStream.handle
    original_send_event = ws_stream.WSStream._send_wsproto_event

    def accept(self, subprotocol, additional_headers):
        if not _installed["deflate"]:
            self.extensions = None  # negotiate no extension at all
        return original_accept(self, subprotocol, additional_headers)

    async def stream_accept(self, message):
        await original_stream_accept(self, message)
        transport = _find_transport(self)
        if transport is not None:
            self.scope["extensions"]["pulse.tap"] = SocketTap(transport)

    async def handle(self, event):
        if isinstance(event, Data):
            tap = self.scope["extensions"].get("pulse.tap")
            if tap is not None:
                tap.last_seen = time.monotonic()
        await original_handle(self, event)

    async def send_event(self, event):
        if isinstance(event, ws_stream.CloseConnection):
            tap = self.scope["extensions"].get("pulse.tap")
            if tap is not None and tap.on_close is not None:
                on_close, tap.on_close = tap.on_close, None
                on_close()
        await original_send_event(self, event)

    async def handle_events(self):
        """Hypercorn's loop over wsproto events, failing connections as RFC 6455 §7.1.7 asks:
        a protocol violation sends its close frame (1002/1007) before TCP closes (Hypercorn
        closed TCP without one), and after a 1009 TCP closes too (Hypercorn left it open)."""
        for event in self.connection.events():
            if isinstance(event, Message):
                try:
                    self.buffer.extend(event)
                except ws_stream.FrameTooLargeError:
                    await self._send_wsproto_event(
                        CloseConnection(code=CloseReason.MESSAGE_TOO_BIG))
                    await self.send(StreamClosed(stream_id=self.stream_id))
                    break
                if event.message_finished:
                    await self.app_put(self.buffer.to_message())
                    self.buffer.clear()
            elif isinstance(event, Ping):
                await self._send_wsproto_event(event.response())
            elif isinstance(event, CloseConnection):
                if self.connection.state == ConnectionState.REMOTE_CLOSING:
                    await self._send_wsproto_event(event.response())
                elif self.connection.state == ConnectionState.OPEN:  # wsproto's ParseFailed
                    await self._send_wsproto_event(
                        CloseConnection(code=event.code, reason=event.reason))
                await self.send(StreamClosed(stream_id=self.stream_id))

    ws_stream.Handshake.accept = accept
    ws_stream.WSStream._send_wsproto_event = send_event
    ws_stream.WSStream._accept = stream_accept
    ws_stream.WSStream.handle = handle
    ws_stream.WSStream._handle_events = handle_events
