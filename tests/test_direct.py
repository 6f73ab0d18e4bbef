"""The direct endpoints (quart_app/edge/routing.py, edge/ws_direct.py, edge/transport_sse.DirectStream) at the
byte level, on a real socket.

The protocols themselves are tested in test_transport_ws.py and test_transport_sse.py (which run
on these endpoints too); here: RFC 6455 framing by hand (fragments, control frames, violations),
SSE's chunked response, the hand-off to Hypercorn for everything else, and the point of the
endpoints — no task per connection.
"""
import asyncio
import base64
import gc
import json
import os
import struct
import sys

import pytest

from quart_app.edge.routing import parse_head
from quart_app.edge.transport_sse import DirectStream
from quart_app.edge.transport_ws import QuartEndpoint
from quart_app.edge.ws_direct import DirectWebSocket, upgrade_key

from .conftest import API_KEY, serve_app, with_env, ws_client

KEY = base64.b64encode(b"0123456789abcdef").decode()


def frame(payload: bytes | str, opcode: int = 0x1, fin: bool = True, mask: bool = True,
          rsv: int = 0) -> bytes:
    if isinstance(payload, str):
        payload = payload.encode()
    head = bytes(((0x80 if fin else 0) | rsv | opcode,))
    n = len(payload)
    bit = 0x80 if mask else 0
    if n < 126:
        head += bytes((bit | n,))
    elif n < 65536:
        head += bytes((bit | 126,)) + struct.pack(">H", n)
    else:
        head += bytes((bit | 127,)) + struct.pack(">Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class RawWs:
    """A hand-rolled client: exact bytes out, frames in."""

    def __init__(self, reader, writer):
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, address, query="", extra=b""):
        host, port = address.split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            f"GET /ws{query} HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n"
            f"Sec-WebSocket-Version: 13\r\n\r\n".encode() + extra)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101"), head
        assert b"sec-websocket-accept: " + base64.b64encode(
            __import__("hashlib").sha1(KEY.encode() + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11")
            .digest()).lower() in head.lower()
        return cls(reader, writer)

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def recv(self, timeout=5.0):
        """(opcode, payload) of the next server frame; server frames are never masked."""
        b0, b1 = await asyncio.wait_for(self.reader.readexactly(2), timeout)
        assert not b1 & 0x80
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", await self.reader.readexactly(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", await self.reader.readexactly(8))[0]
        return b0 & 0x0F, await self.reader.readexactly(n)

    async def recv_json(self, timeout=5.0):
        opcode, payload = await self.recv(timeout)
        assert opcode == 0x1, (opcode, payload)
        return json.loads(payload)

    async def recv_close(self, timeout=5.0, answer=True):
        """The close code and reason, skipping data frames; answered as a client would."""
        while True:
            opcode, payload = await self.recv(timeout)
            if opcode == 0x8:
                code = struct.unpack(">H", payload[:2])[0] if payload else None
                if answer:
                    self.send(frame(payload[:2], opcode=0x8))
                return code, payload[2:].decode()

    async def closed_by_server(self, timeout=5.0) -> bool:
        try:
            return await asyncio.wait_for(self.reader.read(), timeout) == b""
        finally:
            self.writer.close()

    def close(self):
        self.writer.close()


@pytest.fixture
async def server(settings):
    async with serve_app(settings) as (address, app):
        yield address, app.extensions["pulse"]


async def test_websockets_served_by_the_direct_endpoint_without_a_task_each(server, token):
    address, svc = server
    before = len(asyncio.all_tasks())
    clients = [await RawWs.connect(address, f"?token={token(user)}") for user in range(1, 41)]
    for ws in clients:
        ws.send(frame('{"action":"subscribe","channel":"mining"}'))
    for ws in clients:
        assert (await ws.recv_json())["type"] == "subscribed"
    await asyncio.sleep(0.1)
    assert len(svc.ws_sessions) == 40
    assert {type(s.endpoint) for s in svc.ws_sessions.values()} == {DirectWebSocket}
    # 40 live connections, and (almost) no more tasks than before: none per connection.
    assert len(asyncio.all_tasks()) - before < 5
    for ws in clients:
        ws.close()
    for _ in range(100):
        if not svc.ws_sessions:
            break
        await asyncio.sleep(0.02)
    assert not svc.ws_sessions and svc.hub.connection_count == 0


async def test_fragments_control_frames_between_them_and_byte_by_byte(server, token):
    address, _ = server
    ws = await RawWs.connect(address, f"?token={token(1)}")
    message = '{"action":"subscribe","channel":"mining"}'
    ws.send(frame(message[:10], fin=False))
    ws.send(frame(b"hi", opcode=0x9))                       # ping between fragments
    ws.send(frame(message[10:25], opcode=0x0, fin=False))
    ws.send(frame(message[25:], opcode=0x0))
    assert await ws.recv() == (0xA, b"hi")                  # pong, same payload
    assert (await ws.recv_json())["type"] == "subscribed"
    for byte in frame('{"action":"ping","ts":1}' + " " * 200):  # a 126-length header, 1 B a time
        ws.send(bytes((byte,)))
        await ws.writer.drain()
    assert await ws.recv_json() == {"type": "pong", "ts": 1}
    ws.send(frame(b"", opcode=0xA))                          # unsolicited pong: ignored
    ws.send(frame('{"action":"ping"}') * 3)                  # three frames in one write
    for _ in range(3):
        assert await ws.recv_json() == {"type": "pong"}
    ws.send(frame(struct.pack(">H", 1000) + b"bye", opcode=0x8))
    assert await ws.recv_close() == (1000, "bye")  # echoed as received
    assert await ws.closed_by_server()


async def test_a_client_gone_mid_subscribe_ends_its_session_after_the_action(server, token):
    """The in-flight subscribe (Redis, history, the snapshot query) is left to finish, not cut
    in half; the session ends when it has."""
    address, svc = server
    for user in range(1, 11):
        ws = await RawWs.connect(address, f"?token={token(user)}")
        ws.send(frame('{"action":"subscribe","channel":"dashboard"}'))
        await ws.writer.drain()
        ws.close()
    for _ in range(200):
        if not svc.ws_sessions and svc.hub.connection_count == 0:
            break
        await asyncio.sleep(0.02)
    assert not svc.ws_sessions and svc.hub.connection_count == 0
    assert not svc.hub.subscribers("dashboard")


async def test_frames_sent_with_the_upgrade_request_are_not_lost(server, token):
    address, _ = server
    ws = await RawWs.connect(address, f"?token={token(1)}",
                             extra=frame('{"action":"ping","ts":7}'))
    assert await ws.recv_json() == {"type": "pong", "ts": 7}
    ws.close()


@pytest.mark.parametrize("bad, code", [
    (frame('{"action":"ping"}', mask=False), 1002),
    (frame('{"action":"ping"}', rsv=0x40), 1002),
    (frame(b"\xff\xfe", opcode=0x1), 1007),
    (frame(b"x", opcode=0x3), 1002),
    (frame(b"x", opcode=0x0), 1002),
    (frame(b"x" * 126, opcode=0x9), 1002),
    (frame(b"x", opcode=0x9, fin=False), 1002),
    (frame(b"x" * (64 * 1024 + 1)), 1009),
    (frame(b"{", fin=False) + frame(b"x"), 1002),
])
async def test_protocol_violations_close_with_the_rfc_code(server, token, bad, code):
    address, svc = server
    ws = await RawWs.connect(address, f"?token={token(1)}")
    ws.send(frame('{"action":"ping"}'))
    assert await ws.recv_json() == {"type": "pong"}
    ws.send(bad)
    got, reason = await ws.recv_close()
    assert got == code and reason
    assert await ws.closed_by_server()
    for _ in range(100):
        if not svc.ws_sessions:
            break
        await asyncio.sleep(0.02)
    assert not svc.ws_sessions


async def test_oversized_length_is_refused_from_the_header_alone(server, token):
    address, _ = server
    ws = await RawWs.connect(address, f"?token={token(1)}")
    ws.send(bytes((0x81, 0x80 | 127)) + struct.pack(">Q", 2**40) + b"\x00\x00\x00\x00")
    assert (await ws.recv_close())[0] == 1009
    assert await ws.closed_by_server()


async def test_auth_frame_then_session_and_auth_timeout(settings, token):
    settings = with_env(settings, limits=with_env(settings.limits, auth_timeout_seconds=0.3))
    async with serve_app(settings) as (address, app):
        ws = await RawWs.connect(address)
        ws.send(frame(json.dumps({"action": "auth", "token": token(3)})))
        ws.send(frame('{"action":"subscribe","channel":"user:3:progress"}'))
        assert await ws.recv_json() == {
            "type": "subscribed", "channel": "user:3:progress", "offset": 0, "recovered": False}
        silent = await RawWs.connect(address)
        assert await silent.recv_close() == (
            4001, "Authentication required: no token and no auth frame in time")
        wrong = await RawWs.connect(address)
        wrong.send(frame('{"action":"ping"}'))
        code, reason = await wrong.recv_close()
        assert code == 4001 and "auth" in reason
        expired = await RawWs.connect(address, f"?token={token(1, ttl_seconds=-5)}")
        assert (await expired.recv_close())[0] == 4001
        # The auth frame obeys the rules of every frame: JSON text, at most 4 KiB.
        binary = await RawWs.connect(address)
        binary.send(frame(json.dumps({"action": "auth", "token": token(3)}).encode(), opcode=0x2))
        code, reason = await binary.recv_close()
        assert code == 4001 and "auth" in reason
        padded = await RawWs.connect(address)
        padded.send(frame(json.dumps({"action": "auth", "token": token(3), "pad": "a" * 5000})))
        assert await padded.recv_close() == (
            4001, "Authentication frame too large (max 4096 bytes)")
        assert app.extensions["pulse"].metrics.auth_failures == 5
        for client in (silent, wrong, expired, binary, padded):
            assert await client.closed_by_server()
        ws.close()


async def test_server_close_waits_for_the_client_then_ends(server, token):
    """close_all (SIGTERM) sends 1012; the client answers; the server closes TCP."""
    from quart_app.realtime.session import close_all

    address, svc = server
    ws = await RawWs.connect(address, f"?token={token(1)}")
    ws.send(frame('{"action":"ping"}'))
    await ws.recv_json()
    closing = asyncio.ensure_future(close_all(svc, 1012, "Server restarting"))
    assert await ws.recv_close(answer=False) == (1012, "Server restarting")
    ws.send(frame('{"action":"ping"}'))                   # ignored: the server is closing
    ws.send(frame(struct.pack(">H", 1012), opcode=0x8))
    assert await ws.closed_by_server(timeout=2)
    await asyncio.wait_for(closing, 5)
    assert not svc.ws_sessions


async def test_everything_else_still_reaches_hypercorn_and_quart(server, token):
    address, _ = server
    host, port = address.split(":")

    async def exchange(request: bytes) -> bytes:
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(request)
        data = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        writer.close()
        return data

    health = await exchange(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert health.startswith(b"HTTP/1.1 200")
    # Two pipelined requests in one packet: both answered (the first head is replayed).
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n"
                 b"Connection: close\r\n\r\n")
    body = await asyncio.wait_for(reader.read(), 5)
    assert body.count(b"HTTP/1.1 200") == 2
    writer.close()
    # A request with a body, sent in pieces.
    reader, writer = await asyncio.open_connection(host, int(port))
    payload = json.dumps({"type": "share_submitted", "user_id": 1, "data": {}}).encode()
    writer.write(b"POST /api/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: " + str(len(payload)).encode() + b"\r\n\r\n")
    await asyncio.sleep(0.05)
    writer.write(payload)
    status = await asyncio.wait_for(reader.readuntil(b"\r\n"), 5)
    assert status.split()[1] in (b"401", b"403")  # reached the API (which wants its key)
    writer.close()
    # A large body in the same packet as its head: replayed intact (the refusal names the
    # unknown field that closes the 50 KB document, so all of it was parsed).
    reader, writer = await asyncio.open_connection(host, int(port))
    payload = json.dumps({"type": "share_submitted", "user_id": 1, "data": {},
                          "padding": "x" * 50_000, "zz_unknown_field": 1}).encode()
    writer.write(b"POST /api/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"X-API-Key: " + API_KEY.encode() + b"\r\nConnection: close\r\n"
                 b"Content-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload)
    answer = await asyncio.wait_for(reader.read(), 5)
    assert answer.split()[1] in (b"400", b"422") and b"zz_unknown_field" in answer, answer[:300]
    writer.close()
    # /ws without a proper upgrade: Quart's route answers it, not the direct endpoint.
    plain = await exchange(b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n")
    assert not plain.startswith(b"HTTP/1.1 101")
    old = await exchange(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\nSec-WebSocket-Key: " + KEY.encode()
                         + b"\r\nSec-WebSocket-Version: 8\r\n\r\n")
    assert not old.startswith(b"HTTP/1.1 101")


async def test_deflate_setting_keeps_websockets_on_the_quart_route(settings, token):
    async with serve_app(with_env(settings, ws_deflate=True)) as (address, app):
        async with ws_client(address, token(1)) as ws:
            assert ws.ws.response.headers.get("Sec-WebSocket-Extensions", "").startswith(
                "permessage-deflate")
            assert (await ws.subscribe("mining"))["type"] == "subscribed"
            [session] = app.extensions["pulse"].ws_sessions.values()
            assert isinstance(session.endpoint, QuartEndpoint)


def test_parse_head_and_upgrade_key_take_only_well_formed_requests():
    good = (b"GET /ws?token=a%2Bb&x=1 HTTP/1.1\r\nHost: h\r\nUpgrade: WebSocket\r\n"
            b"Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: " + KEY.encode()
            + b"\r\nSec-WebSocket-Version: 13\r\nCookie: a=1\r\nCookie: access_token=tok\r\n"
            b"Authorization: Bearer zz\r\n\r\n")
    request = parse_head(good)
    assert request is not None and request.args == {"token": "a+b", "x": "1"}
    assert request.path == "/ws" and upgrade_key(request) == KEY
    assert request.cookies["access_token"] == "tok" and request.token() == "a+b"
    assert parse_head(good.replace(b"?token=a%2Bb&x=1", b"")).token() == "tok"
    no_cookie = good.replace(b"?token=a%2Bb&x=1", b"").replace(b"access_token=tok", b"b=2")
    assert parse_head(no_cookie).token() == "zz"
    for not_an_upgrade in (good.replace(b"Version: 13", b"Version: 8"),
                           good.replace(KEY.encode(), b"short"),
                           good.replace(b"Upgrade: WebSocket", b"Upgrade: h2c"),
                           good.replace(b"keep-alive, Upgrade", b"keep-alive")):
        assert upgrade_key(parse_head(not_an_upgrade)) is None, not_an_upgrade
    # A repeated parameter counts once, first value first: as Quart reads it on the other path.
    repeated = parse_head(good.replace(b"?token=a%2Bb&x=1", b"?token=first&x=1&token=second"))
    assert repeated.args == {"token": "first", "x": "1"} and repeated.token() == "first"
    for unparsed in (good.replace(b"HTTP/1.1\r\n", b"HTTP/1.0\r\n", 1),
                     good.replace(b"Host: h\r\n", b""),
                     good.replace(b"Host: h", b"Content-Length: 3"),
                     good.replace(b"Host: h", b"Host h"),
                     b"\x16\x03\x01garbage\r\n\r\n"):
        assert parse_head(unparsed) is None, unparsed


def test_close_codes_are_mirrored_in_the_browser_client():
    import re
    from pathlib import Path

    from quart_app.realtime.protocol import CloseCode

    source = (Path(__file__).parent.parent / "static/client/codes.js").read_text()
    mirrored = {name: int(code) for name, code in re.findall(r"^\s+([A-Z_]+): (\d+),", source,
                                                              re.M)}
    assert mirrored == {code.name: code.value for code in CloseCode}


# -- SSE -----------------------------------------------------------------------------------
async def _sse(address, query, extra=b""):
    host, port = address.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET /sse{query} HTTP/1.1\r\nHost: {address}\r\n".encode() + extra + b"\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    return reader, writer, head


async def _chunk(reader, timeout=5.0) -> bytes:
    size = int((await asyncio.wait_for(reader.readuntil(b"\r\n"), timeout)).strip(), 16)
    body = await reader.readexactly(size + 2)
    return body[:-2]


async def test_sse_streams_are_served_directly_in_chunks(server, token):
    from quart_app.realtime.session import close_all

    address, svc = server
    before = len(asyncio.all_tasks())
    streams = [await _sse(address, f"?channels=mining&token={token(user)}")
               for user in range(1, 31)]
    for reader, _, head in streams:
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"Content-Type: text/event-stream; charset=utf-8" in head
        assert b"Transfer-Encoding: chunked" in head
        assert (await _chunk(reader)).startswith(b"retry: ")
        ack = await _chunk(reader)
        assert b'"type":"subscribed"' in ack and b'"channel":"mining"' in ack
    assert len(asyncio.all_tasks()) - before < 5          # no task per stream
    assert all(isinstance(end.__self__.on_end.__self__, DirectStream) for end in svc.sse_closers)
    await svc.publish("mining", {"type": "block_found", "height": 7})
    for reader, _, _ in streams:
        record = await _chunk(reader)
        assert record.startswith(b"id: mining:1/0\ndata: ") and b'"height":7' in record
    # A stream whose client leaves is forgotten.
    reader, writer, _ = streams.pop()
    writer.close()
    for _ in range(100):
        if svc.hub.connection_count == 29:
            break
        await asyncio.sleep(0.02)
    assert svc.hub.connection_count == 29
    # Shutdown ends every response properly (the last chunk), then the connection.
    await asyncio.wait_for(close_all(svc), 5)
    for reader, writer, _ in streams:
        assert await _chunk(reader) == b""
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
    assert not svc.sse_closers and svc.hub.connection_count == 0


async def test_sse_requests_that_fail_a_check_get_quarts_answer(server, token):
    address, svc = server
    for query, status in (("?channels=mining", b"401"),
                          (f"?channels=nonexistent&token={token(1)}", b"400"),
                          (f"?channels=user:2:progress&token={token(1)}", b"403"),
                          (f"?channels=mining&last_event_id=bad&token={token(1)}", b"400")):
        reader, writer, head = await _sse(address, query)
        assert head.split()[1] == status, (query, head)
        assert b"application/json" in head
        writer.close()
    assert svc.hub.connection_count == 0


async def test_sse_resumes_from_last_event_id_on_the_direct_path(server, token):
    address, svc = server
    for height in (1, 2, 3):
        await svc.publish("mining", {"type": "block_found", "height": height})
    reader, writer, head = await _sse(address, f"?channels=mining&token={token(1)}",
                                      b"Last-Event-ID: mining:1\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    await _chunk(reader)                                   # retry + connected
    body = b""
    while body.count(b"data: ") < 3:                       # two replayed + the ack
        body += await _chunk(reader)
    assert b"id: mining:2\n" in body and b"id: mining:3\n" in body
    assert b'"recovered":true' in body
    writer.close()


def test_close_frame_reason_is_cut_on_a_character_boundary():
    from quart_app.edge.ws_protocol import close_frame

    data = close_frame(4001, "é" * 100)            # 200 bytes of reason
    assert data[0] == 0x88 and data[1] == len(data) - 2 <= 125
    assert int.from_bytes(data[2:4], "big") == 4001
    assert data[4:].decode() == "é" * 61           # 122 bytes: the 123rd would split a character


@pytest.mark.parametrize("sent", [b"", b"GET /ws HTTP/1.1\r\nHost: x\r\n"])
async def test_a_connection_still_sending_its_head_is_closed_when_the_server_stops(settings, sent):
    """Hypercorn cancels connection tasks after its graceful timeout; one cancelled while Pulse
    was still reading the request head must close its socket, not leave it to the collector."""
    unraisable = []
    hook, sys.unraisablehook = sys.unraisablehook, unraisable.append
    try:
        async with serve_app(settings) as (address, _app):
            host, port = address.split(":")
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(sent)
            await asyncio.sleep(0.1)
        # The server is down: our end sees the close at once, and nothing was left unclosed.
        assert await asyncio.wait_for(reader.read(), 2) == b""
        writer.close()
        gc.collect()
    finally:
        sys.unraisablehook = hook
    assert not unraisable, [u.exc_value for u in unraisable]


async def test_frames_queued_before_a_close_go_out_before_it(server, token):
    """Pongs and errors the server produced for frames that arrived in the same read as a
    fatal one leave first, then the close frame: the order the server produced them."""
    address, _svc = server
    ws = await RawWs.connect(address, f"?token={token(1)}")
    ws.send(frame('{"action":"ping","ts":1}') + frame('{"action":"ping","ts":2}')
            + frame(b"\xff\xfe"))
    assert (await ws.recv_json())["ts"] == 1
    assert (await ws.recv_json())["ts"] == 2
    assert await ws.recv_close() == (1007, "Invalid UTF-8 in a text frame")
    ws.close()

    # 130 pings in one read: 20 pongs (the per-second budget), the reported drops, then 4029.
    ws = await RawWs.connect(address, f"?token={token(2)}")
    ws.send(b"".join(frame('{"action":"ping","ts":%d}' % i) for i in range(130)))
    kinds = []
    while True:
        opcode, payload = await ws.recv()
        if opcode == 0x8:
            code = struct.unpack(">H", payload[:2])[0]
            break
        kinds.append(json.loads(payload)["type"])
    assert code == 4029
    assert kinds[:20] == ["pong"] * 20 and set(kinds[20:]) == {"error"} and len(kinds) > 20
    ws.close()


async def test_malformed_upgrades_and_plain_gets_get_json_errors(server):
    """A /ws upgrade with another version is 426 (RFC 6455 §4.2.2) and a broken one 400, both
    JSON; a GET without an upgrade is Quart's JSON 400."""
    address, _svc = server
    host, port = address.split(":")

    async def answer(request: bytes) -> tuple[bytes, dict]:
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(request)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        body = await asyncio.wait_for(reader.read(), 5)   # then the server closes
        writer.close()
        return head, json.loads(body)

    base = (f"GET /ws HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n"
            f"Sec-WebSocket-Version: 13\r\n\r\n")
    head, body = await answer(base.replace("Version: 13", "Version: 8").encode())
    assert head.startswith(b"HTTP/1.1 426 ") and b"sec-websocket-version: 13" in head.lower()
    assert "version 13" in body["detail"]
    for broken in (base.replace(f"Sec-WebSocket-Key: {KEY}\r\n", ""),
                   base.replace(KEY, "short"), base.replace("Connection: Upgrade", "Connection: x")):
        head, body = await answer(broken.encode())
        assert head.startswith(b"HTTP/1.1 400 ") and b"application/json" in head
        assert "Invalid WebSocket handshake" in body["detail"]
    head, body = await answer(f"GET /ws HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
                              .encode())
    assert head.startswith(b"HTTP/1.1 400 ") and "WebSocket upgrade" in body["detail"]


async def test_nothing_follows_the_close_frame_not_even_pings(settings, token):
    """A session closed by the server (here SIGTERM's 1012) whose client does not answer yet
    gets no liveness pings after the close frame (RFC 6455 §5.5.1)."""
    from quart_app.realtime.session import close_all

    settings = with_env(settings, liveness=with_env(settings.liveness,
                                                    ping_interval_seconds=0.2))
    async with serve_app(settings) as (address, app):
        ws = await RawWs.connect(address, f"?token={token(1)}")
        ws.send(frame('{"action":"ping"}'))
        await ws.recv_json()
        closing = asyncio.ensure_future(close_all(app.extensions["pulse"], 1012, "Restart"))
        assert await ws.recv_close(answer=False) == (1012, "Restart")
        with pytest.raises(asyncio.TimeoutError):   # 1 s = 5 ping intervals: silence
            await ws.recv(timeout=1.0)
        ws.send(frame(struct.pack(">H", 1012), opcode=0x8))
        assert await ws.closed_by_server(timeout=2)
        await asyncio.wait_for(closing, 5)


async def _kept_alive_ws(address: str, query: str) -> RawWs:
    """A WebSocket on a connection that served a request first: Hypercorn and Quart serve it."""
    host, port = address.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET /healthz HTTP/1.1\r\nHost: {address}\r\n\r\n".encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))
    await reader.readexactly(length)
    writer.write(f"GET /ws{query} HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\n"
                 f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n"
                 f"Sec-WebSocket-Version: 13\r\n\r\n".encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101"), head
    return RawWs(reader, writer)


async def test_on_the_quart_path_nothing_follows_hypercorns_close_frame(server, token):
    """Hypercorn closes with 1009 by itself; the subscribe answered meanwhile must not be
    written after that close frame (publications there go straight to the socket)."""
    address, svc = server
    ws = await _kept_alive_ws(address, f"?token={token(1)}")
    ws.send(frame('{"action":"ping"}'))
    assert (await ws.recv_json())["type"] == "pong"
    assert not any(type(s.endpoint) is DirectWebSocket for s in svc.ws_sessions.values())
    ws.send(frame('{"action":"subscribe","channel":"mining"}') + frame("x" * 70_000))
    frames = []
    while True:
        opcode, payload = await ws.recv()
        frames.append(opcode)
        if opcode == 0x8:
            assert struct.unpack(">H", payload[:2])[0] == 1009
            break
    with pytest.raises((asyncio.TimeoutError, asyncio.IncompleteReadError)):
        await ws.recv(timeout=0.5)   # nothing after the close frame
    ws.close()


async def test_a_dropped_frames_error_follows_the_answers_to_the_frames_before_it(server, token):
    """25 subscribes in one read: 20 pass the rate limit, and their acks (each awaiting the
    broker) come before the error about the 21st, as they were sent."""
    address, _svc = server
    ws = await RawWs.connect(address, f"?token={token(1)}")
    ws.send(b"".join(frame(json.dumps({"action": "subscribe", "channel": f"leaderboard:c{i}"}))
                     for i in range(25)))
    got = [await ws.recv_json() for _ in range(21)]
    assert [m["type"] for m in got] == ["subscribed"] * 20 + ["error"]
    assert [m["channel"] for m in got[:20]] == [f"leaderboard:c{i}" for i in range(20)]
    assert "Rate limit exceeded" in got[20]["message"]
    ws.close()


async def test_an_announced_oversized_ingest_body_is_413_before_it_is_sent(server):
    from .conftest import API_KEY

    address, _svc = server
    host, port = address.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"POST /api/events HTTP/1.1\r\nHost: {address}\r\nX-API-Key: {API_KEY}\r\n"
                 f"Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n".encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)   # no body was sent
    assert head.startswith(b"HTTP/1.1 413 ")
    writer.close()


async def test_on_the_quart_path_a_silent_client_is_cut_off_after_the_close_deadline(
        settings, token, monkeypatch):
    """Closed for idleness (4009) and never answering the close frame: the socket is closed at
    the close-handshake deadline, on the Quart path as on the direct one."""
    import quart_app.edge.transport_ws as transport_ws

    monkeypatch.setattr(transport_ws, "CLOSE_HANDSHAKE_SECONDS", 0.5)
    settings = with_env(settings, liveness=with_env(settings.liveness, idle_timeout_seconds=0.6,
                                                    ping_interval_seconds=0.2))
    async with serve_app(settings) as (address, _app):
        ws = await _kept_alive_ws(address, f"?token={token(1)}")
        assert (await ws.recv_close(answer=False))[0] == 4009
        assert await ws.closed_by_server(timeout=3)
