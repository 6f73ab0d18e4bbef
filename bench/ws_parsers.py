"""Sans-I/O WebSocket parsers compared for the direct /ws endpoint: memory per connection
(a parser kept per socket) and time per inbound frame (a masked 60-byte text frame, a ping).

    python bench/ws_parsers.py
"""
from __future__ import annotations

import os
import time
import tracemalloc


def frame(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes((0x80 | opcode, 0x80 | len(payload))) + mask + body


def make_websockets():
    from websockets.protocol import OPEN, SERVER, Protocol

    return lambda: Protocol(SERVER, state=OPEN, max_size=65536)


def feed_websockets(p, data):
    p.receive_data(data)
    p.events_received()
    p.data_to_send()


def make_wsproto():
    from wsproto.frame_protocol import FrameProtocol

    return lambda: FrameProtocol(client=False, extensions=[])


def feed_wsproto(p, data):
    p.receive_bytes(data)
    for _ in p.received_frames():
        pass


def measure(name, make, feed, n=2000, frames=20000):
    new = make
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    keep = [new() for _ in range(n)]
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    text = frame(0x1, b'{"action":"subscribe","channel":"mining","since":12345}xxxx')
    ping = frame(0x9, b"")
    p = keep[0]
    for data, label in ((text, "text"), (ping, "ping")):
        start = time.perf_counter()
        for _ in range(frames):
            feed(p, data)
        per = (time.perf_counter() - start) / frames * 1e6
        print(f"{name:11s} {label}: {per:5.2f} µs/frame")
    start = time.perf_counter()
    for _ in range(frames):
        feed(new(), text)
    print(f"{name:11s} new parser + text frame: "
          f"{(time.perf_counter() - start) / frames * 1e6:5.2f} µs")
    print(f"{name:11s} memory per idle parser: {(after - before) / n:,.0f} bytes")


if __name__ == "__main__":
    measure("websockets", make_websockets(), feed_websockets)
    measure("wsproto", make_wsproto(), feed_wsproto)
