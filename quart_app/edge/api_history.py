"""``/history``: missed publications, for polling clients and ``client.history()``
(docs/protocol.md, "History").

``GET /history?channel=C&since=N[&user_since=M][&epoch=E][&limit=L]`` answers::

    {"channel": C, "offset": <latest>, "recovered": bool, "epoch": E?, "user_offset": <latest>?,
     "publications": [{"channel", "data", "offset", "user_offset"?}, ...], "more": bool}

oldest first. On a user-targeted channel the caller's own offset space is read too: with
``user_since`` its publications after that offset, and ``user_offset`` always (so the next poll
can pass it). ``recovered`` is false when the bounded history no longer reaches back to the
position asked for, or when ``epoch`` names offsets that have restarted since: the client then
refetches its REST snapshot and continues from ``offset``/``user_offset``. ``limit`` (1–1000)
cuts the page; ``more`` says there is more after it, and ``offset``/``user_offset`` then name
where the page ends, so they can be passed back as ``since``/``user_since``.
"""
from __future__ import annotations

from quart import Blueprint, request

from ..errors import BadRequest, Forbidden
from ..realtime import namespaces as channels
from ..realtime.hub import read_spaces
from ..realtime.protocol import parse_offset, valid_epoch
from ..web import current_principal, services

bp = Blueprint("history", __name__)

MAX_LIMIT = 1000


def _offset_arg(name: str, default: str | None) -> int | None:
    raw = request.args.get(name, default)
    if raw is None:
        return None
    value = parse_offset(raw)
    if value is None:
        raise BadRequest(f"'{name}' must be a non-negative integer offset, got {raw[:32]!r}")
    return value


@bp.get("/history")
async def history():
    principal = current_principal()
    svc = services()
    svc.metrics.poll_requests += 1
    channel = request.args.get("channel", "")
    problem = await channels.authorize(svc, channel, principal)
    if problem:
        raise (Forbidden if problem.startswith("Forbidden") else BadRequest)(problem)
    since = _offset_arg("since", "0")
    user_since = _offset_arg("user_since", None)
    epoch = request.args.get("epoch") or None
    if epoch is not None and not valid_epoch(epoch):
        raise BadRequest("'epoch' must be the opaque string of an earlier answer or ack")
    raw_limit = request.args.get("limit")
    limit = MAX_LIMIT
    if raw_limit is not None:
        parsed = parse_offset(raw_limit)
        if parsed is None or not 1 <= parsed <= MAX_LIMIT:
            raise BadRequest(f"'limit' must be an integer from 1 to {MAX_LIMIT}")
        limit = parsed
    at = await read_spaces(svc.broker, channel, principal.user_id, since, user_since, epoch)
    found, latest, user_latest = at.publications, at.latest, at.user_latest
    more = len(found) > limit
    if more:
        found = found[:limit]
        latest = max([since] + [p.offset for p in found if p.user is None])
        if user_latest is not None:
            user_latest = max([user_since or 0] + [p.offset for p in found if p.user is not None])
    answer = {"channel": channel, "offset": latest, "recovered": at.recovered}
    if at.epoch:
        answer["epoch"] = at.epoch
    if user_latest is not None:
        answer["user_offset"] = user_latest
    answer["publications"] = [
        {"channel": p.channel, "data": p.data, "offset": p.offset,
         **({"user_offset": p.offset} if p.user is not None else {})}
        for p in found]
    answer["more"] = more
    return answer
