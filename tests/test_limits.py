"""Limits and liveness of DESIGN §10 over a real socket: each a clear error or close code."""
import asyncio
import base64
import json
import os
import socket
import time

import pytest
import websockets

from quart_app.realtime.auth import mint_token

from .conftest import SECRET, make_settings, serve_app, ws_client


@pytest.fixture
def limited(tmp_path):
    return make_settings(
        f"sqlite:///{tmp_path}/l.db", PULSE_MAX_SUBSCRIPTIONS="3",
        PULSE_MAX_CONNECTIONS_PER_USER="2", PULSE_MAX_MESSAGES_PER_SECOND="5",
        PULSE_MAX_FRAME_BYTES="256")


async def test_subscription_limit(tmp_path, token):
    settings = make_settings(f"sqlite:///{tmp_path}/s.db", PULSE_MAX_SUBSCRIPTIONS="3")
    async with serve_app(settings) as (address, _):
        async with ws_client(address, token(1)) as ws:
            for channel in ("mining", "competition", "gamification"):
                assert (await ws.subscribe(channel))["type"] == "subscribed"
            assert await ws.subscribe("activity:feed") == {
                "type": "error", "message": "Subscription limit reached (max 3 channels)",
                "channel": "activity:feed"}
            await ws.send({"action": "unsubscribe", "channel": "mining"})
            await ws.recv()
            assert (await ws.subscribe("activity:feed"))["type"] == "subscribed"


async def test_connections_per_user(limited, token):
    async with serve_app(limited) as (address, app):
        async with ws_client(address, token(4)) as a, ws_client(address, token(4)) as b:
            async with websockets.connect(f"ws://{address}/ws?token={token(4)}") as third:
                with pytest.raises(websockets.ConnectionClosed) as info:
                    await asyncio.wait_for(third.recv(), 3)
                assert info.value.rcvd.code == 4029
                assert "Too many connections" in info.value.rcvd.reason
            async with ws_client(address, token(5)) as other:  # other users unaffected
                await other.send({"action": "ping"})
                assert (await other.recv())["type"] == "pong"
            for ws in (a, b):
                await ws.send({"action": "ping"})
                assert (await ws.recv())["type"] == "pong"


async def test_inbound_rate_limit_then_close(limited, token):
    async with serve_app(limited) as (address, app):
        async with ws_client(address, token(1)) as ws:
            for _ in range(5):
                await ws.send({"action": "ping"})
            for _ in range(5):
                assert (await ws.recv())["type"] == "pong"
            await ws.send({"action": "ping"})
            reply = await ws.recv()
            assert reply["type"] == "error" and reply["message"].startswith("Rate limit exceeded")
            await asyncio.sleep(0.5)  # the bucket refills at 5/s
            await ws.send({"action": "ping", "ts": 9})
            assert await ws.recv_until(lambda f: f["type"] == "pong") == {"type": "pong", "ts": 9}
            for _ in range(150):  # sustained abuse ends the session
                await ws.send({"action": "ping"})
            with pytest.raises(websockets.ConnectionClosed) as info:
                while True:
                    await ws.recv(3)
            assert info.value.rcvd.code == 4029
        assert app.extensions["pulse"].metrics.dropped >= 100


async def test_frame_size_limit_is_an_error_not_a_close(limited, token):
    async with serve_app(limited) as (address, _):
        async with ws_client(address, token(1)) as ws:
            await ws.send({"action": "ping", "pad": "x" * 300})
            assert await ws.recv() == {"type": "error",
                                       "message": "Frame too large (max 256 bytes)"}
            await ws.send({"action": "ping"})
            assert (await ws.recv())["type"] == "pong"


async def test_token_expiry_closes_4001_and_auth_extends(live_server):
    address, _ = live_server
    short = mint_token(SECRET, 8, ttl_seconds=2)
    async with ws_client(address, short) as ws:
        started = time.monotonic()
        with pytest.raises(websockets.ConnectionClosed) as info:
            while True:
                await ws.recv(5)
        assert info.value.rcvd.code == 4001 and info.value.rcvd.reason == "Token expired"
        assert 0.5 < time.monotonic() - started < 3.5
    async with ws_client(address, mint_token(SECRET, 8, ttl_seconds=2)) as ws:
        await ws.send({"action": "auth", "token": mint_token(SECRET, 8, ttl_seconds=60)})
        assert (await ws.recv())["type"] == "authenticated"
        await ws.send({"action": "auth", "token": mint_token(SECRET, 9, ttl_seconds=60)})
        assert "another user" in (await ws.recv())["message"]
        await asyncio.sleep(2.5)
        await ws.send({"action": "ping"})
        assert (await ws.recv())["type"] == "pong"


async def test_first_frame_auth_times_out(tmp_path):
    settings = make_settings(f"sqlite:///{tmp_path}/a.db", PULSE_AUTH_TIMEOUT_SECONDS="0.3")
    async with serve_app(settings) as (address, _):
        async with websockets.connect(f"ws://{address}/ws") as ws:
            with pytest.raises(websockets.ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), 3)
            assert info.value.rcvd.code == 4001


def _raw_ws(address: str, token: str) -> socket.socket:
    sock = socket.create_connection(tuple(address.split(":")[:1]) + (int(address.split(":")[1]),))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /ws?token={token} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    return sock


async def test_idle_connections_pinged_and_silent_ones_dropped(tmp_path, token):
    settings = make_settings(f"sqlite:///{tmp_path}/i.db", PULSE_PING_INTERVAL_SECONDS="0.3",
                             PULSE_IDLE_TIMEOUT_SECONDS="1.2")
    async with serve_app(settings) as (address, app):
        silent = _raw_ws(address, token(1))  # completes the handshake, never answers a ping
        silent.settimeout(5)
        # a well-behaved client answers protocol pings automatically and stays
        async with ws_client(address, token(2), ping_interval=None) as alive:
            data = b""
            deadline = time.monotonic() + 4
            while b"\x88" not in data.split(b"\r\n\r\n", 1)[-1] and time.monotonic() < deadline:
                data += await asyncio.get_running_loop().run_in_executor(None, silent.recv, 4096)
            body = data.split(b"\r\n\r\n", 1)[1]
            assert b"\x89\x00" in body                      # it was pinged
            close = body[body.index(b"\x88"):]
            assert int.from_bytes(close[2:4], "big") == 4009  # then closed: idle timeout
            await alive.send({"action": "ping"})
            assert (await alive.recv())["type"] == "pong"
        silent.close()
