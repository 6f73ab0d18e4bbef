"""The kernel's floor: what one small loopback TCP ``send()`` costs on this machine.

Opens N connected TCP pairs on 127.0.0.1 in one process pinned to one core, then sends a
``--size``-byte payload to every socket, ``--rounds`` times, and prints wall, user and system
time per send. Nobody reads meanwhile (the receive buffers absorb it), so this is the send path
plus loopback's delivery into the receiving socket: the part of a fan-out that no Python change
can remove while every delivery is its own write.

    .venv/bin/python bench/sendcost.py [--sockets 1000] [--size 300] [--rounds 20]
"""
from __future__ import annotations

import argparse
import os
import socket
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--size", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--cpu", type=int, default=0)
    args = parser.parse_args()
    if len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {args.cpu})
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    clients, servers = [], []
    for _ in range(args.sockets):
        clients.append(socket.create_connection(listener.getsockname()))
        server, _addr = listener.accept()
        server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        servers.append(server)
    for sock in clients:
        sock.setblocking(False)
    payload = b"x" * args.size
    for attempt in range(3):
        for sock in clients:  # empty the receive buffers between attempts
            try:
                while sock.recv(1 << 16):
                    pass
            except BlockingIOError:
                pass
        t0, r0 = time.perf_counter(), os.times()
        for _ in range(args.rounds):
            for sock in servers:
                sock.send(payload)
        t1, r1 = time.perf_counter(), os.times()
        sends = args.rounds * args.sockets
        print(f"attempt {attempt}: {1e6 * (t1 - t0) / sends:.2f} us wall per send, "
              f"user {1e6 * (r1.user - r0.user) / sends:.2f} us, "
              f"sys {1e6 * (r1.system - r0.system) / sends:.2f} us "
              f"({sends} sends of {args.size} B)")
    for sock in clients + servers + [listener]:
        sock.close()


if __name__ == "__main__":
    main()
