"""A WebSocket echo server on Pulse's own edge code, for Autobahn|Testsuite's fuzzing client.

The upgrade is read by :class:`quart_app.edge.routing.HeadReader` and answered with
:func:`quart_app.edge.ws_direct.accept_response`; frames go through
:class:`quart_app.edge.ws_protocol.FrameReader`, exactly as ``/ws`` reads them (the same
flow control as :class:`~quart_app.edge.ws_direct.DirectWebSocket`: a client that does not read
is not read from). Only the limits differ: Autobahn sends 16 MiB messages, thousands of
fragments and frames as fast as TCP carries them (cases 9.*), which are not Pulse's limits.

    python .ci/autobahn/echo_server.py [--port 9001]
"""
from __future__ import annotations

import argparse
import asyncio
import logging

from quart_app.edge.routing import HeadError, HeadReader
from quart_app.edge.ws_direct import accept_response, upgrade_key
from quart_app.edge.ws_protocol import FrameReader

MAX_MESSAGE = 16 * 1024 * 1024
MAX_FRAGMENTS = 100_000
FRAME_RATE = 1e9
LINGER_SECONDS = 2.0

log = logging.getLogger("autobahn.echo")


def server_frame(message: str | bytes) -> bytes:
    """One unfragmented, unmasked server frame (RFC 6455 §5.2): text for str, binary for bytes."""
    if isinstance(message, str):
        opcode, payload = 0x1, message.encode()
    else:
        opcode, payload = 0x2, message
    size = len(payload)
    if size < 126:
        head = bytes((0x80 | opcode, size))
    elif size < 1 << 16:
        head = bytes((0x80 | opcode, 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 127)) + size.to_bytes(8, "big")
    return head + payload


def bad_request(transport: asyncio.Transport) -> None:
    transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n"
                    b"connection: close\r\n\r\n")
    transport.close()


class EchoProtocol(asyncio.Protocol):
    """Head first (HeadReader), then frames (FrameReader): each message is sent back."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.head: HeadReader | None = HeadReader()
        self.frames = FrameReader(MAX_MESSAGE, MAX_FRAGMENTS, FRAME_RATE)
        self.paused = False
        self.done = False
        self.linger: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.head is not None:
            self._read_head(data)
        elif not self.done:
            self._read_frames(data)

    def _read_head(self, data: bytes) -> None:
        transport = self.transport
        assert transport is not None and self.head is not None
        try:
            request = self.head.feed(data)
        except HeadError:
            return bad_request(transport)
        if request is None:
            return None
        key = upgrade_key(request)
        if key is None:
            return bad_request(transport)
        pending = self.head.pending
        self.head = None
        transport.write(accept_response(key))
        if pending:
            self._read_frames(pending)
        return None

    def _read_frames(self, data: bytes) -> None:
        transport = self.transport
        assert transport is not None
        for event in self.frames.feed(data, transport.get_write_buffer_size()):
            kind = event[0]
            if kind == "message":
                if not self.frames.closing:
                    transport.write(server_frame(event[1]))
            elif kind == "write":
                transport.write(event[1])
            elif kind == "eof":
                self._end_tcp()
                return
            # "closed": the reader already queued the answer to the peer's close

    def _end_tcp(self) -> None:
        """Our FIN first (the server closes TCP, RFC 6455 §7.1.1), then a short grace."""
        self.done = True
        transport = self.transport
        assert transport is not None
        if self.paused:
            self.paused = False
            transport.resume_reading()
        if transport.can_write_eof():
            transport.write_eof()
            self.linger = asyncio.get_running_loop().call_later(LINGER_SECONDS, transport.abort)
        else:
            transport.close()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.linger is not None:
            self.linger.cancel()

    def pause_writing(self) -> None:
        if not self.paused and not self.done and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.paused and self.transport is not None and not self.transport.is_closing():
            self.paused = False
            self.transport.resume_reading()


async def serve(host: str, port: int) -> None:
    server = await asyncio.get_running_loop().create_server(EchoProtocol, host, port)
    log.warning("echo server on %s:%d", host, port)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9001)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        asyncio.run(serve(args.host, args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
