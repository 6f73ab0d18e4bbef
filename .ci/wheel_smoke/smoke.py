"""Smoke test of an installed Pulse (issue 14): run from a directory that is not the checkout,
with the interpreter of a virtualenv the wheel was installed into.

    python smoke.py            # TEST_DATABASE_URL: a PostgreSQL server to migrate a fresh DB on

Checks: `pulse --version/--help`; `pulse migrate` on a fresh SQLite file and on a fresh
PostgreSQL database; `pulse serve`, then `GET /`, a static file, `/docs` and its assets,
`GET /dashboard/stats`, one WebSocket subscribe and one SSE event of a published event, and
/metrics. Exits non-zero on the first failure. Under CI=true an unreachable PostgreSQL fails.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import websockets

API_KEY = "smoke-api-key"
BIN = Path(sys.executable).parent


def step(text: str) -> None:
    print(f"wheel smoke: {text}", flush=True)


def fail(text: str) -> None:
    print(f"wheel smoke: FAILED: {text}", file=sys.stderr, flush=True)
    sys.exit(1)


def pulse(*args: str, env: dict, check: bool = True) -> str:
    run = subprocess.run([str(BIN / "pulse"), *args], env=env, capture_output=True, text=True,
                         timeout=60)
    if check and run.returncode != 0:
        fail(f"pulse {' '.join(args)} exited {run.returncode}: {run.stderr}")
    return run.stdout + run.stderr


def check_not_the_checkout() -> None:
    import quart_app

    here = Path(quart_app.__file__).resolve()
    if "site-packages" not in here.parts:
        fail(f"quart_app was imported from {here}, not from an installed package")
    step(f"quart_app imported from {here.parent}")


def migrate_sqlite(env: dict, workdir: Path) -> None:
    env = dict(env, DATABASE_URL=f"sqlite:///{workdir}/fresh.db")
    first = pulse("migrate", env=env)
    if "001_core.sql" not in first:
        fail(f"migrate on a fresh SQLite applied nothing: {first}")
    if "nothing (up to date)" not in pulse("migrate", env=env):
        fail("a second migrate was not a no-op")
    step("migrate on a fresh SQLite: " + first.strip())


async def migrate_postgresql(env: dict) -> None:
    url = os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if not url or not url.startswith("postgres"):
        return _skip_or_fail("no TEST_DATABASE_URL")
    import asyncpg

    name = f"pulse_wheel_{uuid.uuid4().hex[:10]}"
    parts = urlsplit(url)
    try:
        admin = await asyncpg.connect(url, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        return _skip_or_fail(f"PostgreSQL unreachable ({type(exc).__name__})")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        fresh = urlunsplit(parts._replace(path=f"/{name}"))
        out = pulse("migrate", env=dict(env, DATABASE_URL=fresh))
        if "001_core.sql" not in out:
            fail(f"migrate on a fresh PostgreSQL database applied nothing: {out}")
        step("migrate on a fresh PostgreSQL database: " + out.strip())
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI") == "true":
        fail(f"PostgreSQL migrate: {reason} (required under CI=true)")
    step(f"PostgreSQL migrate skipped: {reason}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def serve_and_exercise(env: dict, workdir: Path) -> None:
    env = dict(env, DATABASE_URL=f"sqlite:///{workdir}/serve.db")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(workdir / "server.log", "wb")
    proc = subprocess.Popen([str(BIN / "pulse"), "serve", "--port", str(port)], env=env,
                            stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    try:
        async with httpx.AsyncClient(base_url=base, timeout=5) as http:
            await wait_ready(http, proc)
            await exercise(http, port, pulse("token", "--user", "1", env=env).strip())
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            fail("the server did not stop within 20 s of SIGTERM")
        log.close()
    if proc.returncode != 0:
        fail(f"the server exited {proc.returncode}; log:\n" + (workdir / "server.log").read_text())
    step("serve stopped cleanly on SIGTERM")


async def wait_ready(http: httpx.AsyncClient, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            fail(f"pulse serve exited early with {proc.returncode}")
        try:
            if (await http.get("/readyz")).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.2)
    fail("pulse serve was not ready within 30 s")


async def expect(http: httpx.AsyncClient, path: str, status: int = 200, **kw) -> httpx.Response:
    response = await http.get(path, **kw)
    if response.status_code != status:
        fail(f"GET {path}: {response.status_code} (expected {status}): {response.text[:200]}")
    return response


async def exercise(http: httpx.AsyncClient, port: int, token: str) -> None:
    page = await expect(http, "/")
    if "<html" not in page.text.lower():
        fail("GET / is not the page")
    await expect(http, "/static/client/index.js")   # the packaged client the page imports
    await expect(http, "/static/client/client.js")
    docs = await expect(http, "/docs")
    if "https://" in docs.text or "http://" in docs.text:
        fail("/docs names another host")
    await expect(http, "/docs/assets/swagger-ui-bundle.js")
    stats = (await expect(http, "/dashboard/stats",
                          headers={"Authorization": f"Bearer {token}"})).json()
    step(f"GET / , static, /docs and /dashboard/stats answered ({len(stats)} stats fields)")

    async with websockets.connect(f"ws://127.0.0.1:{port}/ws") as ws, \
            http.stream("GET", "/sse", params={"channels": "dashboard", "token": token},
                        timeout=10) as sse:
        await ws.send(json.dumps({"action": "auth", "token": token}))
        await ws.send(json.dumps({"action": "subscribe", "channel": "dashboard"}))
        lines = sse.aiter_lines()
        await until(lambda frame: frame.get("type") == "subscribed", ws_frames(ws), "ws ack")
        await until(lambda frame: frame.get("type") == "subscribed", sse_frames(lines), "sse ack")
        height = 871720 + int(time.time()) % 1000
        published = await http.post("/api/events", headers={"X-API-Key": API_KEY}, json={
            "type": "block_found", "user_id": 1, "data": {"height": height, "reward": 3.125}})
        if published.status_code != 202:
            fail(f"POST /api/events: {published.status_code} {published.text}")

        def is_block(frame):
            data = frame.get("data") or {}
            return data.get("type") == "block_found" and data.get("height") == height

        await until(is_block, ws_frames(ws), "the event over WebSocket")
        await until(is_block, sse_frames(lines), "the event over SSE")
    step("one WebSocket subscribe and one SSE stream received the published event")
    metrics = (await expect(http, "/metrics")).text
    for name in ("pulse_ingested_events_total 1.0", 'pulse_connections_accepted_total{transport="ws"}',
                 "process_resident_memory_bytes"):
        if name not in metrics:
            fail(f"/metrics lacks {name!r}")
    step("/metrics answered")


async def ws_frames(ws):
    while True:
        yield json.loads(await ws.recv())


async def sse_frames(lines):
    async for line in lines:
        if line.startswith("data:"):
            yield json.loads(line[5:])


async def until(match, frames, what: str, timeout: float = 10) -> dict:
    async def first():
        async for frame in frames:
            if match(frame):
                return frame
        fail(f"{what}: the stream ended")

    try:
        return await asyncio.wait_for(first(), timeout)
    except asyncio.TimeoutError:
        fail(f"{what}: nothing within {timeout} s")


async def main() -> None:
    check_not_the_checkout()
    with tempfile.TemporaryDirectory(prefix="pulse-wheel-smoke-") as tmp:
        workdir = Path(tmp)
        os.chdir(workdir)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("PULSE_") and k not in ("DATABASE_URL", "REDIS_URL")}
        env.update(PULSE_API_KEY=API_KEY, JWT_SECRET="wheel-smoke-secret-" + "x" * 24,
                   PYTHONUNBUFFERED="1")
        version = pulse("--version", env=env).strip()
        if not version.startswith("pulse "):
            fail(f"pulse --version printed {version!r}")
        if not pulse("--help", env=env).startswith("usage: pulse "):
            fail("pulse --help does not name the program pulse")
        step(version)
        migrate_sqlite(env, workdir)
        await migrate_postgresql(env)
        await serve_and_exercise(env, workdir)
    step("passed")


if __name__ == "__main__":
    asyncio.run(main())
