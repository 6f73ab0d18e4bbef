"""Shared fixtures.

* ``backend`` parametrises a test over the embedded default (SQLite + in-process broker) and the
  production pair (real PostgreSQL + real Redis). Real services come from ``TEST_DATABASE_URL`` /
  ``TEST_REDIS_URL`` (tox points them at the local services). Outside CI an unreachable service
  skips its tests; under ``CI=true`` it is a failure with a clear message.
* Redis tests are isolated by a unique key prefix; PostgreSQL tests get a fresh database.
* ``live_server`` runs the app on a real Hypercorn socket in the test's event loop.
"""
from __future__ import annotations

import asyncio
import os
import socket
import uuid
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import pytest

from quart_app import create_app
from quart_app.realtime.auth import mint_token
from quart_app.config import load_settings

# Session-scoped Redis Cluster and Sentinel topologies from real binaries (started on first use).
from .redis_cluster import redis_cluster, redis_sentinel  # noqa: E402,F401

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PG_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
# Seed 000 §3.3.3, copied from the seed (not imported from the code under test).
SEED_MAPPINGS = [
    ("pubsub:share_submitted", "mining"), ("pubsub:worker_status", "mining"),
    ("pubsub:hashrate_update", "mining"), ("pubsub:best_diff", "mining"),
    ("pubsub:block_found", "dashboard"), ("pubsub:badge_earned", "gamification"),
    ("pubsub:xp_gained", "gamification"), ("pubsub:level_up", "gamification"),
    ("pubsub:streak_update", "gamification"), ("pubsub:leaderboard_update", "competition"),
    ("pubsub:match_update", "competition"), ("pubsub:feed_item", "dashboard"),
]
SECRET = "test-secret-0123456789abcdef-0123456789"
API_KEY = "test-api-key"


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port),
                                      timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, url: str, default_port: int) -> None:
    if _reachable(url, default_port):
        return
    message = f"{name} is not reachable at {url}"
    if IN_CI:
        pytest.fail(f"{message}: CI=true requires it (start it, or set the TEST_* URL)",
                    pytrace=False)
    pytest.skip(f"{message} (set CI=true to make this a failure)")


@pytest.fixture(autouse=True)
def app_namespaces():
    """The built-in app's channel table, as create_app installs it, for tests that build engine
    parts without an app (the engine itself has no table: docs/namespaces.md)."""
    from quart_app.dashboard import channels
    from quart_app.realtime import namespaces

    namespaces.install(namespaces.Registry(channels.NAMESPACES))
    yield


@pytest.fixture
def redis_url() -> str:
    require_service("Redis", REDIS_URL, 6379)
    return REDIS_URL


@pytest.fixture
def redis_prefix() -> str:
    return f"pulse-test:{uuid.uuid4().hex[:12]}:"


def _pg_admin(statement: str) -> None:
    """Run one admin statement on the default database, from a thread with its own loop."""
    import asyncpg
    import threading

    errors: list[BaseException] = []

    async def run() -> None:
        conn = await asyncpg.connect(PG_URL)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    def target() -> None:
        try:
            asyncio.run(run())
        except BaseException as exc:  # re-raised in the caller
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


@pytest.fixture
def pg_url():
    """A fresh, empty PostgreSQL database for this test, dropped afterwards."""
    require_service("PostgreSQL", PG_URL, 5432)
    name = f"pulse_test_{uuid.uuid4().hex[:12]}"
    _pg_admin(f'CREATE DATABASE "{name}"')
    parts = urlsplit(PG_URL)
    yield urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))
    _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def make_settings(database_url: str, redis_url: str | None = None, prefix: str = "pulse:",
                  **env: str):
    base = {"JWT_SECRET": SECRET, "PULSE_API_KEY": API_KEY, "DATABASE_URL": database_url}
    if redis_url:
        base["REDIS_URL"] = redis_url
        base["PULSE_REDIS_PREFIX"] = prefix
    base.update(env)
    return load_settings(base)


@pytest.fixture(params=["embedded", "real"])
def backend(request, tmp_path):
    """``{"name", "database_url", "redis_url", "prefix"}`` for each backend pair."""
    if request.param == "embedded":
        yield {"name": "embedded", "database_url": f"sqlite:///{tmp_path}/pulse.db",
               "redis_url": None, "prefix": "pulse:"}
        return
    require_service("Redis", REDIS_URL, 6379)
    pg = request.getfixturevalue("pg_url")
    yield {"name": "real", "database_url": pg, "redis_url": REDIS_URL,
           "prefix": f"pulse-test:{uuid.uuid4().hex[:12]}:"}


@pytest.fixture
def settings(backend):
    return make_settings(backend["database_url"], backend["redis_url"], backend["prefix"])


@asynccontextmanager
async def running_app(settings):
    """The app with its services started (before_serving) and stopped afterwards."""
    app = create_app(settings)
    async with app.test_app():
        yield app


@pytest.fixture
async def app(settings):
    async with running_app(settings) as app:
        yield app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def token():
    def make(user_id: int = 1, **kwargs) -> str:
        return mint_token(SECRET, user_id, **kwargs)

    return make


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@asynccontextmanager
async def serve_app(settings, port: int | None = None):
    """Run ``create_app(settings)`` on a real Hypercorn socket; yield ``(base_url, app)``."""
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    from quart_app.realtime.session import close_all

    app = create_app(settings)
    svc = app.extensions["pulse"]
    port = port or free_port()
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.graceful_timeout = 1.0
    config.websocket_max_message_size = 64 * 1024
    stop = asyncio.Event()

    async def trigger():
        await stop.wait()
        svc.shutting_down = True
        await close_all(svc)

    task = asyncio.get_running_loop().create_task(serve(app, config, shutdown_trigger=trigger))
    for _ in range(200):
        if task.done():
            task.result()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            await writer.wait_closed()
            if svc.listener.running:
                break
        except OSError:
            pass
        await asyncio.sleep(0.025)
    try:
        yield f"127.0.0.1:{port}", app
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


@pytest.fixture
async def live_server(settings):
    async with serve_app(settings) as (address, app):
        yield address, app


def with_env(settings, **changes):
    """A copy of ``settings`` with top-level fields replaced."""
    return replace(settings, **changes)


@pytest.fixture
async def redis_server(tmp_path, redis_url, redis_prefix):
    """A live server on real Redis (SQLite for data): for bridge and fan-out tests."""
    settings = make_settings(f"sqlite:///{tmp_path}/pulse.db", redis_url, redis_prefix)
    async with serve_app(settings) as (address, app):
        yield address, app


class WsClient:
    """A thin test client over `websockets`: JSON in and out, bounded waits."""

    def __init__(self, ws):
        self.ws = ws

    async def send(self, frame):
        import json

        await self.ws.send(frame if isinstance(frame, (str, bytes)) else json.dumps(frame))

    async def recv(self, timeout: float = 3.0):
        import json

        return json.loads(await asyncio.wait_for(self.ws.recv(), timeout))

    async def recv_until(self, predicate, timeout: float = 3.0):
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            frame = await self.recv(max(0.01, left))
            if predicate(frame):
                return frame

    async def subscribe(self, channel, since=None):
        frame = {"action": "subscribe", "channel": channel}
        if since is not None:
            frame["since"] = since
        await self.send(frame)
        return await self.recv_until(lambda f: f.get("type") in ("subscribed", "error")
                                     and (f.get("channel") == channel or "message" in f))

    async def nothing(self, timeout: float = 0.3) -> bool:
        try:
            await asyncio.wait_for(self.ws.recv(), timeout)
        except asyncio.TimeoutError:
            return True
        return False


@asynccontextmanager
async def ws_client(address: str, token: str, **kwargs):
    import websockets

    async with websockets.connect(f"ws://{address}/ws?token={token}", max_size=2**22,
                                  **kwargs) as ws:
        yield WsClient(ws)


def without_epoch(frame):
    """A frame (or list of frames) without the opaque ``epoch`` of `subscribed` acks, checked to
    be a well-formed epoch where present, so tests can compare the rest exactly."""
    if isinstance(frame, list):
        return [without_epoch(f) for f in frame]
    if isinstance(frame, dict) and frame.get("type") == "subscribed" and "epoch" in frame:
        epoch = frame["epoch"]
        assert isinstance(epoch, str) and epoch and all(c.isalnum() or c == "." for c in epoch)
        return {k: v for k, v in frame.items() if k != "epoch"}
    return frame
