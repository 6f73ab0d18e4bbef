"""Steady-phase recoveries (issue 18): N dashboards of the packaged client (static/client, in
Node, `ws` injected) follow the demo's live traffic on mining, gamification and dashboard for a
while; each reports the holes it saw in its offsets (every hole triggers a resubscribe with
`since`) and its resyncs. With per-user offset spaces the expected count is 0.

    .venv/bin/python bench/steady_gaps.py --clients 20 --seconds 60

Starts `python -m quart_app serve --demo` (embedded backends) on a free port and stops it by PID.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLIENT = ROOT / "static" / "client"
SECRET = "bench-secret-0123456789abcdef-0123456789"

SCRIPT = r"""
import { Client } from "%(client)s/index.js";
import WebSocket from "%(client)s/node_modules/ws/wrapper.mjs";
const [base, seconds, ...tokens] = process.argv.slice(2);
const clients = tokens.map((token) => {
  const client = new Client({ baseUrl: base, token, WebSocket });
  for (const channel of ["mining", "gamification", "dashboard"]) client.subscribe(channel);
  client.connect();
  return client;
});
let publications = 0;
for (const client of clients) client.on("publication", () => { publications += 1; });
setTimeout(() => {
  const per = clients.map((c) => c.metrics());
  process.stdout.write(JSON.stringify({
    clients: clients.length,
    gaps: per.reduce((n, m) => n + m.gaps, 0),
    resyncs: per.reduce((n, m) => n + m.resyncs, 0),
    reconnects: per.reduce((n, m) => n + m.reconnects, 0),
    received: per.reduce((n, m) => n + m.received, 0),
  }) + "\n");
  for (const c of clients) c.close();
  process.exit(0);
}, Number(seconds) * 1000);
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from quart_app.realtime.auth import mint_token

    port = free_port()
    work = Path(tempfile.mkdtemp(prefix="pulse-steady-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PULSE_", "REDIS_"))}
    env.update(JWT_SECRET=SECRET, DATABASE_URL=f"sqlite:///{work}/pulse.db", PULSE_UVLOOP="0")
    server = subprocess.Popen([sys.executable, "-m", "quart_app", "serve", "--demo", "--port",
                               str(port)], cwd=work, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        import httpx

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        tokens = [mint_token(SECRET, 1 + i % 8, ttl_seconds=3600) for i in range(args.clients)]
        script = work / "steady.mjs"
        script.write_text(SCRIPT % {"client": CLIENT.as_posix()})
        out = subprocess.run(["node", str(script), f"http://127.0.0.1:{port}",
                              str(args.seconds), *tokens], capture_output=True, text=True,
                             timeout=args.seconds + 60)
        if out.returncode != 0:
            print(out.stderr, file=sys.stderr)
            return 1
        result = json.loads(out.stdout.strip().splitlines()[-1])
        minutes = args.seconds / 60
        result["resubscribes_per_minute"] = round(result["gaps"] / minutes, 2)
        print(json.dumps(result))
        return 0
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    raise SystemExit(main())
