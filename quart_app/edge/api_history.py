"""``/history?channel=&since=``: missed messages for polling clients (DESIGN §4, §9)."""
from __future__ import annotations

from quart import Blueprint, request

from ..realtime import namespaces as channels
from ..realtime.protocol import parse_offset
from ..errors import BadRequest, Forbidden
from ..web import current_principal, services

bp = Blueprint("history", __name__)


@bp.get("/history")
async def history():
    """Publications after ``since`` on ``channel``, oldest first.

    ``recovered`` is false when the bounded history no longer reaches back to ``since``: the
    client then refetches the REST snapshot and continues from ``offset``.
    """
    principal = current_principal()
    services().metrics.poll_requests += 1
    channel = request.args.get("channel", "")
    problem = channels.check(channel, principal)
    if problem:
        raise (Forbidden if problem.startswith("Forbidden") else BadRequest)(problem)
    raw_since = request.args.get("since", "0")
    since = parse_offset(raw_since)
    if since is None:
        raise BadRequest(f"'since' must be a non-negative integer offset, got {raw_since[:32]!r}")
    result = await services().broker.history(channel, since)
    return {
        "channel": channel,
        "offset": result.latest,
        "recovered": result.complete,
        "publications": [
            {"channel": p.channel, "data": p.data, "offset": p.offset}
            for p in result.publications
            if p.user_id is None or not channels.targets_user(channel)
            or p.user_id == principal.user_id
        ],
    }
