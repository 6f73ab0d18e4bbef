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
from ..realtime.protocol import join_epoch, parse_offset, split_epoch, valid_epoch
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
    shared_epoch, user_epoch = split_epoch(epoch)
    targeted = channels.targets_user(channel)
    user = principal.user_id
    result = await svc.broker.history(channel, since, epoch=shared_epoch)
    latest, recovered = result.latest, result.complete
    found = [p for p in result.publications
             if not targeted or p.user is not None or p.user_id in (None, user)]
    answer: dict = {"channel": channel}
    user_latest = user_current = None
    if targeted:
        if user_since is None:
            user_latest, user_current = await svc.broker.latest(channel, user=user)
        else:
            mine = await svc.broker.history(channel, user_since, user=user, epoch=user_epoch)
            user_latest, user_current = mine.latest, mine.epoch
            recovered = recovered and mine.complete
            found += mine.publications
            found.sort(key=lambda p: p.published_at)
    more = len(found) > limit
    if more:
        found = found[:limit]
        latest = max([since] + [p.offset for p in found if p.user is None])
        if user_latest is not None:
            user_latest = max([user_since or 0] + [p.offset for p in found if p.user is not None])
    answer.update(offset=latest, recovered=recovered)
    joined = join_epoch(result.epoch, user_current)
    if joined:
        answer["epoch"] = joined
    if user_latest is not None:
        answer["user_offset"] = user_latest
    answer["publications"] = [
        {"channel": p.channel, "data": p.data, "offset": p.offset,
         **({"user_offset": p.offset} if p.user is not None else {})}
        for p in found]
    answer["more"] = more
    return answer
