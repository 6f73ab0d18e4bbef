"""The client package (``static/client``, npm ``pulse-realtime-client``) as a user gets it.

``npm pack`` builds the tarball; it is installed into an empty directory (with the ``ws`` package
from the dev dependencies, since Node 20 has no global WebSocket) and a Node script uses it
against a live server: subscribe, receive, a refused subscription, history, the missing-transport
error. Also: the page's server exposes the package's modules and nothing else of it.

Needs ``node`` and ``npm`` and the dev dependencies (``npm ci`` in ``static/client``, which tox
runs first). Without them these tests skip, except under ``CI=true``.
"""
from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from quart_app.realtime.auth import mint_token

from .conftest import API_KEY, IN_CI, SECRET, make_settings, serve_app

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "static" / "client"
WS_PACKAGE = PACKAGE / "node_modules" / "ws"
TIMEOUT = 20

SCRIPT = r"""
import { Client, ErrorCode, VERSION } from "pulse-realtime-client";
import { bindQueryClient } from "pulse-realtime-client/tanstack";
import WebSocket from "ws";

const [base, token] = process.argv.slice(2);
const out = (event, body = {}) => process.stdout.write(JSON.stringify({ event, ...body }) + "\n");
const fail = (error) => { out("crash", { message: String(error?.stack ?? error) }); process.exit(1); };
setTimeout(() => fail("timed out"), 15000).unref();

try {
  new Client({ baseUrl: base, WebSocket: null, EventSource: null });
  out("no-transport", { code: null });
} catch (error) {
  out("no-transport", { code: error.code, message: error.message });
}

const client = new Client({ baseUrl: base, token, WebSocket });
client.on("state", ({ mode }) => out("state", { mode }));
const feed = client.subscribe("activity:feed");
const received = [];
feed.on("publication", ({ channel, offset, data }) => {
  received.push(offset);
  out("publication", { channel, offset, type: data.type });
  if (received.length === 2) finish().catch(fail);
});
const refused = client.subscribe("user:2:progress");
typeof bindQueryClient === "function" || fail("no tanstack helper");
client.connect();
try {
  await refused.ready();
  out("refused", { state: refused.state });
} catch (error) {
  out("refused", { state: refused.state, code: error.code, reason: error.reason });
}
await feed.ready();
out("ready", { version: VERSION, channels: client.metrics().channels, transport: client.metrics().transport });

async function finish() {
  const page = await client.history("activity:feed", { since: 0, limit: 1 });
  out("history", { offset: page.offset, recovered: page.recovered, offsets: page.publications.map((p) => p.offset), truncated: page.truncated });
  try {
    await client.history("user:2:progress");
  } catch (error) {
    out("history-refused", { code: error.code, status: error.status });
  }
  client.close();
  out("closed", { state: feed.state });
  process.exit(0);
}
"""


def _tools() -> tuple[str, str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    problem = None
    if not node or not npm:
        problem = "node and npm are needed (apt-get install nodejs npm)"
    elif not WS_PACKAGE.is_dir():
        problem = "the client's dev dependencies are missing (npm ci in static/client)"
    if problem:
        if IN_CI:
            pytest.fail(f"{problem}; CI=true requires these tests", pytrace=False)
        pytest.skip(problem)
    return node, npm


def _npm(npm: str, *args: str, cwd: Path) -> str:
    done = subprocess.run([npm, *args, "--no-audit", "--no-fund", "--loglevel=error"], cwd=cwd,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"npm {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """An empty project with the packed tarball (and ws) installed: (node, its directory)."""
    node, npm = _tools()
    packs = tmp_path_factory.mktemp("pack")
    listing = json.loads(_npm(npm, "pack", "--json", "--pack-destination", str(packs), cwd=PACKAGE))
    tarball = packs / listing[0]["filename"]
    files = {f["path"] for f in listing[0]["files"]}
    app = tmp_path_factory.mktemp("app")
    (app / "package.json").write_text('{"name": "pulse-client-user", "private": true, "type": "module"}')
    _npm(npm, "install", "--offline", str(tarball), str(WS_PACKAGE), cwd=app)
    return node, app, files


def test_the_tarball_holds_the_modules_and_types_but_no_tests(installed):
    _node, app, files = installed
    assert {"package.json", "index.js", "client.js", "tanstack.js", "types/index.d.ts",
            "types/tanstack.d.ts", "CHANGELOG.md", "README.md"} <= files
    assert not any(f.startswith(("tests/", "node_modules/")) for f in files), files
    manifest = json.loads((app / "node_modules/pulse-realtime-client/package.json").read_text())
    assert manifest["version"] == "0.1.0"
    assert "dependencies" not in manifest


@pytest.mark.asyncio
async def test_the_installed_package_works_against_a_live_server(installed, tmp_path):
    node, app, _files = installed
    (app / "use.mjs").write_text(SCRIPT)
    settings = make_settings(f"sqlite:///{tmp_path}/pulse.db")
    async with serve_app(settings) as (address, _app):
        token = mint_token(SECRET, 1)
        proc = await asyncio.create_subprocess_exec(
            node, "use.mjs", f"http://{address}/", token, cwd=app,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        events: list[dict] = []

        async def until(name: str) -> dict:
            while True:
                line = await asyncio.wait_for(proc.stdout.readline(), TIMEOUT)
                assert line, f"node ended before {name!r}: {events} {await proc.stderr.read()}"
                event = json.loads(line)
                events.append(event)
                assert event["event"] != "crash", event["message"]
                if event["event"] == name:
                    return event

        try:
            no_transport = await until("no-transport")
            assert no_transport["code"] == "no_transport", no_transport
            assert "ws" in no_transport["message"]
            refused = await until("refused")
            assert refused == {"event": "refused", "state": "failed", "code": "subscribe_refused",
                               "reason": "Forbidden channel: user:2:progress belongs to another user"}
            ready = await until("ready")
            assert ready["version"] == "0.1.0"
            assert ready["channels"] == ["activity:feed"], "the refused channel is forgotten"
            assert ready["transport"] == "websocket"
            async with httpx.AsyncClient(base_url=f"http://{address}") as http:
                for body in ({"type": "new_miner", "user_id": 1, "data": {"display_name": "npm-user"}},
                             {"type": "block_found", "user_id": 1, "data": {"height": 7, "reward": 3.125}}):
                    answer = await http.post("/api/events", json=body, headers={"X-API-Key": API_KEY})
                    assert answer.status_code == 202, answer.text
            first = await until("publication")
            second = await until("publication")
            assert first["channel"] == "activity:feed" and first["type"] == "feed_item"
            assert second["offset"] == first["offset"] + 1
            history = await until("history")
            assert history["offsets"] == [first["offset"]] and history["truncated"] is True
            # a cut page's offset is where it ends: the next call's since
            assert history["offset"] == first["offset"] and history["recovered"] is True
            assert (await until("history-refused"))["status"] == 403
            assert (await until("closed"))["state"] == "unsubscribed"
            assert await asyncio.wait_for(proc.wait(), TIMEOUT) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


@pytest.mark.asyncio
async def test_the_page_server_exposes_the_package_modules_only(tmp_path):
    settings = make_settings(f"sqlite:///{tmp_path}/pulse.db")
    async with serve_app(settings) as (address, _app):
        async with httpx.AsyncClient(base_url=f"http://{address}") as http:
            index = await http.get("/static/client/index.js")
            assert index.status_code == 200
            assert index.headers["content-type"].startswith("text/javascript")
            page = await http.get("/static/js/dashboard.js")
            assert '"../client/index.js"' in page.text
            for hidden in ("/static/client/tests/helpers.mjs", "/static/client/package.json",
                           "/static/client/node_modules/ws/index.js", "/static/client/types/index.d.ts",
                           "/static/client/tsconfig.json", "/static/js/realtime.js"):
                assert (await http.get(hidden)).status_code == 404, hidden
