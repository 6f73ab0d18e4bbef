"""The WebSocket edge under hostile clients (issue 12 of the audit): each case reproduces an
attack or a protocol defect on a real socket, then checks the bound the edge now keeps
(docs/protocol.md, "Limits"). The parser itself is fuzzed in test_edge_fuzz.py."""
import asyncio
import struct
import time

import pytest

from quart_app.edge.ws_protocol import PONG_BACKLOG, FrameReader

from .test_direct import RawWs, frame, server  # noqa: F401  (fixture)


def _close_frame(code: int, reason: bytes = b"") -> bytes:
    return frame(struct.pack(">H", code) + reason, opcode=0x8)


async def _healthz_seconds(address: str) -> float:
    host, port = address.split(":")
    start = time.monotonic()
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET /healthz HTTP/1.1\r\nHost: {address}\r\n\r\n".encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
    writer.close()
    assert head.startswith(b"HTTP/1.1 200"), head
    return time.monotonic() - start


async def test_empty_continuation_floods_are_cut_off_and_cost_no_loop_time(server):
    """Before: every continuation re-summed the earlier fragments (quadratic), 8 sockets without
    a token blocked /healthz for ~30 s. Now a message has at most 64 fragments (1009)."""
    address, _svc = server
    flood = frame(b"", fin=False) + frame(b"", opcode=0x0, fin=False) * 40_000
    clients = [await RawWs.connect(address) for _ in range(8)]
    for ws in clients:
        ws.send(flood)
    assert await _healthz_seconds(address) < 2.0
    for ws in clients:
        code, reason = await ws.recv_close(answer=False)
        assert code == 1009 and "fragments" in reason
        assert await ws.closed_by_server(timeout=3)


async def test_a_frame_flood_before_auth_is_failed_with_1008(server):
    address, _svc = server
    ws = await RawWs.connect(address)
    ws.send(frame(b"", opcode=0xA) * 5_000)   # unsolicited pongs: no message, only frames
    assert await ws.recv_close(answer=False) == (1008, "Too many frames")
    assert await ws.closed_by_server(timeout=3)


async def test_pings_from_a_client_that_never_reads_hold_bounded_memory(server):
    """Before: every ping's pong was written straight to the socket, no flow control (4 sockets
    grew the server by 580 MB in 5 s). Now the endpoint stops reading while its writes back
    up, and pongs past a bound are dropped."""
    address, svc = server
    ws = await RawWs.connect(address)
    ping = frame(b"p" * 125, opcode=0x9)
    for _ in range(40):                        # ~5 MB of pings, paced under the frame budget
        ws.send(ping * 150)
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)
    endpoints = [p for p in _direct_endpoints(svc)]
    assert endpoints, "the connection should be served by the direct endpoint"
    queued = max(p.transport.get_write_buffer_size() for p in endpoints)
    assert queued <= PONG_BACKLOG + 64 * 1024, queued
    ws.close()


def _direct_endpoints(svc):
    from quart_app.edge.ws_direct import DirectWebSocket

    return [p for p in svc.edge_connections if isinstance(p, DirectWebSocket)]


@pytest.mark.parametrize("code", [999, 1004, 1005, 1006, 1015, 1016, 2999, 5000])
async def test_invalid_close_codes_fail_with_1002_and_close_tcp(server, token, code):
    """Before: echoed back. RFC 6455 §7.4: these codes may not be sent; the server fails the
    connection (1002) and closes TCP without waiting for a handshake."""
    address, _svc = server
    ws = await RawWs.connect(address, f"?token={token(1)}")
    ws.send(_close_frame(code))
    got, _reason = await ws.recv_close(answer=False)
    assert got == 1002
    assert await ws.closed_by_server(timeout=1.5)


async def test_a_close_reason_in_invalid_utf8_fails_with_1007(server, token):
    address, _svc = server
    ws = await RawWs.connect(address, f"?token={token(1)}")
    ws.send(_close_frame(1000, b"\xff\xfe"))
    assert (await ws.recv_close(answer=False))[0] == 1007
    assert await ws.closed_by_server(timeout=1.5)


async def test_a_64_bit_length_with_its_top_bit_set_is_a_protocol_error(server, token):
    address, _svc = server
    ws = await RawWs.connect(address, f"?token={token(1)}")
    ws.send(bytes((0x81, 0xFF)) + struct.pack(">Q", 1 << 63) + b"mask")
    assert (await ws.recv_close(answer=False))[0] == 1002
    assert await ws.closed_by_server(timeout=1.5)


async def test_a_valid_close_is_echoed_and_tcp_closed(server, token):
    address, _svc = server
    ws = await RawWs.connect(address, f"?token={token(1)}")
    ws.send(_close_frame(4000, "done".encode()))
    assert await ws.recv_close(answer=False) == (4000, "done")
    assert await ws.closed_by_server(timeout=1.5)


async def test_an_idle_connection_holds_no_parser(server, token):
    address, svc = server
    ws = await RawWs.connect(address, f"?token={token(1)}")
    whole = frame('{"action":"subscribe","channel":"mining"}')
    ws.send(whole[:7])                                              # half a frame
    await asyncio.sleep(0.1)
    [endpoint] = _direct_endpoints(svc)
    assert endpoint.frames.holds_parser
    ws.send(whole[7:])
    assert (await ws.recv_json())["type"] == "subscribed"
    assert endpoint.frames is None          # no reader, no parser: an idle connection's share
    ws.close()


# -- the reader alone ---------------------------------------------------------------------
def test_reader_joins_fragments_and_checks_utf8_as_it_goes():
    reader = FrameReader(1024)
    text = "é€".encode()
    events = reader.feed(frame(text[:1], fin=False) + frame(text[1:4], opcode=0x0, fin=False)
                         + frame(text[4:], opcode=0x0))
    assert events == [("message", "é€")]
    reader = FrameReader(1024)
    events = reader.feed(frame(b"\xff", fin=False))
    assert events[0][0] == "write" and events[0][1][2:4] == struct.pack(">H", 1007)
    assert events[-1] == ("eof",)
    assert reader.feed(frame(b"more")) == []


def test_reader_message_size_counts_every_fragment():
    reader = FrameReader(100)
    events = reader.feed(frame(b"x" * 60, fin=False) + frame(b"x" * 60, opcode=0x0))
    assert events[0][1][2:4] == struct.pack(">H", 1009)


def test_reader_answers_a_close_inside_a_fragmented_message_with_its_code():
    """RFC 6455 §5.4: control frames may come between fragments. Before: websockets failed the
    connection with 1002 "incomplete fragmented message" (Autobahn case 7.1.5)."""
    reader = FrameReader(1024)
    events = reader.feed(frame(b"fragment1", fin=False) + _close_frame(1000, b"bye")
                         + frame(b"fragment2", opcode=0x0))
    assert events == [("closed", 1000, "bye"), ("write", b"\x88\x05\x03\xe8bye"), ("eof",)]
    reader = FrameReader(1024)
    events = reader.feed(frame(b"fragment1", fin=False) + frame(b"", opcode=0x8))
    assert events == [("closed", 1005, ""), ("write", b"\x88\x00"), ("eof",)]


def test_reader_reads_every_frame_before_a_close_in_the_same_read():
    """Before: once the library had parsed a close later in the read, the reader stopped after
    the first frame: a client's send, send, close in one segment lost the second message."""
    reader = FrameReader(1024)
    events = reader.feed(frame(b"one") + frame(b"two") + _close_frame(1000))
    assert events == [("message", "one"), ("message", "two"), ("closed", 1000, ""),
                      ("write", b"\x88\x02\x03\xe8"), ("eof",)]


@pytest.mark.parametrize("after, code", [(_close_frame(1001), 1001), (b"\x00\x00", 1002)],
                         ids=["close", "stray-continuation"])
def test_reader_a_pong_does_not_swallow_the_close_after_it(after, code):
    """Before: a ping's handler took every queued write, the close and the end of stream with
    it: the endpoint got ("write", b"") (IndexError in data_received) and never an eof."""
    reader = FrameReader(1024)
    events = reader.feed(frame(b"", opcode=0x9) + after)
    assert ("write", b"\x8a\x00") in events
    closes = [e[1] for e in events if e[0] == "write" and e[1][0] == 0x88]
    assert len(closes) == 1 and closes[0][2:4] == struct.pack(">H", code)
    assert events[-1] == ("eof",) and all(e != ("write", b"") for e in events)
    reader = FrameReader(1024)
    events = reader.feed(frame(b"", opcode=0x9) + after, backlog=PONG_BACKLOG)
    assert [e[0] for e in events][-2:] == ["write", "eof"] and events[-2][1][0] == 0x88


def test_reader_answers_pings_in_order_with_the_messages_around_them():
    """A ping between two fragments is answered before the message they make (Autobahn 5.6)."""
    reader = FrameReader(1024)
    events = reader.feed(frame(b"a", fin=False) + frame(b"p", opcode=0x9)
                         + frame(b"b", opcode=0x0) + frame(b"q", opcode=0x9))
    assert events == [("write", b"\x8a\x01p"), ("message", "ab"), ("write", b"\x8a\x01q")]


def test_reader_drops_pongs_while_writes_back_up():
    reader = FrameReader(1024)
    assert reader.feed(frame(b"a", opcode=0x9), backlog=0) == [("write", b"\x8a\x01a")]
    assert reader.feed(frame(b"a", opcode=0x9), backlog=PONG_BACKLOG) == []


# -- the Quart path (PULSE_WS_DEFLATE=true, kept-alive upgrades) ---------------------------
@pytest.fixture
async def quart_path(settings):
    from dataclasses import replace

    from .conftest import serve_app

    async with serve_app(replace(settings, ws_deflate=True)) as (address, app):
        yield address, app.extensions["pulse"]


@pytest.mark.parametrize("bad, code", [
    (frame(b"x", mask=False), 1002),
    (frame(struct.pack(">H", 999), opcode=0x8), 1002),
    (frame(b"x" * 70_000), 1009),
])
async def test_on_the_quart_path_violations_close_with_the_code_then_tcp(quart_path, token, bad,
                                                                         code):
    """Before: violations dropped TCP without a close frame (clients saw 1006), and after
    Hypercorn's own 1009 the TCP connection stayed open."""
    address, _svc = quart_path
    ws = await RawWs.connect(address, f"?token={token(1)}")
    ws.send(bad)
    assert (await ws.recv_close(answer=False))[0] == code
    assert await ws.closed_by_server(timeout=2)


async def test_on_the_quart_path_an_empty_binary_frame_is_an_error_frame(quart_path, token):
    """Before: Quart handed the handler None and the session raised TypeError."""
    address, _svc = quart_path
    ws = await RawWs.connect(address, f"?token={token(1)}")
    ws.send(frame(b"", opcode=0x2))
    reply = await ws.recv_json()
    assert reply["type"] == "error"
    ws.send(frame('{"action":"ping","ts":3}'))
    assert await ws.recv_json() == {"type": "pong", "ts": 3}
    ws.close()


def test_the_hooks_check_hypercorns_internals_before_patching(monkeypatch):
    from quart_app.edge import hypercorn_hooks

    assert hypercorn_hooks._check() is None
    assert hypercorn_hooks.status["installed"]
    monkeypatch.setitem(hypercorn_hooks._EXPECTED,
                        ("hypercorn.protocol.ws_stream", "WSStream.gone"), ("self",))
    assert "gone" in hypercorn_hooks._check()


async def test_replaying_the_whole_history_is_not_a_slow_consumer(settings, token):
    """Before: replaying exactly PULSE_HISTORY_SIZE messages into a PULSE_OUTBOX_MESSAGES outbox
    of the same size overflowed it, and the client got 4008 right after its ack."""
    from dataclasses import replace

    from .conftest import serve_app

    settings = replace(settings, limits=replace(settings.limits, outbox_messages=50),
                       history=replace(settings.history, size=50))
    async with serve_app(settings) as (address, app):
        svc = app.extensions["pulse"]
        for i in range(50):
            await svc.publish("competition", {"type": "match_update", "i": i})
        ws = await RawWs.connect(address, f"?token={token(1)}")
        ws.send(frame('{"action":"subscribe","channel":"competition","since":0}'))
        offsets = [(await ws.recv_json())["offset"] for _ in range(50)]
        assert offsets == list(range(1, 51))
        ack = await ws.recv_json()
        assert ack["type"] == "subscribed" and ack["recovered"] is True
        ws.send(frame('{"action":"ping","ts":1}'))
        assert await ws.recv_json() == {"type": "pong", "ts": 1}
        ws.close()


@pytest.mark.parametrize("text", ['{"action":"ping","ts":NaN}', "[" * 3000,
                                  '{"action":"subscribe","channel":"\\ud800"}'])
async def test_hostile_json_gets_an_error_frame_and_the_session_goes_on(server, token, text):
    """Before: NaN came back as a bare NaN token (not JSON), deep nesting raised out of the
    frame handler, and an error frame echoing a lone surrogate could not be encoded."""
    import json

    address, _svc = server
    ws = await RawWs.connect(address, f"?token={token(1)}")
    ws.send(frame(text))
    opcode, payload = await ws.recv()
    reply = json.loads(payload.decode("utf-8"))       # strict UTF-8 and JSON
    assert reply["type"] == "error"
    ws.send(frame('{"action":"ping","ts":2}'))
    assert await ws.recv_json() == {"type": "pong", "ts": 2}
    ws.close()


def test_the_frame_budget_survives_letting_the_reader_go():
    """An idle connection drops its reader; a flood split across reads still meets the budget
    the reader it had would have applied."""
    first = FrameReader(1024, frame_rate=100.0)
    first.feed(frame(b"", opcode=0xA) * 150)
    assert first.idle()
    second = FrameReader(1024, frame_rate=100.0)
    second.resume_budget(first.full_at())
    events = second.feed(frame(b"", opcode=0xA) * 100)
    assert events and events[0][1][2:4] == struct.pack(">H", 1008)
