#!/usr/bin/env python
"""The floor for a Python server on uvloop (bench/RESULTS.md, "Where a connect's CPU goes"):
a server that answers the C client's upgrade with a correct 101 and its subscribe with a canned
ack, and does nothing else. What `bench/storm.py` measures of Pulse beyond this is Pulse's work.

    .venv/bin/python bench/floor.py [--clients 10000]

It starts the floor server pinned to core 0, connects the C client from core 1 (64 handshakes
in flight, as storm.py), prints the server's CPU per connect, and stops both by PID.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
ACK = b'{"type":"subscribed","channel":"dashboard","offset":0,"recovered":false}'


class Floor(asyncio.Protocol):
    def connection_made(self, transport) -> None:
        self.transport, self.upgraded = transport, False

    def data_received(self, data: bytes) -> None:
        if not self.upgraded:
            at = data.find(b"Sec-WebSocket-Key: ") + 19
            accept = base64.b64encode(hashlib.sha1(data[at:data.index(b"\r\n", at)] + GUID).digest())
            self.transport.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                 b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept
                                 + b"\r\n\r\n")
            self.upgraded = True
        else:
            self.transport.write(bytes((0x81, len(ACK))) + ACK)


async def serve(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(Floor, "127.0.0.1", port, backlog=4096)
    await server.serve_forever()


def drive(clients: int) -> None:
    sys.path.insert(0, HERE)
    import procstat
    import run

    out = os.path.join(HERE, "out")
    os.makedirs(out, exist_ok=True)
    binary = run.build_client(out)
    tokens = os.path.join(out, "tokens.txt")
    run.write_tokens(tokens, clients)
    port = run.free_port()
    server = subprocess.Popen(run.pinned("0") + [sys.executable, __file__, "--serve", str(port)])
    client = None
    try:
        deadline = time.monotonic() + 10
        while not _listening(port) and time.monotonic() < deadline:
            time.sleep(0.05)
        before = procstat.CpuSample.take([server.pid])
        client = run.Client(binary, port, clients, "ws", tokens, "1", tempfile.mkdtemp(dir=out),
                            ("--concurrency", "64"))
        ready = client.read(60 + clients / 50)
        cpu = procstat.CpuSample.take([server.pid]).since(before)
        print(f"floor: {ready['connected']} connected in {ready['connect_s']} s, "
              f"{cpu['cpu_s'] / clients * 1000:.3f} ms of server CPU per connect "
              f"(user {cpu['user_s']} s, sys {cpu['sys_s']} s)")
    finally:
        if client is not None:
            client.stop()
        server.kill()
        server.wait(5)


def _listening(port: int) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=10000)
    parser.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        import uvloop

        uvloop.install()
        asyncio.run(serve(args.serve))
    else:
        drive(args.clients)


if __name__ == "__main__":
    main()
