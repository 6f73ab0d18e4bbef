"""``POST /api/publish``: the generic publish API (DESIGN §8; docs/protocol.md, "Publishing from
your backend").

Any application publishes its own events on any valid channel: no SQL, no domain side effects,
only the broker (offsets, history, every process), exactly as ingested events are published.
Three body forms: ``{"channel", "data"}``, ``{"channels": [...], "data"}`` (a broadcast) and a
JSON array of those (a batch, answered item by item). The parsing and publishing here are also
what :class:`quart_app.publisher.RedisPublisher` runs, without the HTTP hop.

Contract:

* A rejected item (bad channel, bad ``data``) is a 422 for that item and publishes nothing; the
  other items of a batch still go out (207 when some did and some did not).
* Publications of one request on one channel keep the request's order (item order, then the
  order of ``channels``); different channels are published concurrently.
* With an ``Idempotency-Key``, each publication's id is ``{key}:{item index}:{channel}`` and
  carries the hash of the whole body: a repeat gets the same offsets back and publishes nothing
  again (a retry after a 503 publishes only what the first attempt did not), and the key with
  another body is a 422.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from pydantic import BaseModel, Field
from quart import Blueprint
from quart_schema import document_request, document_response, tag

from .errors import Unprocessable
from .jsoncheck import json_problem
from .realtime import namespaces
from .realtime.broker import Publication
from .web import idempotency_key, json_body, require_api_key, services

bp = Blueprint("publish_api", __name__)

MAX_BODY_BYTES = 1024 * 1024
MAX_BATCH = 1000
MAX_CHANNELS = 100
MAX_TYPE_LENGTH = 64
ITEM_FIELDS = frozenset({"channel", "channels", "data"})
# Channels published at once. One channel's publications go one after another: concurrent
# Redis calls may reach the server in any order, and a channel's offsets must follow the request.
LANES = 32
PIPELINE_CHUNK = 500  # publications per broker round trip
KEY_REUSED = "Idempotency-Key reused with a different body"

# ``publish(channel, data, *, publication_id=None, body_hash="")``: Engine.publish or the like.
PublishFn = Callable[..., Awaitable[Publication]]


@dataclass(frozen=True, slots=True)
class Item:
    """One valid item: where its ``data`` goes. ``single``: the ``{"channel"}`` form."""

    index: int
    channels: tuple[str, ...]
    data: dict
    single: bool


def parse_item(value: Any, index: int = 0) -> Item:
    """Validate one ``{"channel"|"channels", "data"}`` object; raise Unprocessable naming the
    field at fault."""
    if not isinstance(value, dict):
        raise Unprocessable("An item must be a JSON object with 'channel' or 'channels', and "
                            "'data'")
    problem = json_problem(value)
    if problem is not None:
        raise Unprocessable(problem)
    unknown = sorted(set(value) - ITEM_FIELDS)
    if unknown:
        raise Unprocessable(f"Unknown field(s): {', '.join(unknown)}")
    if ("channel" in value) == ("channels" in value):
        raise Unprocessable("Give either 'channel' or 'channels'")
    single = "channel" in value
    channels = [value["channel"]] if single else value["channels"]
    if not single and (not isinstance(channels, list)
                       or not 1 <= len(channels) <= MAX_CHANNELS):
        raise Unprocessable(f"'channels' must be a list of 1 to {MAX_CHANNELS} channels")
    for position, channel in enumerate(channels):
        if not namespaces.is_valid(channel):
            where = "channel" if single else f"channels[{position}]"
            shown = channel if isinstance(channel, str) else json.dumps(channel)
            raise Unprocessable(f"Invalid channel in '{where}': {shown[:64]}")
    if len(set(channels)) != len(channels):
        raise Unprocessable("'channels' must be distinct")
    data = value.get("data")
    if not isinstance(data, dict):
        raise Unprocessable("'data' must be a JSON object")
    kind = data.get("type")
    if not isinstance(kind, str) or not 0 < len(kind) <= MAX_TYPE_LENGTH:
        raise Unprocessable(
            f"'data.type' must be a non-empty string of at most {MAX_TYPE_LENGTH} characters")
    return Item(index, tuple(channels), data, single)


def parse_body(body: Any) -> tuple[bool, list[Item | str]]:
    """``(is_batch, items)``: each item parsed, or the reason it was rejected. A body that is
    neither form, or a batch of a wrong size, raises Unprocessable."""
    if isinstance(body, list):
        if not 1 <= len(body) <= MAX_BATCH:
            raise Unprocessable(f"A batch holds 1 to {MAX_BATCH} items, got {len(body)}")
        items: list[Item | str] = []
        for index, value in enumerate(body):
            try:
                items.append(parse_item(value, index))
            except Unprocessable as exc:
                items.append(exc.detail)
        return True, items
    if isinstance(body, dict):
        return False, [parse_item(body)]
    raise Unprocessable("Body must be a JSON object (one publish) or an array (a batch)")


def body_hash(body: Any) -> str:
    """sha256 of the body's canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


async def publish_items(publish: PublishFn, items: list[Item], key: str | None = None,
                        digest: str = "", publish_many: Any = None
                        ) -> tuple[dict[tuple[int, str], int], bool]:
    """Publish every (item, channel); return ``({(index, channel): offset}, replayed)``.

    ``replayed``: a key was given and every publication was already out under it. With a key,
    the first publication goes alone: a key reused with another body is refused (422) before
    anything else is published. A broker error propagates (a 503) once the lanes have stopped;
    what went out before it is kept, and a retry with the same key publishes only the rest.
    """
    jobs = [(item.index, channel, item.data) for item in items for channel in item.channels]
    offsets: dict[tuple[int, str], int] = {}
    duplicates = 0

    async def run(index: int, channel: str, data: dict) -> None:
        nonlocal duplicates
        ids = {} if key is None else {"publication_id": f"{key}:{index}:{channel}",
                                      "body_hash": digest}
        publication = await publish(channel, data, **ids)
        if publication.duplicate:
            if publication.stored_hash != digest:
                raise Unprocessable(KEY_REUSED)
            duplicates += 1
        offsets[(index, channel)] = publication.offset

    if key is not None and jobs:
        await run(*jobs[0])
        jobs = jobs[1:]
    if publish_many is not None:
        # One broker round trip per chunk, in request order (a channel's order is kept).
        for start in range(0, len(jobs), PIPELINE_CHUNK):
            chunk = jobs[start:start + PIPELINE_CHUNK]
            results = await publish_many([
                (channel, data, None if key is None else f"{key}:{index}:{channel}", digest)
                for index, channel, data in chunk])
            for (index, channel, _data), publication in zip(chunk, results):
                if publication.duplicate:
                    if publication.stored_hash != digest:
                        raise Unprocessable(KEY_REUSED)
                    duplicates += 1
                offsets[(index, channel)] = publication.offset
        jobs = []
    lanes: dict[str, list] = {}
    for job in jobs:
        lanes.setdefault(job[1], []).append(job)
    pending = iter(lanes.values())
    failures: list[BaseException] = []

    async def lane_worker() -> None:
        for lane in pending:  # one iterator shared by the workers: each lane is taken once
            for job in lane:
                if failures:
                    return
                try:
                    await run(*job)
                except Exception as exc:
                    failures.append(exc)
                    return

    await asyncio.gather(*(lane_worker() for _ in range(min(LANES, len(lanes)))))
    if failures:
        raise failures[0]
    replayed = key is not None and bool(offsets) and duplicates == len(offsets)
    return offsets, replayed


def answer(is_batch: bool, items: list[Item | str],
           offsets: dict[tuple[int, str], int]) -> tuple[dict, int]:
    """The JSON answer and its status (batch: 202 all published, 207 mixed, 422 none)."""
    def published(item: Item) -> list[dict]:
        return [{"channel": c, "offset": offsets[(item.index, c)]} for c in item.channels]

    if not is_batch:
        item = items[0]
        assert isinstance(item, Item)
        refs = published(item)
        if item.single:
            return {"channel": refs[0]["channel"], "offset": refs[0]["offset"],
                    "published": refs}, 202
        return {"published": refs}, 202
    results = [{"status": 422, "detail": item} if isinstance(item, str)
               else {"status": 202, "published": published(item)} for item in items]
    good = sum(1 for r in results if r["status"] == 202)
    status = 202 if good == len(results) else 207 if good else 422
    return {"results": results}, status


async def publish_body(publish: PublishFn, body: Any, key: str | None = None,
                       publish_many: Any = None) -> tuple[dict, int, bool]:
    """Parse, publish and answer one request body: ``(answer, status, replayed)``."""
    is_batch, items = parse_body(body)
    valid = [item for item in items if isinstance(item, Item)]
    digest = body_hash(body) if key is not None else ""
    offsets, replayed = await publish_items(publish, valid, key, digest, publish_many)
    result, status = answer(is_batch, items, offsets)
    return result, status, replayed


# -- HTTP ---------------------------------------------------------------------------------------
class PublishBody(BaseModel):
    channel: str | None = Field(None, description="The channel (or give 'channels')")
    channels: list[str] | None = Field(None, description="1 to 100 distinct channels")
    data: dict = Field(description="The publication: a JSON object with a string 'type'")


class PublishedRef(BaseModel):
    channel: str
    offset: int


class PublishAnswer(BaseModel):
    channel: str | None = Field(None, description="The {\"channel\"} form only")
    offset: int | None = Field(None, description="The {\"channel\"} form only")
    published: list[PublishedRef] = Field(description="Each channel and the offset it got")


@bp.post("/api/publish")
@tag(["publish"])
@document_request(PublishBody)
@document_response(PublishAnswer, 202)
async def post_publish():
    """Publish application events on channels (X-API-Key).

    Body: `{"channel", "data"}`, `{"channels": [...], "data"}`, or a JSON array of up to 1,000
    of those (a batch: 202, 207 or 422 with `{"results": [{"status", "published"|"detail"}]}`).
    `data.type` is any string of 1-64 characters. `Idempotency-Key` makes a retry publish
    nothing twice. See docs/protocol.md, "Publishing from your backend".
    """
    require_api_key()
    key = idempotency_key()
    body = await json_body(MAX_BODY_BYTES)
    svc = services()
    result, status, replayed = await publish_body(svc.publish, body, key, svc.publish_many)
    return result, status, {"Idempotency-Replayed": "true"} if replayed else {}
