#!/usr/bin/env python
"""Pulse load bench: N authenticated WebSocket or SSE clients, publications through Redis (or
``/api/events``), and the server's own CPU and memory from /proc. See bench/README.md.

One *case* = one server (Pulse, or the seed-000 baseline), one transport, N clients:

1. start the server pinned to core 0 (``taskset -c 0``; ``--workers 2`` gets cores 0,1), warm it
   up with a few clients, read its RSS;
2. start ``wsclient`` (C, epoll, pinned to core 1) with N clients, one token (user) each, and
   wait until every one is subscribed -> connect time;
3. RSS again after a short settle -> KB per idle connection; CPU over ``--idle-seconds`` -> idle %;
4. *burst*: ``--broadcasts`` items back to back -> server CPU us per delivery, burst latency;
5. *rate*: ``--rate`` broadcasts/s for ``--rate-seconds`` -> p50/p99/max latency, delivered;
6. *flood*: ``clamp(--flood-deliveries / N, 50, 500)`` items back to back -> deliveries/s (first
   publish to last receive), CPU us per delivery again;
and the client's own CPU% in every window, to show the generator is not the bottleneck.
Every wait is bounded; the server and the client are stopped by PID at the end of each case.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

import procstat  # noqa: E402
from publisher import Publisher, Unavailable  # noqa: E402
from report import markdown_table  # noqa: E402

SECRET = "bench-secret-" + "0123456789abcdef" * 2
API_KEY = "bench-api-key"


# -- setup ----------------------------------------------------------------------------------
def raise_nofile(want: int) -> int:
    """Raise RLIMIT_NOFILE for us and our children (as root the hard limit may rise too)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return want
        except (ValueError, OSError):
            pass
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def build_client(out_dir: str) -> str:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise SystemExit("bench: gcc not found (apt-get install gcc)")
    os.makedirs(out_dir, exist_ok=True)
    binary = os.path.join(out_dir, "wsclient")
    source = os.path.join(HERE, "wsclient.c")
    if not os.path.exists(binary) or os.path.getmtime(binary) < os.path.getmtime(source):
        subprocess.run([gcc, "-O2", "-Wall", "-o", binary, source], check=True)
    return binary


# The CPUs this machine lets us use, read before main() pins the orchestrator (and its
# publisher) to the client's CPUs: children inherit that, so the server must be pinned from
# this set. (Reading the affinity later pinned nothing, and the server shared the client's core.)
MACHINE_CPUS = frozenset(os.sched_getaffinity(0))


def pinned(cpus: str | None) -> list[str]:
    if cpus and shutil.which("taskset") and len(MACHINE_CPUS) > 1:
        return ["taskset", "-c", cpus]
    return []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_tokens(path: str, n: int) -> None:
    from quart_app.realtime.auth import mint_token

    with open(path, "w") as fh:
        for user in range(1, n + 1):
            fh.write(mint_token(SECRET, user, ttl_seconds=6 * 3600) + "\n")


# -- the server under test ------------------------------------------------------------------
def snapshot(rev: str, out_dir: str) -> str:
    """``git archive`` of quart_app/ and sql/ at ``rev`` (the tree is shared with engineers
    editing it: a committed revision keeps a run reproducible). "worktree" means as it is."""
    if rev == "worktree":
        return ROOT
    if os.path.isdir(os.path.join(rev, "quart_app")):  # a prepared tree (e.g. an experiment)
        return os.path.abspath(rev)
    sha = subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout.strip()
    dest = os.path.join(out_dir, f"src-{sha}")
    if not os.path.isdir(dest):
        os.makedirs(dest + ".tmp", exist_ok=True)
        archive = subprocess.run(["git", "archive", sha, "quart_app", "sql"], cwd=ROOT,
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", dest + ".tmp"], input=archive, check=True)
        os.rename(dest + ".tmp", dest)
    return dest


class Server:
    def __init__(self, kind: str, port: int, workers: int, cpus: str | None, python: str,
                 work: str, redis_url: str, prefix: str, source: str = ROOT,
                 entry: str = "main", database_url: str | None = None) -> None:
        self.kind, self.port, self.workers = kind, port, workers
        env = dict(os.environ, REDIS_URL=redis_url, PULSE_REDIS_PREFIX=prefix,
                   DATABASE_URL=database_url or f"sqlite:///{work}/bench.db", JWT_SECRET=SECRET,
                   PULSE_API_KEY=API_KEY, PYTHONUNBUFFERED="1")
        if kind == "pulse":
            serve = ["serve", "--port", str(port), "--workers", str(workers)]
            if entry == "module":
                cmd = [python, "-m", "quart_app", *serve]
            elif entry == "hypercorn":
                # Hypercorn's own CLI on the app factory: `serve --workers N` cannot start more
                # than one worker at the moment (its config does not pickle; see RESULTS.md).
                cmd = [python, "-m", "hypercorn", "--workers", str(workers), "--worker-class",
                       "uvloop", "--bind", f"127.0.0.1:{port}", "quart_app:create_app()"]
            else:
                # The same main() without `python -m`'s __main__ block, which resets SIGPIPE to
                # SIG_DFL: a write to a socket the peer already closed then kills the server
                # (seen as exit -13 under load; see bench/RESULTS.md).
                cmd = [python, "-c", "import sys; from quart_app.__main__ import main; "
                       f"sys.exit(main({serve!r}))"]
        elif kind == "node":  # the fastest peer; `npm ci --prefix bench/node_ws` first
            cmd = ["node", os.path.join(HERE, "node_ws", "server.js"), "--port", str(port)]
        else:
            cmd = [python, os.path.join(HERE, "baseline_seed.py"), "--port", str(port)]
        self.log_path = os.path.join(work, f"server-{kind}-{port}.log")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(pinned(cpus) + cmd, cwd=source, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = self.proc.pid
        self.pids = [self.pid]

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited ({self.proc.returncode}); see {self.log_path}")
            if self._ready():
                time.sleep(0.3)
                self.pids = procstat.descendants(self.pid)
                if self.workers > 1 and len(self.pids) < self.workers + 1:
                    continue
                return
            time.sleep(0.1)
        raise RuntimeError(f"server not ready after {timeout}s; see {self.log_path}")

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"server exited ({self.proc.returncode}): {self.log_tail()}")

    def log_tail(self, lines: int = 8) -> str:
        """The last warnings/errors of the server log (info lines skipped)."""
        try:
            with open(self.log_path, errors="replace") as fh:
                kept = [line.strip() for line in fh if '"level": "info"' not in line
                        and "INFO:" not in line]
        except OSError:
            return ""
        return " | ".join(kept[-lines:])[-2000:]

    def _ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                if self.kind != "pulse":
                    return True
                sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                return sock.recv(64).startswith(b"HTTP/1.1 200")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                for pid in reversed(procstat.descendants(self.pid)):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                self.proc.wait(5)
        self._log.close()


# -- the C client ---------------------------------------------------------------------------
class Client:
    def __init__(self, binary: str, port: int, n: int, mode: str, tokens: str, cpus: str | None,
                 work: str, extra: tuple = ()) -> None:
        self.n = n
        self._err = open(os.path.join(work, f"client-{mode}-{n}.log"), "wb")
        self.proc = subprocess.Popen(
            pinned(cpus) + [binary, "--port", str(port), "--n", str(n), "--mode", mode,
                            "--tokens", tokens, "--channel", "dashboard",
                            "--connect-timeout", str(30 + n / 100)] + list(extra),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err, bufsize=0)
        self._buf = b""

    def read(self, timeout: float) -> dict:
        """The next JSON line from the client, within ``timeout`` seconds."""
        import select

        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(0.0, left))
            if not ready:
                raise TimeoutError(f"wsclient said nothing for {timeout:.0f}s")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError(f"wsclient exited ({self.proc.wait()})")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return json.loads(line)

    def command(self, text: str, timeout: float = 10.0) -> dict:
        self.send(text)
        return self.read(timeout)

    def send(self, text: str) -> None:
        self.proc.stdin.write(text.encode() + b"\n")

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send("quit")
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(5)
        self._err.close()


# -- one case -------------------------------------------------------------------------------
async def publish_window(client: Client, server: Server, pub: Publisher, n: int, count: int,
                         paced_rate: float | None, drain_timeout: float, seq: int,
                         concurrency: int = 1) -> dict:
    """Publish ``count`` items (back to back, or paced) and wait for N*count deliveries."""
    client.command("reset")
    cpu0 = procstat.CpuSample.take(server.pids)
    started = time.time()
    if paced_rate:
        await pub.paced(paced_rate, count / paced_rate, seq)
    else:
        await pub.burst(count, seq, concurrency)
    published = time.time()
    report = client.command(f"wait {n * count} {drain_timeout}", timeout=drain_timeout + 15)
    cpu = procstat.CpuSample.take(server.pids).since(cpu0)
    received = report["received"]
    span = (report["last_recv"] - started) if received else 0.0
    return {
        "broadcasts": count, "expected": n * count, "received": received,
        "delivered_fraction": round(received / (n * count), 6) if n * count else 0.0,
        "publish_s": round(published - started, 4), "span_s": round(span, 4),
        "deliveries_per_s": round(received / span) if span > 0 else 0,
        "lat_ms": report["lat_ms"], "server_cpu": cpu,
        "cpu_us_per_delivery": round(cpu["cpu_s"] / received * 1e6, 3) if received else None,
        "user_us_per_delivery": round(cpu["user_s"] / received * 1e6, 3) if received else None,
        "sys_us_per_delivery": round(cpu["sys_s"] / received * 1e6, 3) if received else None,
        "sched_us_per_delivery": round(cpu["sched_s"] / received * 1e6, 3) if received else None,
        "client_cpu_pct": report["cpu_pct"], "client_cpu_s": report["cpu_s"],
        "closed": report["closed"], "errors": report["errors"],
        "min_per_conn": report["min_per_conn"],
    }


def start_profile(args, server: Server, name: str, phase: str, seconds: float):
    """py-spy record the server during ``phase`` if asked to (raw collapsed stacks)."""
    if phase not in args.profile.split(","):
        return None
    py_spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    if not os.path.exists(py_spy):
        print("bench: py-spy not found (pip install py-spy); no profile", file=sys.stderr)
        return None
    target = server.pids[-1] if server.workers > 1 else server.pid
    out = os.path.join(args.out, f"profile-{name}-{phase}.txt")
    cmd = pinned(args.client_cpus) + [py_spy, "record", "--pid", str(target), "--rate",
                                      os.environ.get("BENCH_PY_SPY_RATE", "200"),
                                      "--duration", str(max(1, int(min(60, seconds) + 0.999))),
                                      "--format", "raw", "-o", out, "--nonblocking",
                                      *os.environ.get("BENCH_PY_SPY_EXTRA", "").split()]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.8)  # py-spy attaches
    return proc, out


def finish_profile(profiler, result: dict, phase: str) -> None:
    if profiler is None:
        return
    proc, out = profiler
    try:
        proc.wait(90)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    result.setdefault("profiles", {})[phase] = out


async def pg_create(admin_url: str) -> str:
    """A fresh PostgreSQL database for one case (``--postgres`` is the admin URL)."""
    import asyncpg
    from urllib.parse import urlsplit, urlunsplit

    name = f"pulse_bench_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    parts = urlsplit(admin_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


async def pg_drop(admin_url: str, url: str) -> None:
    import asyncpg

    name = url.rsplit("/", 1)[1].split("?")[0]
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def net_of_idle(result: dict) -> None:
    """Add each window's CPU per delivery *minus* the idle CPU rate over the same wall time:
    the marginal cost of fan-out, without the service's periodic jobs."""
    idle_rate = result["idle"]["cpu_s"] / result["idle"]["wall_s"]
    for phase in ("burst", "rate", "flood"):
        window = result.get(phase)
        if window and window["received"]:
            cpu = window["server_cpu"]
            net = max(0.0, cpu["cpu_s"] - idle_rate * cpu["wall_s"])
            window["net_cpu_us_per_delivery"] = round(net / window["received"] * 1e6, 3)


def settle(server: Server, minimum: float, timeout: float, quiet_pct: float = 10.0) -> dict:
    """Wait ``minimum`` seconds, then until the server's CPU over 0.5 s is below ``quiet_pct``.

    The ``subscribed`` ack reaches the client before the server has finished with that client
    (the dashboard snapshot is queried after the ack), so "all subscribed" is not yet "idle".
    """
    time.sleep(minimum)
    started = time.monotonic()
    while True:
        before = procstat.CpuSample.take(server.pids)
        time.sleep(0.5)
        pct = procstat.CpuSample.take(server.pids).since(before)["cpu_pct"]
        waited = time.monotonic() - started
        if pct < quiet_pct or waited > timeout:
            return {"waited_s": round(minimum + waited, 2), "last_cpu_pct": pct}


async def run_case(args, kind: str, mode: str, n: int, workers: int, binary: str,
                   tokens: str) -> dict:
    work = tempfile.mkdtemp(prefix="pulse-bench-", dir=args.out)
    port = free_port()
    prefix = f"pulse-bench:{uuid.uuid4().hex[:10]}:"
    cpus = args.server_cpus if workers == 1 else args.server_cpus_multi
    publish_mode = args.publish if kind == "pulse" else "raw"
    result: dict = {"server": kind, "transport": mode, "clients": n, "workers": workers,
                    "publish": publish_mode, "publish_concurrency": args.publish_concurrency,
                    "entry": {"pulse": args.pulse_entry, "node": "node_ws/server.js"}.get(
                        kind, "baseline_seed.py"),
                    "server_cpus": cpus, "client_cpus": args.client_cpus}
    name = f"{kind}-{mode}-{n}-w{workers}"
    print(f"== {name}: starting", file=sys.stderr, flush=True)
    database_url = await pg_create(args.postgres) if args.postgres and kind == "pulse" else None
    result["database"] = "postgresql" if database_url else "sqlite"
    server = Server(kind, port, workers, cpus, args.python, work, args.redis_url, prefix,
                    args.source_dir, args.pulse_entry, database_url)
    client = warm = None
    pub = Publisher(publish_mode, args.redis_url, prefix, port=port, api_key=API_KEY)
    try:
        server.wait_ready()
        # Record where the server really runs: a figure measured on a shared core is no figure.
        result["server_affinity"] = sorted(set().union(
            *(os.sched_getaffinity(pid) for pid in server.pids)))
        await pub.open()
        # Warm-up: first connections import and allocate what every later one shares.
        warm = Client(binary, port, min(20, n), mode, tokens, args.client_cpus, work)
        warm.read(60)
        await publish_window(warm, server, pub, warm.n, 2, None, 5, 0)
        warm.stop()
        warm = None
        time.sleep(1.0)
        rss_before = procstat.rss_kib(server.pids)

        profiler = start_profile(args, server, name, "connect", 5 + n / 150)
        connect0 = procstat.CpuSample.take(server.pids)
        client = Client(binary, port, n, mode, tokens, args.client_cpus, work,
                        ("--busy-poll",) if args.client_busy_poll else ())
        result["client_affinity"] = sorted(os.sched_getaffinity(client.proc.pid))
        ready = client.read(60 + n / 50)
        result["connect"] = ready
        connect_cpu = procstat.CpuSample.take(server.pids).since(connect0)
        result["connect"]["server_cpu"] = connect_cpu
        result["connect"]["server_cpu_ms_per_conn"] = round(
            connect_cpu["cpu_s"] / max(1, ready["connected"]) * 1e3, 3)
        finish_profile(profiler, result, "connect")
        if ready["connected"] < n:
            print(f"   connected {ready['connected']}/{n}: {ready['first_error']}", file=sys.stderr)
        n_target = n  # the flood size is chosen for the N asked for
        n = ready["connected"]  # deliveries are expected from those that connected
        server.check()
        result["settle"] = settle(server, args.settle_seconds, args.settle_timeout)
        rss_after = procstat.rss_kib(server.pids)
        result["rss_kib"] = {"before": rss_before, "after": rss_after}
        result["kb_per_conn"] = round((rss_after - rss_before) / max(1, ready["connected"]), 2)

        client.command("reset")
        profiler = start_profile(args, server, name, "idle", args.idle_seconds)
        idle0 = procstat.CpuSample.take(server.pids)
        time.sleep(args.idle_seconds)
        idle = procstat.CpuSample.take(server.pids).since(idle0)
        finish_profile(profiler, result, "idle")
        idle_client = client.command("report")
        result["idle"] = {**idle, "client_cpu_pct": idle_client["cpu_pct"]}
        print(f"   connected {ready['connected']} in {ready['connect_s']}s, "
              f"{result['kb_per_conn']} KB/conn, idle {idle['cpu_pct']}%", file=sys.stderr)

        server.check()
        seq = 1000
        profiler = start_profile(args, server, name, "burst", n * args.broadcasts * 40e-6 + 2)
        result["burst"] = await publish_window(client, server, pub, n, args.broadcasts, None,
                                               args.drain_timeout, seq, args.publish_concurrency)
        finish_profile(profiler, result, "burst")
        seq += args.broadcasts
        print(f"   burst: {result['burst']['cpu_us_per_delivery']} us/delivery, "
              f"{result['burst']['deliveries_per_s']}/s, "
              f"delivered {result['burst']['delivered_fraction']}", file=sys.stderr)
        await asyncio.sleep(0.5)
        server.check()
        if args.rate_seconds > 0:
            count = int(args.rate * args.rate_seconds)
            profiler = start_profile(args, server, name, "rate", args.rate_seconds + 1)
            result["rate"] = await publish_window(client, server, pub, n, count, args.rate,
                                                  args.drain_timeout, seq)
            finish_profile(profiler, result, "rate")
            seq += count
            print(f"   rate {args.rate}/s: p99 {result['rate']['lat_ms']['p99']} ms, "
                  f"delivered {result['rate']['delivered_fraction']}", file=sys.stderr)
            await asyncio.sleep(0.5)
        server.check()
        if args.flood_deliveries > 0:
            count = max(50, min(500, -(-args.flood_deliveries // n_target)))
            profiler = start_profile(args, server, name, "flood", n * count * 40e-6 + 2)
            result["flood"] = await publish_window(client, server, pub, n, count, None,
                                                   args.drain_timeout, seq,
                                                   args.publish_concurrency)
            finish_profile(profiler, result, "flood")
            print(f"   flood: {result['flood']['deliveries_per_s']}/s, "
                  f"{result['flood']['cpu_us_per_delivery']} us/delivery, "
                  f"delivered {result['flood']['delivered_fraction']}", file=sys.stderr)
        server.check()
        result["server_rss_end_kib"] = procstat.rss_kib(server.pids)
        net_of_idle(result)
    except Unavailable as exc:
        result["unavailable"] = str(exc)
        print(f"   unavailable: {exc}", file=sys.stderr)
    except Exception as exc:  # a failed case is recorded; the run goes on
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["server_log_tail"] = server.log_tail()
        print(f"   error: {result['error']}", file=sys.stderr)
    finally:
        for proc in (warm, client):
            if proc is not None:
                proc.stop()
        await pub.close()
        server.stop()
        if database_url:
            await pg_drop(args.postgres, database_url)
        if not args.keep_work:
            shutil.rmtree(work, ignore_errors=True)
        else:
            result["work_dir"] = work
    return result


# -- command line ---------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Pulse fan-out bench (see bench/README.md)")
    p.add_argument("--servers", default="pulse,baseline",
                   help="pulse,baseline,node (node: the Node ws peer, bench/node_ws)")
    p.add_argument("--transports", default="ws", help="ws,sse (only Pulse has SSE)")
    p.add_argument("--clients", default="1000", help="comma-separated N, e.g. 1000,5000,10000")
    p.add_argument("--sse-clients", default=None, help="N for SSE cases (default: --clients)")
    p.add_argument("--workers", default="1", help="comma-separated Pulse worker counts")
    p.add_argument("--publish", default="lua", choices=["lua", "raw", "api"],
                   help="Pulse publish path (the baseline and node always use raw)")
    p.add_argument("--broadcasts", type=int, default=50)
    p.add_argument("--publish-concurrency", type=int, default=8,
                   help="publishes in flight during burst and flood (api: always 1)")
    p.add_argument("--rate", type=float, default=10.0)
    p.add_argument("--rate-seconds", type=float, default=10.0)
    p.add_argument("--flood-deliveries", type=int, default=1_000_000)
    p.add_argument("--idle-seconds", type=float, default=10.0)
    p.add_argument("--settle-seconds", type=float, default=2.0)
    p.add_argument("--settle-timeout", type=float, default=60.0)
    p.add_argument("--drain-timeout", type=float, default=60.0)
    p.add_argument("--server-cpus", default="0")
    p.add_argument("--server-cpus-multi", default="0,1")
    p.add_argument("--client-cpus", default="1")
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    p.add_argument("--python", default=sys.executable, help="interpreter for the servers")
    p.add_argument("--postgres", default=None, metavar="ADMIN_URL",
                   help="run Pulse on a fresh PostgreSQL database per case (e.g. "
                        "postgresql://postgres@127.0.0.1:5432/test) instead of SQLite")
    p.add_argument("--pulse-entry", default="main", choices=["main", "module", "hypercorn"],
                   help="module: `python -m quart_app serve` exactly; main: its main() with "
                        "SIGPIPE left ignored (default, see README); hypercorn: Hypercorn's CLI "
                        "on quart_app:create_app() (for --workers > 1)")
    p.add_argument("--source", default="worktree",
                   help="Pulse code to run: 'worktree' (as is), a git revision (archived), or a "
                        "directory holding quart_app/ and sql/ (an experiment)")
    p.add_argument("--out", default=os.path.join(HERE, "out"))
    p.add_argument("--json", default=None, help="result file (default OUT/result-<stamp>.json)")
    p.add_argument("--profile", default="", help="py-spy these windows: idle,burst,rate,flood")
    p.add_argument("--keep-work", action="store_true")
    p.add_argument("--client-busy-poll", action="store_true",
                   help="the client never sleeps in epoll_wait (isolates wake-up cost)")
    p.add_argument("--lo-rps", default=None, metavar="MASK",
                   help="experiment (root): steer loopback receive processing to these CPUs "
                        "(hex mask into /sys/class/net/lo/queues/rx-0/rps_cpus, restored at "
                        "the end), so the clients' side of TCP is not charged to the server's "
                        "core; e.g. 2 = CPU 1, the client's")
    return p.parse_args(argv)


def machine() -> dict:
    model = ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next((line.split(":", 1)[1].strip() for line in out.splitlines()
                      if line.startswith("Model name")), "")
    except OSError:
        pass
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                             capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "quart_app"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
    except OSError:
        rev, dirty = "", ""
    return {"nproc": os.cpu_count(), "cpu_model": model, "python": platform.python_version(),
            "git": rev + (" (quart_app/ modified in the work tree)" if dirty else ""),
            "kernel": platform.release(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


async def main(argv=None) -> dict:
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    args.out = os.path.abspath(args.out)
    sizes = [int(x) for x in args.clients.split(",") if x]
    sse_sizes = [int(x) for x in (args.sse_clients or args.clients).split(",") if x]
    limit = raise_nofile(max(sizes + sse_sizes) * 2 + 1024)
    if limit < max(sizes + sse_sizes) + 512:
        raise SystemExit(f"bench: RLIMIT_NOFILE {limit} is too low for {max(sizes)} clients")
    if args.client_cpus and len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {int(c) for c in args.client_cpus.split(",")})  # publisher too
    binary = build_client(args.out)
    args.source_dir = snapshot(args.source, args.out)
    sys.path.insert(0, args.source_dir)  # the publisher's RedisBroker comes from the same code
    tokens = os.path.join(args.out, "tokens.txt")
    write_tokens(tokens, max(sizes + sse_sizes))
    cases = []
    with loopback_rps(args.lo_rps):
        for case in case_list(args, sizes, sse_sizes):
            cases.append(await run_case(args, *case, binary, tokens))
    result = {"machine": machine(), "source": args.source, "lo_rps": args.lo_rps,
              "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
              "cases": cases}
    path = args.json or os.path.join(
        args.out, f"result-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}.json")
    with open(path, "w") as fh:
        json.dump(result, fh, indent=2)
    print(markdown_table(result))
    print(f"\nwritten: {path}", file=sys.stderr)
    return result


RPS_PATH = "/sys/class/net/lo/queues/rx-0/rps_cpus"


@contextlib.contextmanager
def loopback_rps(mask: str | None):
    """Set loopback RPS for the run and put the old value back, whatever happens."""
    if mask is None:
        yield
        return
    with open(RPS_PATH) as fh:
        old = fh.read().strip()
    with open(RPS_PATH, "w") as fh:
        fh.write(mask)
    print(f"bench: loopback RPS {old} -> {mask}", file=sys.stderr)
    try:
        yield
    finally:
        with open(RPS_PATH, "w") as fh:
            fh.write(old)


def case_list(args, sizes, sse_sizes) -> list[tuple]:
    cases = []
    for kind in args.servers.split(","):
        for mode in args.transports.split(","):
            if kind != "pulse" and mode == "sse":
                continue
            for n in (sse_sizes if mode == "sse" else sizes):
                for workers in ([int(w) for w in args.workers.split(",")]
                                if kind == "pulse" else [1]):
                    cases.append((kind, mode, n, workers))
    return cases


if __name__ == "__main__":
    asyncio.run(main())
