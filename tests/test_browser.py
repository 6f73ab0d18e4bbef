"""The dashboard page end to end in headless Chromium (DESIGN §12), against a real server.

Playwright drives Debian's Chromium (``/usr/bin/chromium``, or ``$PULSE_CHROMIUM``); nothing is
downloaded. Without Playwright or Chromium these tests skip, except under ``CI=true``, where
that is a failure. ``PULSE_SKIP_BROWSER=1`` skips them on purpose.

The servers run in-process (``serve_app``) so a test can stop one and start another on the same
port and database; the demo screenshot uses ``python -m quart_app serve --demo`` itself.
"""
from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from quart_app.realtime.auth import mint_token

from .conftest import API_KEY, IN_CI, SECRET, free_port, make_settings, require_service, serve_app

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("PULSE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ARTIFACTS = ROOT / "tests" / "artifacts"
USER = 1


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"browser tests cannot run: {reason}. CI=true requires them "
                    "(apt-get install chromium; pip install playwright, or the 'browser' extra)",
                    pytrace=False)
    pytest.skip(f"{reason} (set CI=true to make this a failure)")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def browser():
    if os.environ.get("PULSE_SKIP_BROWSER"):
        _unavailable("PULSE_SKIP_BROWSER is set")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _unavailable("Playwright for Python is not installed")
    if not os.access(CHROMIUM, os.X_OK):
        _unavailable(f"no Chromium at {CHROMIUM}")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest_asyncio.fixture(loop_scope="module")
async def page(browser):
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    try:
        yield page
    finally:
        await context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


# -- helpers ---------------------------------------------------------------------------------
def settings_for(db_path: Path, redis_url: str | None = None, prefix: str = "pulse:"):
    return make_settings(f"sqlite:///{db_path}", redis_url, prefix)


async def publish(address: str, kind: str, user_id: int | None = USER, **data) -> dict:
    body: dict = {"type": kind, "data": data}
    if user_id is not None:
        body["user_id"] = user_id
    async with httpx.AsyncClient(base_url=f"http://{address}") as http:
        answer = await http.post("/api/events", json=body, headers={"X-API-Key": API_KEY})
    assert answer.status_code == 202, answer.text
    return answer.json()


async def seed(address: str) -> None:
    """A user with a little of everything the page shows."""
    await publish(address, "new_miner", display_name="satoshi-fan")
    await publish(address, "new_miner", 2, display_name="hashqueen")
    await publish(address, "share_submitted", shares=1234, difficulty=5e9, worker="rig-1")
    await publish(address, "worker_status", worker="rig-1", status="online")
    await publish(address, "hashrate_update", worker="rig-1", hashrate=2.5e14)
    await publish(address, "badge_earned", badge_id="first-share")
    await publish(address, "streak_update", streak=9)
    await publish(address, "event_reminder", None, id="lottery", event_type="lottery",
                  title="Weekly lottery draw", ends_at="2099-01-01T00:00:00+00:00")
    await publish(address, "leaderboard_update", category="hashrate", score=250.0)
    await publish(address, "leaderboard_update", 2, category="hashrate", score=300.0)


async def sign_in(page, address: str) -> None:
    """Follow the ?token= link: the token moves into the HttpOnly cookie, out of the URL."""
    token = mint_token(SECRET, USER)
    await page.goto(f"http://{address}/?token={token}")
    assert "token=" not in page.url
    cookie = next(c for c in await page.context.cookies() if c["name"] == "access_token")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"


async def indicator(page) -> str:
    return await page.locator("#conn-label").inner_text()


async def wait_indicator(page, text: str, timeout: float = 15_000) -> None:
    await page.locator("#conn-label").filter(has_text=re.compile(f"^{text}")).wait_for(
        timeout=timeout)


async def metrics(page) -> dict:
    return await page.evaluate("window.pulse.client.metrics()")


def feed_item(page, text: str):
    return page.locator("#feed .feed-text", has_text=text)


async def cut_off(page, tried: list[str] | None = None) -> dict:
    """Routes that pass /ws and /sse through while ``flag["on"]`` is false, else refuse them
    (a proxy that kills the upgrade and the stream); ``tried`` records each attempt."""
    flag = {"on": False}
    tried = [] if tried is None else tried

    def websocket(ws) -> None:
        tried.append("websocket")
        if flag["on"]:
            asyncio.get_running_loop().create_task(ws.close(code=1011, reason="cut off"))
        else:
            ws.connect_to_server()

    async def stream(route) -> None:
        tried.append("sse")
        await (route.abort() if flag["on"] else route.continue_())

    await page.route_web_socket(re.compile(r"/ws$"), websocket)
    await page.route(re.compile(r"/sse\?"), stream)
    return flag


async def publish_offline(settings, kind: str, **data) -> None:
    """Ingest through a service container that serves nobody (as another instance would)."""
    from quart_app.dashboard.ingest import ingest_event
    from quart_app.services import Services

    svc = Services(settings)
    await svc.start()
    try:
        await ingest_event(svc, {"type": kind, "user_id": USER, "data": data})
    finally:
        await svc.stop()


# -- tests -----------------------------------------------------------------------------------
async def test_page_renders_rest_data_and_live_events(page, tmp_path):
    async with serve_app(settings_for(tmp_path / "pulse.db")) as (address, _app):
        await seed(address)
        await sign_in(page, address)
        await wait_indicator(page, "WebSocket")
        assert await page.locator("#signin").is_hidden()
        # The REST snapshot.
        await page.locator("[data-field=shares_today]", has_text="1,234").wait_for()
        assert await page.locator("[data-field=hashrate]").inner_text() == "250 TH/s"
        assert await page.locator("[data-field=workers]").inner_text() == "1 / 1"
        assert await page.locator("[data-field=streak]").inner_text() == "9"
        await feed_item(page, "satoshi-fan earned the First Share badge").wait_for()
        await page.locator("#events .event-title", has_text="Weekly lottery draw").wait_for()
        assert re.fullmatch(r"\d+d \d+h", await page.locator("#events .countdown").inner_text())
        await page.locator("#badges .badge-name", has_text="First Share").wait_for()
        names = await page.locator("#leaderboard .lb-name").all_inner_texts()
        assert names == ["hashqueen", "satoshi-fan"]
        # Live: a published event is in the feed within a second, in place.
        first_row = await page.locator("#feed li").first.element_handle()
        started = time.monotonic()
        await publish(address, "block_found", height=900_001, reward=3.125)
        await feed_item(page, "Block #900,001 found by satoshi-fan").wait_for(timeout=1000)
        assert time.monotonic() - started < 1.0
        assert await first_row.evaluate("el => el.isConnected"), "the list was not re-rendered"
        # Rank change: satoshi-fan overtakes hashqueen, live.
        await publish(address, "leaderboard_update", category="hashrate", score=400.0)
        await page.locator("#leaderboard .lb-row.me .lb-rank", has_text="#1").wait_for(timeout=2000)
        await page.locator("#leaderboard .lb-row.me .lb-change", has_text="▲1").wait_for()
        # Toasts: a badge (gamification) and an achievement (user:1:achievements).
        await publish(address, "badge_earned", badge_id="night-owl")
        toast = page.locator(".toast-title", has_text="Badge earned: Night Owl")
        await toast.wait_for(timeout=2000)
        await publish(address, "streak_update", streak=30)
        await page.locator(".toast-title", has_text="Monthly Miner").wait_for(timeout=2000)
        assert await page.locator("[data-field=streak]").inner_text() == "30"
        await page.locator("#conn-latency", has_text=re.compile(r"^\d+ ms$")).wait_for()
        m = await metrics(page)
        assert m["transport"] == "websocket" and m["reconnects"] == 0
        assert m["received"] > 0 and m["sent"] >= 5


async def test_no_cookie_shows_sign_in(page, tmp_path):
    async with serve_app(settings_for(tmp_path / "pulse.db")) as (address, _app):
        await page.goto(f"http://{address}/")
        await page.locator("#signin-title", has_text="Sign in").wait_for()
        assert await page.locator("#app").is_hidden()
        assert await indicator(page) == "Signed out"
        await page.goto(f"http://{address}/?token=not-a-token")
        await page.locator("#signin-reason", has_text="invalid or has expired").wait_for()
        assert "token=" not in page.url
        # The development link signs in; other query options survive the redirect.
        await page.goto(f"http://{address}/dev/login?user={USER}&transport=sse")
        assert page.url == f"http://{address}/?transport=sse"
        await wait_indicator(page, "SSE")
        assert await page.locator("#app").is_visible()


async def test_websockets_blocked_falls_back_to_sse(page, tmp_path):
    refused = []

    def refuse(ws) -> None:  # a proxy that kills the upgrade
        refused.append(ws.url)
        asyncio.get_running_loop().create_task(ws.close(code=1011, reason="blocked"))

    await page.route_web_socket(re.compile(r"/ws$"), refuse)
    async with serve_app(settings_for(tmp_path / "pulse.db")) as (address, _app):
        await seed(address)
        streams = []
        page.on("request", lambda r: streams.append(r.url) if "/sse?" in r.url else None)
        await sign_in(page, address)
        await wait_indicator(page, "SSE")
        assert len(refused) >= 2
        assert streams and "token=" not in streams[-1], "the cookie authenticates the stream"
        await feed_item(page, "satoshi-fan earned the First Share badge").wait_for()
        await publish(address, "block_found", height=900_002)
        await feed_item(page, "Block #900,002").wait_for(timeout=2000)
        await page.locator("#conn-latency", has_text=re.compile(r"^\d+ ms$")).wait_for()
        assert (await metrics(page))["transport"] == "sse"


async def test_both_push_transports_blocked_falls_back_to_polling_and_back(page, tmp_path):
    tried: list[str] = []
    blocked = await cut_off(page, tried)
    blocked["on"] = True
    async with serve_app(settings_for(tmp_path / "pulse.db")) as (address, _app):
        await seed(address)
        await sign_in(page, address)
        await wait_indicator(page, "Polling", timeout=20_000)
        assert tried[:4] == ["websocket", "websocket", "sse", "sse"], tried
        await feed_item(page, "satoshi-fan earned the First Share badge").wait_for()
        # A poll fetches what each channel missed from /history (the next one is due in 30 s).
        await publish(address, "block_found", height=900_005)
        await page.evaluate("window.pulse.client.poller.poll()")
        await feed_item(page, "Block #900,005").wait_for(timeout=3000)
        assert (await metrics(page))["transport"] == "polling"
        # Push is back (the browser says it is online again): polling stops.
        blocked["on"] = False
        await page.evaluate("window.dispatchEvent(new Event('online'))")
        await page.locator("#conn-label").filter(has_text=re.compile("^(WebSocket|SSE)$")).wait_for(
            timeout=10_000)
        await publish(address, "block_found", height=900_006)
        await feed_item(page, "Block #900,006").wait_for(timeout=2000)


async def test_expired_session_asks_to_sign_in_without_hammering(page, tmp_path):
    async with serve_app(settings_for(tmp_path / "pulse.db")) as (address, _app):
        sockets: list[str] = []
        page.on("websocket", lambda ws: sockets.append(ws.url))
        token = mint_token(SECRET, USER, ttl_seconds=3)
        await page.goto(f"http://{address}/?token={token}")
        await wait_indicator(page, "WebSocket")
        # The server closes the socket with 4001 at `exp`; the cookie has expired too.
        await page.locator("#banner", has_text="session has expired").wait_for(timeout=10_000)
        assert await indicator(page) == "Signed out"
        await page.wait_for_timeout(3000)
        assert len(sockets) == 1, f"reconnected with a dead token: {sockets}"


@pytest.mark.parametrize("backend", ["embedded", "redis"])
async def test_server_restart_reconnects_and_shows_the_gap(page, tmp_path, backend):
    """Stop the server, publish while the page is cut off, start it again on the same port and
    database: the page reconnects and shows what it missed, replayed from Redis history, or
    reloaded over REST when the embedded broker's history went with the old process."""
    redis_url, prefix = None, "pulse:"
    if backend == "redis":
        redis_url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
        require_service("Redis", redis_url, 6379)
        prefix = f"pulse-test:{os.urandom(6).hex()}:"
    settings = settings_for(tmp_path / "pulse.db", redis_url, prefix)
    port = free_port()
    cut = await cut_off(page)
    async with serve_app(settings, port) as (address, _app):
        await seed(address)
        await sign_in(page, address)
        await wait_indicator(page, "WebSocket")
        await feed_item(page, "satoshi-fan earned the First Share badge").wait_for()
    # Server gone (1012): the page is offline and retrying.
    await wait_indicator(page, "Offline", timeout=5000)
    cut["on"] = True  # from here until the gap's event is in, the page cannot get through
    if backend == "redis":
        # Another producer publishes while no server is up: into Redis history and the database.
        await publish_offline(settings, "block_found", height=900_003)
    async with serve_app(settings, port) as (address, _app):
        if backend == "embedded":
            await publish(address, "block_found", height=900_003)
        cut["on"] = False
        await page.evaluate("window.dispatchEvent(new Event('online'))")
        await feed_item(page, "Block #900,003").wait_for(timeout=20_000)
        await wait_indicator(page, "WebSocket", timeout=20_000)
        m = await metrics(page)
        assert m["reconnects"] >= 1
        if backend == "redis":
            assert m["resyncs"] == 0, "replayed from history, no snapshot reload needed"
        else:
            assert m["resyncs"] >= 1, "a new process has no history: the snapshot was reloaded"
        await publish(address, "block_found", height=900_004)
        await feed_item(page, "Block #900,004").wait_for(timeout=2000)
        texts = await page.locator("#feed .feed-text").all_inner_texts()
        assert len(texts) == len(set(texts)), "nothing shown twice"


async def test_demo_screenshot_desktop_and_phone(browser, tmp_path):
    """``serve --demo`` prints a signed-in URL; the page is full and fits a phone."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path}/demo.db", "APP_ENV": "development"}
    for name in ("REDIS_URL", "JWT_SECRET", "PULSE_API_KEY"):
        env.pop(name, None)
    process = subprocess.Popen(
        [sys.executable, "-m", "quart_app", "serve", "--demo", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        url = await asyncio.wait_for(asyncio.to_thread(_demo_url, process), 30)
        assert url == f"http://127.0.0.1:{port}/dev/login?user=1"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for name, viewport in (("desktop", {"width": 1280, "height": 900}),
                               ("phone", {"width": 390, "height": 844})):
            context = await browser.new_context(viewport=viewport, device_scale_factor=1)
            page = await context.new_page()
            try:
                await page.goto(url)
                await wait_indicator(page, "WebSocket")
                # Upcoming events and the network's difficulty come last in the demo's seed.
                await page.locator("#events li").nth(2).wait_for(timeout=20_000)
                await page.locator("#leaderboard li").nth(5).wait_for(timeout=15_000)
                await page.wait_for_function(
                    "!['0', '—'].includes(document.querySelector("
                    "'[data-field=network_diff]').textContent)", timeout=20_000)
                await page.wait_for_timeout(2500)  # a few live ticks, latency measured
                overflow = await page.evaluate(
                    "document.documentElement.scrollWidth - window.innerWidth")
                assert overflow <= 0, f"{name}: the page is wider than the screen by {overflow}px"
                shot = ARTIFACTS / f"dashboard-{name}.png"
                await page.screenshot(path=str(shot), full_page=name == "phone")
                if name == "desktop" and os.environ.get("PULSE_UPDATE_SCREENSHOT"):
                    shutil.copyfile(shot, ROOT / "docs" / "screenshot.png")
            finally:
                await context.close()
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()


def _demo_url(process: subprocess.Popen) -> str:
    for line in process.stdout:
        match = re.search(r"open (http://\S+)", line)
        if match:
            return match.group(1)
    raise AssertionError("serve --demo ended without printing the dashboard URL")
