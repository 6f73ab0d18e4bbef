"""``/presence``: who is subscribed to a channel, across every process (docs/protocol.md §16).

``GET /presence?channel=C`` answers ``{"channel": C, "clients": [{"user", "client"}, ...],
"more": bool}`` (at most :data:`~quart_app.realtime.presence.MAX_LISTED` clients, sorted by
user; ``more`` says the list was cut), and ``GET /presence/count?channel=C`` answers
``{"channel": C, "clients": n, "users": m}`` without listing anyone, for large channels.

Guarded like ``/history``: the caller's token, then the channel's subscribe rule (a caller who
may not subscribe may not see who did: 403), then the namespace must keep presence
(``presence = true``; otherwise 400).
"""
from __future__ import annotations

from quart import Blueprint, request

from ..errors import BadRequest, Forbidden
from ..realtime import namespaces as channels
from ..realtime.presence import MAX_LISTED
from ..web import current_principal, services

bp = Blueprint("presence", __name__)


async def _channel() -> str:
    principal = current_principal()
    svc = services()
    channel = request.args.get("channel", "")
    problem = await channels.authorize(svc, channel, principal)
    if problem:
        raise (Forbidden if problem.startswith("Forbidden") else BadRequest)(problem)
    if channels.presence_of(channel) is None:
        ns = channels.namespace_of(channel)
        raise BadRequest(f"Presence is not kept on {channel}: its namespace "
                         f"{ns.name if ns else '?'!r} does not set 'presence = true'")
    return channel


@bp.get("/presence")
async def presence():
    channel = await _channel()
    clients, _users, listed = await services().presence.read(channel, MAX_LISTED)
    return {"channel": channel, "clients": listed, "more": clients > len(listed)}


@bp.get("/presence/count")
async def presence_count():
    channel = await _channel()
    clients, users, _listed = await services().presence.read(channel)
    return {"channel": channel, "clients": clients, "users": users}
