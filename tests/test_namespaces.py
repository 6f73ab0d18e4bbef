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
    """The application's subscribe proxy: allows user 1, refuses user 2, fails for user 3."""

    def __init__(self):
        import json as _json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        calls = self.calls = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = _json.loads(self.rfile.read(int(self.headers["content-length"])))
                calls.append(body)
                status = 500 if body["user"] == 3 else 200
                answer = _json.dumps({"allow": body["user"] == 1}).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/may-subscribe"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


async def test_a_subscribe_proxy_decides_and_its_answers_are_cached(settings, toml):
    import httpx

    proxy = _AppProxy()
    try:
        path = toml('[namespaces.doc]\npattern = "doc:{doc}"\nsubscribe = "proxy"\n')
        settings = replace(settings, namespaces_file=path, subscribe_proxy_url=proxy.url)
        async with serve_app(settings) as (address, app):
            allowed = mint_token(SECRET, 1)
            async with ws_client(address, allowed) as ws:
                assert (await ws.subscribe("doc:a"))["type"] == "subscribed"
                assert (await ws.subscribe("doc:a"))["type"] == "subscribed"   # cached
            assert [(c["user"], c["channel"]) for c in proxy.calls] == [(1, "doc:a")]
            for user, reason in ((2, "refused by the app"), (3, "did not answer")):
                async with ws_client(address, mint_token(SECRET, user)) as ws:
                    refused = await ws.subscribe("doc:a")
                    assert refused["type"] == "error" and reason in refused["message"]
            async with httpx.AsyncClient(base_url=f"http://{address}") as http:
                ok = await http.get("/history", params={"channel": "doc:a", "token": allowed})
                no = await http.get("/history", params={"channel": "doc:a",
                                                        "token": mint_token(SECRET, 2)})
                assert (ok.status_code, no.status_code) == (200, 403)
    finally:
        proxy.close()
