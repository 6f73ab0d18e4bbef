"""Namespaces (docs/namespaces.md): the built-in table, an operator's TOML file merged over it,
its validation at start, and the per-namespace rules the engine then follows."""
import time
from dataclasses import replace

import pytest

from quart_app.config import load_settings
from quart_app.errors import ConfigError
from quart_app.dashboard import channels
from quart_app.realtime import namespaces
from quart_app.realtime.auth import Principal, mint_token

from .conftest import SECRET, serve_app, ws_client

SEED_003 = """
# seed 003: project-scoped events for the project's members (cookie or token auth)
[namespaces.project]
pattern = "project:{project}:events"
subscribe = "member:project:projects"
history_size = 200
history_ttl_seconds = 3600
latest_value = { "agent_status" = ["agent_id"] }

[namespaces.room]
pattern = "room:{room}"
subscribe = "token"

[namespaces.audit]
pattern = "audit:{tenant:int}"
subscribe = "none"

[namespaces.ticker]
pattern = "ticker:{symbol}"
history_size = 0
"""


def who(user_id=1, **claims):
    return Principal(user_id=user_id, expires_at=time.time() + 60,
                     projects=frozenset(claims.pop("projects", ())), claims=claims)


@pytest.fixture
def toml(tmp_path):
    def write(text: str):
        path = tmp_path / "namespaces.toml"
        path.write_text(text)
        return str(path)
    return write


@pytest.fixture(autouse=True)
def builtin_table():
    yield
    namespaces.install(namespaces.Registry(channels.NAMESPACES))


def test_the_builtin_table_is_the_reference_apps():
    namespaces.install(namespaces.Registry(channels.NAMESPACES))
    for channel in ("mining", "dashboard", "gamification", "competition", "leaderboard:shares",
                    "activity:feed", "session:s1:live", "user:1:progress", "project:p1:events"):
        assert namespaces.is_valid(channel), channel
    for channel in ("minings", "activity:other", "user:x:progress", "session:s1", "a" * 129,
                    "project:p1:events:x", "user:1:progress\n"):
        assert not namespaces.is_valid(channel), channel
    assert namespaces.check("user:2:progress", who(1)).startswith("Forbidden")
    assert namespaces.check("user:1:progress", who(1)) is None
    assert namespaces.check("project:p1:events", who(1, projects=["p1"])) is None
    assert namespaces.check("project:p2:events", who(1, projects=["p1"])).startswith("Forbidden")
    assert [c for c in ("mining", "dashboard", "gamification", "competition")
            if namespaces.targets_user(c)] == ["mining", "dashboard", "gamification"]


def test_a_file_adds_and_overrides_namespaces(toml):
    registry = namespaces.load_file(toml(SEED_003), namespaces.Registry(channels.NAMESPACES))
    namespaces.install(registry)
    project = namespaces.namespace_of("project:p1:events")
    assert (project.history_size, project.history_ttl_seconds) == (200, 3600.0)
    assert namespaces.check("room:lobby", who(1, channels=["room:lob*"])) is None
    assert namespaces.check("room:other", who(1, channels=["room:lob*"])).startswith("Forbidden")
    assert namespaces.check("room:lobby", who(1)).startswith("Forbidden")
    assert namespaces.check("audit:7", who(1)).startswith("Forbidden")
    assert not namespaces.is_valid("audit:x")
    assert namespaces.is_valid("mining")                       # the built-ins stay
    key = namespaces.latest_value_key("project:p1:events", "agent_status", {"agent_id": "a1"})
    assert key == ("project:p1:events", "agent_status", "a1")
    assert namespaces.latest_value_key("project:p1:events", "task_update", {}) is None


@pytest.mark.parametrize("text, problem", [
    ("[namespaces.x]\npattern = 'a:{v'\n", "namespace 'x'"),
    ("[namespaces.x]\npattern = 'a:{v}'\nsubscribe = 'owner:w'\n", "no variable 'w'"),
    ("[namespaces.x]\npattern = 'a:{v}'\nsubscribe = 'admins'\n", "'subscribe' must be"),
    ("[namespaces.x]\npattern = 'a:{v}'\nhistory_size = -1\n", "'history_size'"),
    ("[namespaces.x]\npattern = 'a:{v}'\ncolour = 'red'\n", "unknown key(s) colour"),
    ("[namespaces.x]\nsubscribe = 'anyone'\n", "'pattern' is required"),
    ("[namespaces.x]\npattern = 'a:{v:a b}'\n", "must be 'int' or choices"),
    ("[namespaces.x]\npattern = 'a:{v}'\nlatest_value = { t = 'k' }\n", "'latest_value'"),
    ("[other]\nx = 1\n", "expected [namespaces.<name>]"),
    ("[namespaces.x\n", "not valid TOML"),
])
def test_a_bad_file_stops_the_start_naming_file_namespace_and_problem(toml, text, problem):
    path = toml(text)
    with pytest.raises(ConfigError) as caught:
        load_settings({"PULSE_NAMESPACES": path})
    assert path in caught.value.detail and problem in caught.value.detail, caught.value.detail


def test_a_missing_file_stops_the_start():
    with pytest.raises(ConfigError, match="cannot read it"):
        load_settings({"PULSE_NAMESPACES": "/nonexistent/namespaces.toml"})


async def test_a_live_server_follows_the_file(settings, toml, token):
    settings = replace(settings, namespaces_file=toml(SEED_003))
    async with serve_app(settings) as (address, app):
        svc = app.extensions["pulse"]
        member = mint_token(SECRET, 5, projects=["p1"])
        async with ws_client(address, member) as ws:
            ack = await ws.subscribe("project:p1:events")
            assert ack["type"] == "subscribed"
            await svc.publish("project:p1:events", {"type": "agent_status", "agent_id": "a1"})
            assert (await ws.recv())["data"]["agent_id"] == "a1"
            assert (await ws.subscribe("room:lobby"))["type"] == "error"
        # No history on ticker: nothing to recover, ever.
        for i in range(3):
            await svc.publish("ticker:BTC", {"type": "price", "i": i})
        async with ws_client(address, token(1)) as ws:
            await ws.send({"action": "subscribe", "channel": "ticker:BTC", "since": 1})
            ack = await ws.recv()
            assert ack["recovered"] is False and ack["offset"] == 3
            assert await ws.nothing(0.2)


class _AppProxy:
    """The application's subscribe proxy, a real HTTP server: allows user 1, refuses user 2,
    fails (500) for user 3, answers user 4 after 1 s (past the timeout), and user 5 after 0.3 s
    (allowed)."""

    def __init__(self):
        import json as _json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        calls = self.calls = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = _json.loads(self.rfile.read(int(self.headers["content-length"])))
                calls.append(body)
                user = body["user"]
                if user in (4, 5):
                    time.sleep(1.0 if user == 4 else 0.3)
                status = 500 if user == 3 else 200
                answer = _json.dumps({"allow": user in (1, 4, 5)}).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except OSError:  # the caller gave up (the timeout case)
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/may-subscribe"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def app_proxy():
    proxy = _AppProxy()
    yield proxy
    proxy.close()


async def _sse_verdict(http, channel: str, token: str) -> tuple[int, str]:
    """``/sse``'s answer: 200 and the first frame's type, or the refusal's status and detail."""
    import json as _json

    async with http.stream("GET", "/sse", params={"channels": channel, "token": token}) as resp:
        if resp.status_code != 200:
            await resp.aread()
            return resp.status_code, resp.json()["detail"]
        async for line in resp.aiter_lines():
            if line.startswith("data:"):
                return 200, _json.loads(line[5:])["type"]
    return resp.status_code, ""


async def test_a_subscribe_proxy_decides_on_ws_sse_and_history(settings, toml, app_proxy):
    """allow, deny, error and timeout, each the same on the three ways in; answers cached,
    errors and timeouts not."""
    import httpx

    proxy = app_proxy
    path = toml('[namespaces.doc]\npattern = "doc:{doc}"\nsubscribe = "proxy"\n')
    settings = replace(settings, namespaces_file=path, subscribe_proxy_url=proxy.url,
                       subscribe_proxy_timeout_seconds=0.4, subscribe_proxy_cache_seconds=30.0)
    async with serve_app(settings) as (address, app):
        async with httpx.AsyncClient(base_url=f"http://{address}", timeout=5) as http:
            for user, channel, verdict in ((1, "doc:a", None),
                                           (2, "doc:a", "refused by the app"),
                                           (3, "doc:a", "did not answer"),
                                           (4, "doc:a", "did not answer")):
                tok = mint_token(SECRET, user)
                async with ws_client(address, tok) as ws:
                    started = time.monotonic()
                    frame = await ws.subscribe(channel)
                    took = time.monotonic() - started
                if verdict is None:
                    assert frame["type"] == "subscribed"
                else:
                    assert frame["type"] == "error" and verdict in frame["message"], frame
                if user == 4:  # refused at the timeout, not after the app's 1 s
                    assert took < 0.9, took
                sse = await _sse_verdict(http, channel, tok)
                history = await http.get("/history", params={"channel": channel, "token": tok})
                if verdict is None:
                    assert sse == (200, "subscribed") and history.status_code == 200
                else:
                    assert sse[0] == 403 and verdict in sse[1], sse
                    assert history.status_code == 403 and verdict in history.json()["detail"]
            asked = [c["user"] for c in proxy.calls]
            # 1 and 2: asked once, then cached; 3 and 4 (failures): asked each time.
            assert (asked.count(1), asked.count(2), asked.count(3), asked.count(4)) == (1, 1, 3, 3)
            assert proxy.calls[0] == {"user": 1, "channel": "doc:a", "claims": {}}


async def test_concurrent_asks_share_one_proxy_request(settings, toml, app_proxy):
    """Ten connections of one user subscribing at once (a reconnect storm): one request."""
    import asyncio

    path = toml('[namespaces.doc]\npattern = "doc:{doc}"\nsubscribe = "proxy"\n')
    settings = replace(settings, namespaces_file=path, subscribe_proxy_url=app_proxy.url)
    async with serve_app(settings) as (address, app):
        tok = mint_token(SECRET, 5)

        async def one():
            async with ws_client(address, tok) as ws:
                return (await ws.subscribe("doc:b"))["type"]

        assert await asyncio.gather(*(one() for _ in range(10))) == ["subscribed"] * 10
        assert [c["user"] for c in app_proxy.calls] == [5]


async def test_token_channels_rule_on_ws_sse_and_history(settings, toml):
    """``subscribe = "token"``: the JWT's ``channels`` claim (globs) decides, on each way in."""
    import httpx

    settings = replace(settings, namespaces_file=toml(SEED_003))
    allowed = mint_token(SECRET, 1, channels=["room:lob*", "room:kitchen"])
    async with serve_app(settings) as (address, app):
        async with httpx.AsyncClient(base_url=f"http://{address}", timeout=5) as http:
            for channel, ok in (("room:lobby", True), ("room:kitchen", True),
                                ("room:garden", False)):
                async with ws_client(address, allowed) as ws:
                    frame = await ws.subscribe(channel)
                assert (frame["type"] == "subscribed") is ok, frame
                sse = await _sse_verdict(http, channel, allowed)
                history = await http.get("/history", params={"channel": channel,
                                                              "token": allowed})
                assert (sse[0], history.status_code) == ((200, 200) if ok else (403, 403))
            bare = mint_token(SECRET, 2)  # no channels claim: nothing in the namespace
            assert (await _sse_verdict(http, "room:lobby", bare))[0] == 403
