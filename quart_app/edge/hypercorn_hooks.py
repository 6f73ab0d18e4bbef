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
   :mod:`quart_app.direct` with no task, queue or ASGI machinery per connection (hook 2 then
   only serves ``/ws`` requests that reach Quart: with ``PULSE_WS_DEFLATE=true``, or a second
   request on a kept-alive socket).

All are applied by :func:`install`, idempotently; without them (another ASGI server, the Quart
test client) the service falls back to ``websocket.send`` from a writer task.
"""
from __future__ import annotations

import time
from typing import Any

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


def install(deflate: bool = False) -> None:
    from hypercorn.protocol.events import Data
    from hypercorn.protocol import ws_stream

    _installed["deflate"] = deflate
    if "patched" in _installed:
        return
    _installed["patched"] = True

    from hypercorn.asyncio import run

    from .routing import wrap_tcp_server

    run.TCPServer = wrap_tcp_server(run.TCPServer)  # type: ignore[attr-defined]

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

    ws_stream.Handshake.accept = accept
    ws_stream.WSStream._send_wsproto_event = send_event
    ws_stream.WSStream._accept = stream_accept
    ws_stream.WSStream.handle = handle
