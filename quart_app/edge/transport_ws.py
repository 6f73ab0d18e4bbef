"""``/ws`` through Quart: the route for WebSockets the direct endpoint does not take.

The direct endpoint (:mod:`quart_app.edge.ws_direct`) serves every well-formed upgrade that opens a
connection under Hypercorn. This route serves the rest — another ASGI server, Quart's test
client, ``PULSE_WS_DEFLATE=true``, an upgrade on a kept-alive connection — with the same
:class:`~quart_app.realtime.session.Session`: a handler task reads frames with ``websocket.receive``, and
publications go straight to Hypercorn's socket through the tap of :mod:`quart_app.edge.hypercorn_hooks`
(or, without it, through a writer task).
"""
from __future__ import annotations

import asyncio
from typing import Any

from quart import Blueprint, Quart, websocket

from ..realtime.auth import Principal, token_from_request
from ..errors import Unauthorized
from ..realtime.hub import Connection
from ..realtime.outbox import Outbox
from ..realtime.protocol import CloseCode
from ..realtime.session import (CLOSE_HANDSHAKE_SECONDS, close_all, end_session, liveness, open_session,
                      principal_from_auth_frame)
from ..web import services

bp = Blueprint("ws", __name__)

# -- the Quart route (servers without the direct endpoint) -------------------------------
class QuartEndpoint:
    """Closes through Quart; writes publications directly when Hypercorn's socket tap is
    there (see edge/hypercorn_hooks.py), else through a writer task."""

    __slots__ = ("ws", "tap", "close_task")

    def __init__(self, ws: Any, tap: Any) -> None:
        self.ws = ws
        self.tap = tap
        self.close_task: asyncio.Task | None = None

    @property
    def transport(self) -> Any:
        return self.tap.transport if self.tap is not None else None

    @property
    def last_seen(self) -> float:
        """When the client last sent anything, pongs included (which Quart never sees)."""
        return self.tap.last_seen if self.tap is not None else 0.0

    def close(self, code: int, reason: str) -> None:
        if self.close_task is None:
            self.close_task = asyncio.get_running_loop().create_task(self._close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        try:
            await asyncio.wait_for(self.ws.close(int(code), reason), CLOSE_HANDSHAKE_SECONDS)
        except asyncio.TimeoutError:
            # A stalled peer: the close frame is stuck behind unread data.
            if self.tap is not None:
                self.tap.transport.abort()
            return
        except Exception:  # the peer may be gone already
            return
        if self.tap is not None:
            # The close frame is out. A peer that never answers it (a silent client closed for
            # idleness, say) is cut off at the deadline, as on the direct path; Hypercorn
            # alone would hold the socket open for as long as the peer stays silent.
            transport = self.tap.transport
            asyncio.get_running_loop().call_later(
                CLOSE_HANDSHAKE_SECONDS, lambda: transport.is_closing() or transport.abort())


async def _authenticate(svc) -> Principal:
    """Token from query/cookie/header, else a first frame ``{"action":"auth"}`` within 5 s."""
    token = token_from_request(websocket.args, websocket.cookies, websocket.headers)
    if token:
        return svc.tokens.verify(token)
    try:
        raw = await asyncio.wait_for(websocket.receive(), svc.settings.limits.auth_timeout_seconds)
    except asyncio.TimeoutError:
        raise Unauthorized("Authentication required: no token and no auth frame in time") from None
    return principal_from_auth_frame(svc, raw)


@bp.websocket("/ws")
async def ws_endpoint() -> None:
    svc = services()
    ws = websocket._get_current_object()
    await ws.accept()
    try:
        principal = await _authenticate(svc)
    except Unauthorized as exc:
        svc.metrics.auth_failures += 1
        await ws.close(CloseCode.UNAUTHORIZED, exc.detail)
        return
    tap = ws.scope.get("extensions", {}).get("pulse.tap") if hasattr(ws, "scope") else None
    endpoint = QuartEndpoint(ws, tap)
    session = open_session(svc, endpoint, principal)
    if session is None:
        await endpoint.close_task  # type: ignore[misc]
        return
    writer = None
    if tap is None:
        writer = asyncio.get_running_loop().create_task(_write(ws, session.conn.outbox))
    else:
        tap.on_close = session.stop_output
    try:
        while not session.closing:
            raw = await ws.receive()
            if raw is None:  # Quart's reading of an empty binary frame
                raw = b""
            if not session.admit():
                continue
            pending = session.receive(raw)
            if pending is not None:
                await pending
        if endpoint.close_task is not None:  # the reader decided to close: let the frame out
            await endpoint.close_task
            await _discard_until_closed(ws)
    except asyncio.CancelledError:
        raise  # Quart cancels the handler when the client disconnects
    finally:
        end_session(svc, session)
        if writer is not None:
            writer.cancel()


async def _discard_until_closed(ws: Any) -> None:
    """Keep reading after our close frame until the client answers it (bounded).

    Hypercorn hands frames to the app through a bounded queue; if the handler stopped reading,
    frames the client sent before seeing our close would fill it, Hypercorn would block and never
    read the client's closing handshake.
    """
    try:
        async with asyncio.timeout(CLOSE_HANDSHAKE_SECONDS):
            while True:
                await ws.receive()
    except TimeoutError:
        pass


async def _write(ws: Any, outbox: Outbox) -> None:
    """Writer for servers without the socket tap: one ``send`` per queued frame."""
    try:
        while not outbox.closed:
            for item in await outbox.drain():
                await ws.send(item.frame.decode())
    except asyncio.CancelledError:
        raise
    except Exception:  # the socket went away; the reader sees the disconnect
        outbox.close()


def install(app: Quart, svc) -> None:
    def recover(conn: Connection) -> None:
        closer = getattr(conn, "closer", None)
        if closer is not None:
            closer(CloseCode.RECOVER, "recover from history")

    svc.hub.on_recover = recover
    svc.background.append(liveness)

    async def _drain() -> None:
        await close_all(svc)

    svc.shutdown_hooks.append(_drain)
