"""The HTTP side of the edge under hostile or foreign clients: request heads (llhttp, or Hypercorn's h11), the head
timeout, the connection cap, Origin and CORS, and the upgrade sent to a plain route."""
import asyncio
import base64
from dataclasses import replace

import httpx
import pytest

from quart_app.config import load_settings
from quart_app.errors import ConfigError

from .conftest import SECRET, make_settings, serve_app
from .test_direct import KEY, RawWs, frame

EVIL = "https://evil.example"


def _upgrade(address: str, path: str = "/ws", extra: str = "") -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n"
            f"Sec-WebSocket-Version: 13\r\n{extra}\r\n").encode()


async def _exchange(address: str, data: bytes, timeout: float = 5.0) -> bytes:
    host, port = address.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(data)
    try:
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    finally:
        writer.close()


@pytest.fixture
async def edge(settings):
    settings = replace(settings, edge=replace(settings.edge,
                                              allowed_origins=("https://app.example",
                                                               "https://*.partner.example"),
                                              head_timeout_seconds=0.5))
    async with serve_app(settings) as (address, app):
        yield address, app.extensions["pulse"]


async def test_a_bare_lf_head_is_answered_at_once(edge):
    address, _svc = edge
    head = await _exchange(address, f"GET /healthz HTTP/1.1\nHost: {address}\n\n".encode(), 3)
    assert head.split(b"\n")[0].startswith(b"HTTP/1.1 200")


async def test_a_connection_that_sends_no_head_is_closed_after_the_head_timeout(edge):
    address, svc = edge
    host, port = address.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /healthz HTTP/1.1\r\n")      # and never the rest
    assert await asyncio.wait_for(reader.read(), 3) == b""
    assert svc.metrics.head_timeouts >= 1
    writer.close()


async def test_past_the_connection_cap_new_sockets_get_a_clean_503(settings):
    settings = replace(settings, edge=replace(settings.edge, max_connections=5))
    async with serve_app(settings) as (address, app):
        svc = app.extensions["pulse"]
        host, port = address.split(":")
        idle = [await asyncio.open_connection(host, int(port)) for _ in range(5)]
        await asyncio.sleep(0.1)
        head = await _exchange(address, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503") and b"retry-after: 2" in head.lower()
        assert svc.metrics.connections_refused == 1
        for _reader, writer in idle:
            writer.close()
        for _ in range(100):
            if svc.sockets_open == 0:
                break
            await asyncio.sleep(0.02)
        assert svc.sockets_open == 0
        head = await _exchange(address, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")


async def test_a_websocket_from_a_foreign_origin_is_refused_with_403(edge, token):
    """Cross-site WebSocket hijacking: the browser sends the victim's cookie with any page's
    handshake; the Origin header is what tells them apart."""
    address, svc = edge
    cookie = f"Cookie: access_token={token(1)}\r\n"
    head = await _exchange(address, _upgrade(address, extra=f"Origin: {EVIL}\r\n{cookie}"))
    assert head.startswith(b"HTTP/1.1 403")
    assert svc.metrics.origin_refusals == 1
    for origin in (f"http://{address}", "https://app.example", "https://eu.partner.example"):
        head = await _exchange(address, _upgrade(address, extra=f"Origin: {origin}\r\n{cookie}"))
        assert head.startswith(b"HTTP/1.1 101"), (origin, head)
    # No Origin (a server, a native app): unaffected.
    head = await _exchange(address, _upgrade(address, extra=cookie))
    assert head.startswith(b"HTTP/1.1 101")


async def test_a_foreign_origin_is_refused_on_the_quart_websocket_route_too(settings, token):
    settings = replace(settings, ws_deflate=True)      # /ws served by Quart
    async with serve_app(settings) as (address, _app):
        head = await _exchange(address, _upgrade(address, extra=f"Origin: {EVIL}\r\n"))
        assert head.startswith(b"HTTP/1.1 403"), head


async def test_sse_and_rest_with_the_cookie_from_a_foreign_origin_are_refused(edge, token):
    address, _svc = edge
    cookies = {"access_token": token(1)}
    async with httpx.AsyncClient(base_url=f"http://{address}", cookies=cookies) as client:
        for path in ("/sse?channels=mining", "/dashboard/stats", "/history?channel=mining"):
            response = await client.get(path, headers={"Origin": EVIL})
            assert response.status_code == 403, path
            assert "PULSE_ALLOWED_ORIGINS" in response.json()["detail"]
        # A token in the header from a foreign page is not ambient: allowed, but no CORS.
        client.cookies.clear()
        response = await client.get("/dashboard/stats", headers={
            "Origin": EVIL, "Authorization": f"Bearer {token(1)}"})
        assert response.status_code == 200
        assert "access-control-allow-origin" not in response.headers


async def test_allowed_origins_get_cors_with_credentials(edge, token):
    address, _svc = edge
    origin = "https://app.example"
    async with httpx.AsyncClient(base_url=f"http://{address}") as client:
        response = await client.get("/dashboard/stats", headers={
            "Origin": origin, "Cookie": f"access_token={token(1)}"})
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == origin
        assert response.headers["access-control-allow-credentials"] == "true"
        assert "Origin" in response.headers["vary"]
        preflight = await client.options("/api/events", headers={
            "Origin": origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"})
        assert preflight.status_code == 204
        assert "POST" in preflight.headers["access-control-allow-methods"]
        refused = await client.options("/api/events", headers={
            "Origin": EVIL, "Access-Control-Request-Method": "POST"})
        assert refused.status_code == 403
        assert "access-control-allow-origin" not in refused.headers
        async with client.stream("GET", f"/sse?channels=mining&token={token(1)}",
                                 headers={"Origin": origin}) as stream:
            assert stream.status_code == 200
            assert stream.headers["access-control-allow-origin"] == origin


@pytest.mark.parametrize("path", ["/", "/healthz", "/dashboard/stats", "/sse"])
async def test_an_upgrade_to_an_http_route_is_a_400_not_a_500(edge, path):
    """Before: the mismatch handler read `request` in a websocket context: 500 + traceback."""
    address, _svc = edge
    head = await _exchange(address, _upgrade(address, path))
    assert head.startswith(b"HTTP/1.1 400"), head


def test_production_refuses_a_weak_or_development_jwt_secret():
    from quart_app.config import DEV_JWT_SECRET

    for secret in (DEV_JWT_SECRET, "short-secret"):
        with pytest.raises(ConfigError, match="too weak"):
            load_settings({"APP_ENV": "production", "JWT_SECRET": secret,
                           "PULSE_API_KEY": "k"})
    assert load_settings({"APP_ENV": "production", "JWT_SECRET": SECRET, "PULSE_API_KEY": "k"})


@pytest.mark.parametrize("value", ["evil.example", "https://a.example/path", "ftp://x",
                                   "https://*.*.example"])
def test_a_malformed_allowed_origin_stops_the_start(value):
    with pytest.raises(ConfigError, match="PULSE_ALLOWED_ORIGINS"):
        load_settings({"PULSE_ALLOWED_ORIGINS": value})


async def test_hypercorn_still_serves_what_pulse_does_not_take(edge):
    """A POST with a body, HTTP/1.0 and a malformed head go to Hypercorn, replayed intact."""
    address, _svc = edge
    head = await _exchange(address, b"GET /healthz HTTP/1.0\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") or head.startswith(b"HTTP/1.0 200")
    head = await _exchange(address, b"GET /healthz HTTP/1.1\r\nBad Header\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    async with httpx.AsyncClient(base_url=f"http://{address}") as client:
        response = await client.post("/api/events", json={"event_type": "nope"})
        assert response.status_code in (401, 422)


@pytest.mark.parametrize("trust, proto, secure", [(True, "https", True), (False, "https", False),
                                                  (True, "http", False)])
async def test_the_cookie_is_secure_behind_a_trusted_tls_proxy(settings, trust, proto, secure):
    """Before: behind a TLS-terminating proxy the service saw http and never set Secure."""
    settings = replace(settings, edge=replace(settings.edge, trust_proxy=trust))
    async with serve_app(settings) as (address, _app):
        async with httpx.AsyncClient(base_url=f"http://{address}") as client:
            response = await client.get("/dev/login?user=3",
                                        headers={"X-Forwarded-Proto": proto})
            cookie = response.headers["set-cookie"]
            assert "access_token=" in cookie
            assert ("Secure" in cookie) is secure, cookie


async def test_an_upgrade_whose_client_already_left_is_not_served(edge, token):
    """A storm's client that gave up while queued: its request and its FIN wait together in the
    listen queue (the server, on this test's loop, cannot accept before the test yields); no
    101, no session, counted; a client that stays is served as before."""
    import socket

    address, svc = edge
    host, port = address.split(":")
    request = _upgrade(address, f"/ws?token={token(1)}")
    sock = socket.create_connection((host, int(port)))   # blocking: the loop does not run
    sock.sendall(request)
    sock.shutdown(socket.SHUT_WR)

    def read_all() -> bytes:
        sock.settimeout(3)
        chunks = []
        try:
            while chunk := sock.recv(4096):
                chunks.append(chunk)
        except ConnectionResetError:
            pass
        return b"".join(chunks)

    answer = await asyncio.to_thread(read_all)
    sock.close()
    assert b"101" not in answer
    assert svc.metrics.abandoned == 1 and svc.hub.connection_count == 0
    assert (await _exchange(address, request)).startswith(b"HTTP/1.1 101")


async def test_an_upgrade_with_bare_lf_line_ends_is_served_by_hypercorn(edge, token):
    """The edge's own reader takes CRLF heads only; one with bare LFs (RFC 9112 §2.2 lets a
    server read them) goes to Hypercorn, which upgrades it as before."""
    address, _svc = edge
    head = _upgrade(address, f"/ws?token={token(3)}").replace(b"\r\n", b"\n")
    answer = await _exchange(address, head, 3)
    assert answer.startswith(b"HTTP/1.1 101")
