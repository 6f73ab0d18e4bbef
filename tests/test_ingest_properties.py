"""Properties of ``POST /api/events`` under arbitrary JSON (issue 12), on both backends:

* no body, however hostile (lone surrogates, NUL, integers past float range, NaN and Infinity,
  deep nesting, floats near the ends of their range), is answered with a 5xx;
* a 422 changes nothing: no row, no offset;
* what is accepted reaches subscribers as strict JSON (no ``NaN``/``Infinity`` tokens, UTF-8).

Hypothesis drives a synchronous test that owns its event loop, so the app (and its PostgreSQL
database) is started once per backend, not once per example.
"""
from __future__ import annotations

import asyncio
import json
from contextlib import AsyncExitStack, asynccontextmanager

from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from quart_app import create_app
from quart_app.dashboard.events import MODELS, ROUTES
from quart_app.dashboard.stats import StatsPusher

from .dashboard_support import offsets, post_event, row_counts, svc_of
from .test_ingest import MINIMAL

EXAMPLES = 200

# Text from the whole code space, surrogates included, plus the characters that broke ingest.
_any_char = st.characters(codec=None, exclude_categories=())
text = st.one_of(
    st.text(_any_char, max_size=12),
    st.sampled_from(["", "\x00", "a\x00b", "\ud800", "x\udfffy", "\udc00\ud800", "é✓",
                     "\U0001F600", "2099-01-01T00:00:00Z", "0001-01-01T00:00:00+05:00",
                     "9999-12-31T23:59:59-05:00", "online", "rig-1", "shares", "e" * 40]),
)
numbers = st.one_of(
    st.integers(min_value=-(10**450), max_value=10**450),
    st.integers(min_value=-5, max_value=2**63 + 5),
    st.sampled_from([0, 1, 50, 51, 2**53 - 1, 2**53, 2**63 - 1, 2**63, -(2**63) - 1,
                     10**400, -(10**400), 1_000_000_000]),
    st.floats(),  # NaN, +-Infinity, subnormals, 1.7e308
    st.sampled_from([1e-12, 1e-13, 1e30, 1e31, 1e308, -0.0, 5e-324]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, text)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=12,
)


def _nested(depth: int, inner) -> object:
    for _ in range(depth):
        inner = [inner]
    return inner


deep = st.builds(_nested, st.integers(min_value=25, max_value=60), scalars)
FIELDS = sorted({name for model in MODELS.values() for name in model.model_fields}
                | {"category", "score", "text", "user_id", "type"})
keys = st.one_of(st.sampled_from(FIELDS), text)


def _compose(kind: str, extra: dict, user_id, where) -> dict:
    """A valid body of ``kind`` (test_ingest.MINIMAL) with ``extra`` merged into its data, so
    most examples get past routing and into the handlers, the database and the broker."""
    default_user, base = MINIMAL[kind]
    body = {"type": kind, "data": {**base, **extra}}
    if user_id is not None or default_user is not None:
        body["user_id"] = default_user if user_id is None else user_id
    if where is not None:
        body[where[0]] = where[1]
    return body


structured = st.builds(
    _compose,
    kind=st.sampled_from(sorted(ROUTES)),
    extra=st.dictionaries(keys, st.one_of(values, deep), max_size=3),
    user_id=st.one_of(st.none(), st.integers(min_value=1, max_value=3), numbers),
    where=st.one_of(st.none(), st.none(), st.tuples(st.just("channel"),
                                                    st.sampled_from(["session:s1:live"])),
                    st.tuples(st.sampled_from(["channel", "project_id"]), text)),
)
bodies = st.one_of(
    structured, structured, structured,
    st.fixed_dictionaries({"type": text, "data": st.dictionaries(keys, values, max_size=4)}),
    values,
    deep,
)


def _strict(text_: str) -> object:
    def refuse(token: str):
        raise AssertionError(f"frame holds the non-JSON token {token}")
    return json.loads(text_, parse_constant=refuse)


@asynccontextmanager
async def quiet_app(settings):
    """The app without its background jobs (the pruner, the stats flusher), which would change
    rows and offsets between an example's before and after; stats pushes happen at once."""
    app = create_app(settings)
    svc = svc_of(app)
    svc.background.clear()
    svc.stats_pusher = StatsPusher(svc, min_interval=0.0)
    async with app.test_app():
        yield app


def test_arbitrary_bodies_never_5xx_and_a_422_changes_nothing(settings):
    with asyncio.Runner() as runner:
        stack = AsyncExitStack()
        app = runner.run(stack.enter_async_context(quiet_app(settings)))
        client = app.test_client()
        try:
            _run_examples(runner, app, client)
        finally:
            runner.run(stack.aclose())


def _run_examples(runner: asyncio.Runner, app, client) -> None:
    @hsettings(max_examples=EXAMPLES, deadline=None, database=None,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(body=bodies)
    def check(body):
        runner.run(_one(app, client, body))

    check()


async def _one(app, client, body) -> None:
    raw = json.dumps(body, ensure_ascii=True)  # escapes surrogates; writes NaN and Infinity
    before_offsets, before_rows = await offsets(app), await row_counts(app)
    response = await post_event(client, raw)
    answer = await response.get_json()
    assert response.status_code < 500, (raw[:300], answer)
    _strict((await response.get_data()).decode("utf-8"))
    if response.status_code == 422:
        assert await offsets(app) == before_offsets, raw[:300]
        assert await row_counts(app) == before_rows, raw[:300]
        return
    assert response.status_code == 202, (raw[:300], answer)
    broker = svc_of(app).broker
    for ref in answer["published"]:
        history = await broker.history(ref["channel"], ref["offset"] - 1)
        for publication in history.publications:
            _strict(publication.frame.decode("utf-8"))
