"""Properties of the edge's parsers under arbitrary client bytes (no sockets): the WebSocket
:class:`~quart_app.edge.ws_protocol.FrameReader`, the request :class:`~quart_app.edge.routing.
HeadReader` and the SSE cursor (``parse_cursor``). Whatever arrives, and however TCP splits
it, each answers only with its documented results, keeps its memory bounded, and reads the same
thing from one chunk as from many. Conformance on a real socket is Autobahn's (docs/autobahn.md).
"""
from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from quart_app.edge.routing import MAX_HEAD_BYTES, Head, HeadError, HeadReader
from quart_app.edge.transport_sse import Position, format_cursor, parse_cursor
from quart_app.edge.ws_protocol import PONG_BACKLOG, FrameReader
from quart_app.errors import BadRequest
from quart_app.realtime.broker import MAX_OFFSET

EXAMPLES = 250
fuzz = hsettings(max_examples=EXAMPLES, deadline=None, database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Close codes a peer may send (RFC 6455 §7.4.1, IANA registry) and that websockets echoes.
SENDABLE_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014]
MAX_HEADER = 14  # 2 bytes, an 8-byte length, a 4-byte mask


# -- WebSocket frames ----------------------------------------------------------------------
def client_frame(opcode: int, payload: bytes, fin: bool = True, key: bytes = b"\0\0\0\0") -> bytes:
    """A masked client frame (RFC 6455 §5.2, §5.3)."""
    head = bytes(((0x80 if fin else 0) | opcode,))
    n = len(payload)
    if n < 126:
        head += bytes((0x80 | n,))
    elif n < 1 << 16:
        head += bytes((0x80 | 126,)) + struct.pack(">H", n)
    else:
        head += bytes((0x80 | 127,)) + struct.pack(">Q", n)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


keys = st.binary(min_size=4, max_size=4)
controls = st.tuples(st.sampled_from([0x9, 0xA]), st.binary(max_size=125), keys).map(
    lambda t: client_frame(t[0], t[1], key=t[2]))


@st.composite
def messages(draw, max_size: int = 300):
    """One message as frames: text or binary, in 1..4 fragments (text may be cut inside a
    character), pings and pongs between fragments; and the message the reader must deliver."""
    if draw(st.booleans()):
        message: str | bytes = draw(st.text(max_size=max_size // 4))
        payload, opcode = message.encode(), 0x1
    else:
        message = draw(st.binary(max_size=max_size))
        payload, opcode = message, 0x2
    cuts = draw(st.lists(st.integers(0, len(payload)), max_size=3))
    parts = split(payload, cuts)
    out = b""
    for i, part in enumerate(parts):
        out += client_frame(opcode if i == 0 else 0x0, part, i == len(parts) - 1, draw(keys))
        if draw(st.integers(0, 3)) == 0:
            out += draw(controls)
    return out, message


@st.composite
def conversations(draw):
    """A valid client stream: messages, controls, maybe a close (with or without a code)."""
    stream, expected = b"", []
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.integers(0, 4)) == 0:
            stream += draw(controls)
        else:
            frames, message = draw(messages())
            stream += frames
            expected.append(message)
    if draw(st.booleans()):
        if draw(st.booleans()):
            body = struct.pack(">H", draw(st.sampled_from(SENDABLE_CODES + [3000, 4999])))
            body += draw(st.text(max_size=30)).encode()[:123]
        else:
            body = b""
        stream += client_frame(0x8, body, key=draw(keys))
        # What a client sends after its close is never read (RFC 6455 §5.5.1).
        stream += draw(st.binary(max_size=40))
    return stream, expected


def check_server_frame(chunk: bytes) -> None:
    """Every write is one unmasked, final pong or close frame; a close carries a valid code."""
    assert chunk[0] in (0x88, 0x8A), chunk[:2]
    length = chunk[1]
    assert length <= 125 and len(chunk) == 2 + length, chunk[:4]
    if chunk[0] == 0x88 and length:
        assert length >= 2
        code = struct.unpack(">H", chunk[2:4])[0]
        assert code in SENDABLE_CODES or 3000 <= code <= 4999, code
        chunk[4:].decode()  # a close reason is UTF-8


def held_bytes(reader: FrameReader) -> int:
    proto = reader._proto
    if proto is None:
        return 0
    return len(proto.reader.buffer) + sum(map(len, reader._parts or ()))


def run(reader: FrameReader, chunks: list[bytes], backlog: int = 0) -> list[tuple]:
    """Feed chunk by chunk, checking each event's shape and the memory held after each feed."""
    events: list[tuple] = []
    for chunk in chunks:
        got = reader.feed(chunk, backlog)
        if events and events[-1] == ("eof",):
            assert got == [], "events after eof"
        for event in got:
            assert events[-1:] != [("eof",)], "events after eof"
            kind = event[0]
            if kind == "message":
                assert len(event) == 2 and isinstance(event[1], (str, bytes))
            elif kind == "write":
                assert len(event) == 2 and isinstance(event[1], bytes)
                check_server_frame(event[1])
            elif kind == "closed":
                assert len(event) == 3 and isinstance(event[1], int) and isinstance(event[2], str)
            else:
                assert event == ("eof",), event
            events.append(event)
        assert held_bytes(reader) <= reader.max_message + MAX_HEADER
    return events


def read(kind: str, events: list[tuple]) -> list:
    return [e[1:] if kind == "closed" else e[1] for e in events if e[0] == kind]


@fuzz
@given(data=st.binary(max_size=3000), cuts=st.lists(st.integers(0, 3000), max_size=12),
       max_message=st.integers(0, 2048), backlog=st.integers(0, 2 * PONG_BACKLOG))
def test_frame_reader_takes_any_bytes_in_any_split(data, cuts, max_message, backlog):
    run(FrameReader(max_message), split(data, cuts), backlog)


@fuzz
@given(prefix=conversations(), noise=st.binary(min_size=1, max_size=200),
       cuts=st.lists(st.integers(0, 4000), max_size=12))
def test_frame_reader_survives_garbage_after_valid_frames(prefix, noise, cuts):
    data = prefix[0] + noise
    run(FrameReader(256, max_fragments=8), split(data, cuts))


@fuzz
@given(conversation=conversations(), cuts=st.lists(st.integers(0, 4000), max_size=16))
def test_frame_reader_reads_the_same_however_the_bytes_are_split(conversation, cuts):
    stream, expected = conversation
    whole = run(FrameReader(4096, frame_rate=1e9), [stream])
    pieces = run(FrameReader(4096, frame_rate=1e9), split(stream, cuts))
    assert read("message", whole) == expected
    assert read("message", pieces) == expected
    assert pieces == whole  # pongs too, in order with the messages around them
    assert (("eof",) in pieces) == (("eof",) in whole) == bool(read("closed", whole))


@fuzz
@given(conversation=conversations(), cuts=st.lists(st.integers(0, 4000), max_size=16),
       max_message=st.integers(0, 400))
def test_frame_reader_never_holds_more_than_a_message(conversation, cuts, max_message):
    """Messages past ``max_message`` fail the connection (1009) before their bytes are kept."""
    events = run(FrameReader(max_message, frame_rate=1e9), split(conversation[0], cuts))
    assert all(len(m) <= max_message for m in read("message", events)
               if isinstance(m, bytes))
    assert all(len(m.encode()) <= max_message for m in read("message", events)
               if isinstance(m, str))


@fuzz
@given(pings=st.lists(st.binary(max_size=125), min_size=1, max_size=300),
       backlog=st.integers(PONG_BACKLOG, 4 * PONG_BACKLOG),
       cuts=st.lists(st.integers(0, 40000), max_size=8))
def test_no_pongs_while_writes_back_up(pings, backlog, cuts):
    data = b"".join(client_frame(0x9, p) for p in pings)
    events = run(FrameReader(1024, frame_rate=1e9), split(data, cuts), backlog)
    assert read("write", events) == []


@fuzz
@given(pings=st.lists(st.binary(max_size=125), min_size=1, max_size=600),
       backlog=st.integers(0, PONG_BACKLOG), cuts=st.lists(st.integers(0, 80000), max_size=8))
def test_pongs_never_amplify_and_stop_at_the_backlog(pings, backlog, cuts):
    """Each pong is at most its ping (less the mask), only written when it fits under
    PONG_BACKLOG; at the default frame rate a burst of pings owes at most a burst of pongs."""
    data = b"".join(client_frame(0x9, p) for p in pings)
    reader = FrameReader(1024)
    fed = written = 0
    for chunk in split(data, cuts):
        pongs = [w for w in read("write", run(reader, [chunk], backlog)) if w[0] == 0x8A]
        assert all(backlog + len(p) <= PONG_BACKLOG for p in pongs)
        fed += len(chunk)
        written += sum(map(len, pongs))
        assert written <= fed
    # The bucket holds two seconds of frames; a slow run may add a few more.
    assert written <= (2 * reader.frame_rate + 20) * (2 + 125)


def test_a_valid_close_after_fragments_is_echoed():
    """A close between fragments is a close (RFC 6455 §5.4), not a protocol error."""
    stream = client_frame(0x1, b"frag", fin=False) + client_frame(0x8, struct.pack(">H", 4000))
    events = run(FrameReader(64), [stream])
    assert events == [("closed", 4000, ""), ("write", b"\x88\x02\x0f\xa0"), ("eof",)]


# -- request heads -------------------------------------------------------------------------
def feed_head(chunks: list[bytes]) -> Head | HeadError | None:
    reader = HeadReader()
    for chunk in chunks:
        try:
            head = reader.feed(chunk)
        except HeadError as exc:
            return exc
        if head is not None:
            return head
        assert len(reader.received) <= MAX_HEAD_BYTES  # bounded while waiting
    return None


@fuzz
@given(data=st.one_of(st.binary(max_size=2000),
                      st.binary(max_size=300).map(lambda b: b"GET /ws HTTP/1.1\r\n" + b)),
       cuts=st.lists(st.integers(0, 2000), max_size=12))
def test_head_reader_answers_any_bytes_with_none_a_head_or_head_error(data, cuts):
    result = feed_head(split(data, cuts))
    assert result is None or isinstance(result, (Head, HeadError))


def test_head_reader_gives_up_past_its_bound():
    assert isinstance(feed_head([b"GET /" + b"a" * MAX_HEAD_BYTES]), HeadError)


_tchar = st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~!#$&'*+^`|")
_pchar = st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789-_.~%/:@!$&'()*+,;=")
_vchar = st.characters(min_codepoint=0x21, max_codepoint=0x7E)
header_names = st.text(_tchar, min_size=1, max_size=20).filter(
    lambda n: n.lower() not in ("host", "content-length", "transfer-encoding"))
header_values = st.builds(lambda a, b: (a + b).strip(), st.text(_vchar, max_size=30),
                          st.text(st.sampled_from(" \t") | _vchar, max_size=10))


@st.composite
def get_heads(draw):
    path = "/" + draw(st.text(_pchar, max_size=40))
    query = draw(st.text(_pchar | st.just("?"), max_size=40))
    target = path + ("?" + query if query or draw(st.booleans()) else "")
    headers = [("Host", "pulse.test")] + draw(st.lists(st.tuples(header_names, header_values),
                                                        max_size=8))
    newline = draw(st.sampled_from(["\r\n", "\n"]))
    lines = [f"GET {target} HTTP/1.1"] + [f"{k}:{draw(st.sampled_from(['', ' ']))}{v}"
                                           for k, v in headers]
    raw = newline.join(lines).encode() + (newline * 2).encode()
    expected: dict[str, str] = {}
    for name, value in headers:
        name = name.lower()
        if name in expected:
            expected[name] += ("; " if name == "cookie" else ", ") + value
        else:
            expected[name] = value
    return raw, path, query, expected


def h11_head(raw: bytes) -> tuple | None:
    """What Hypercorn's parser (h11) reads from a complete head: the oracle HeadReader must
    agree with wherever it takes a head itself."""
    import h11

    conn = h11.Connection(h11.SERVER)
    conn.receive_data(raw)
    try:
        event = conn.next_event()
    except h11.RemoteProtocolError:
        return None
    if not isinstance(event, h11.Request):
        return None
    headers: dict[str, str] = {}
    for name, value in event.headers:
        name, value = name.decode("latin-1"), value.decode("latin-1")
        if name in headers:
            headers[name] += ("; " if name == "cookie" else ", ") + value
        else:
            headers[name] = value
    target = event.target.decode("latin-1")
    path, _, query = target.partition("?")
    return event.method.decode(), event.http_version, path, query, headers


@fuzz
@given(head=get_heads(), after=st.binary(max_size=40),
       cuts=st.lists(st.integers(0, 1000), max_size=12))
def test_head_reader_reads_a_get_the_same_however_it_is_split(head, after, cuts):
    raw, path, query, headers = head
    reader = HeadReader()
    result = None
    chunks = list(filter(None, split(raw + after, cuts)))  # b"" is EOF to h11: never fed
    try:
        for chunk in chunks:
            result = reader.feed(chunk)
            if result is not None:
                break
    except HeadError:
        # Only bare-LF line ends are left to Hypercorn (which reads them: test_edge_http.py).
        assert b"\r\n" not in raw
        return
    assert b"\r\n" in raw
    assert isinstance(result, Head)
    assert (result.method, result.path, result.query, result.headers) == (
        "GET", path, query, headers)
    assert bytes(reader.received[len(raw):]) == reader.pending  # frames sent before our 101
    assert ("GET", b"1.1", path, query, headers) == h11_head(raw)


def _mutate(raw: bytes, edits: list[tuple[int, int]]) -> bytes:
    data = bytearray(raw)
    for at, byte in edits:
        if data:
            data[at % len(data)] = byte
    return bytes(data)


@fuzz
@given(head=get_heads(), edits=st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)),
                                        max_size=4),
       cuts=st.lists(st.integers(0, 1000), max_size=6))
def test_a_head_pulse_takes_is_one_hypercorn_would_read_the_same(head, edits, cuts):
    """Differential: damaged heads (a byte or four changed anywhere) are either left to
    Hypercorn (HeadError, or not complete) or read exactly as h11 reads them."""
    raw = _mutate(head[0].replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"), edits)
    result = feed_head(list(filter(None, split(raw, cuts))))
    if isinstance(result, Head):
        end = raw.index(b"\r\n\r\n") + 4
        assert h11_head(raw[:end]) == (result.method, b"1.1", result.path, result.query,
                                       result.headers)


# -- SSE cursors ---------------------------------------------------------------------------
@fuzz
@given(value=st.one_of(st.text(), st.text(st.sampled_from("ab:/@,0123456789. E\t²٣"))))
def test_parse_cursor_answers_any_text_with_positions_or_bad_request(value):
    try:
        cursor = parse_cursor(value)
    except BadRequest:
        return
    assert isinstance(cursor, dict)
    for channel, at in cursor.items():
        assert channel and isinstance(at, Position)
        assert 0 <= at.offset <= MAX_OFFSET
    assert parse_cursor(format_cursor(cursor).decode()) == cursor


channel_names = st.text(st.sampled_from("abcxyz019_-.#:@/"), min_size=1, max_size=20)
offsets = st.integers(0, MAX_OFFSET)
epochs = st.text(st.sampled_from("ABCxyz0189."), min_size=1, max_size=64)


@fuzz
@given(cursor=st.dictionaries(channel_names, st.builds(
    Position, offsets, st.none() | offsets, st.none() | epochs), max_size=6))
def test_cursor_round_trips(cursor):
    text = format_cursor(cursor).decode()
    assert parse_cursor(text) == cursor
    assert format_cursor(parse_cursor(text)).decode() == text


@pytest.mark.parametrize("value", ["a:1/", "a:/1", ":1", "a:1@É", "a:1@" + "E" * 65, "a:01x", "a:1,",
                                   "a:" + "9" * 20])
def test_parse_cursor_refuses_malformed(value):
    with pytest.raises(BadRequest):
        parse_cursor(value)


def _pong_like():
    """Bytes near a lone masked pong: the frame itself, or it with one byte changed, cut or
    extended (so both answers of ``lone_pong`` are exercised)."""
    frame = st.builds(lambda n, mask, payload: bytes([0x8A, 0x80 | n]) + mask + payload[:n],
                      st.integers(0, 125), st.binary(min_size=4, max_size=4),
                      st.binary(min_size=125, max_size=125))
    return st.one_of(
        frame,
        st.tuples(frame, st.integers(0, 130), st.integers(0, 255)).map(
            lambda t: t[0][:t[1]] + bytes([t[2]]) + t[0][t[1] + 1:]),
        st.tuples(frame, st.integers(0, 130)).map(lambda t: t[0][:t[1]]),
        st.tuples(frame, st.binary(min_size=1, max_size=8)).map(lambda t: t[0] + t[1]),
        st.binary(max_size=140))


@given(data=_pong_like())
@fuzz
def test_a_lone_pong_is_what_the_parser_would_ignore(data):
    """The idle connection's shortcut (ws_direct skips the parser for ``lone_pong`` bytes)
    agrees with the library: whatever it takes, the parser answers nothing to and stays idle."""
    from quart_app.edge.ws_protocol import lone_pong

    if lone_pong(data):
        reader = FrameReader(65536)
        assert reader.feed(data, 0) == []
        assert reader.idle() or reader.holds_parser and not reader.closing
        assert not reader.closed and not reader.closing


def test_lone_pong_examples():
    from quart_app.edge.ws_protocol import lone_pong

    assert lone_pong(b"\x8a\x80abcd") and lone_pong(b"\x8a\x83abcdxyz")
    assert not lone_pong(b"\x8a\x00")              # unmasked: the parser fails it (1002)
    assert not lone_pong(b"\x0a\x80abcd")          # not FIN
    assert not lone_pong(b"\xca\x80abcd")          # RSV1 set
    assert not lone_pong(b"\x8a\x83abcdxy")        # cut short
    assert not lone_pong(b"\x8a\x80abcd\x81")      # a second frame begins
    assert not lone_pong(b"\x8a\xfe\x00\x7eabcd" + b"x" * 126)  # extended length
