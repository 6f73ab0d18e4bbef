"""Faults, shutdown and several processes (DESIGN §8, §10), with real child processes."""
import asyncio
import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
import websockets

from quart_app.realtime.auth import mint_token
from quart_app.realtime.broker_redis import RedisBroker

from .conftest import API_KEY, SECRET, free_port, require_service
from .processes import ROOT, PrivateRedis, child_env, pulse_process, wait_exit, wait_healthy

pytestmark = pytest.mark.integration


def server_env(tmp_path, redis_url=None, prefix=None, **extra):
    env = {"JWT_SECRET": SECRET, "PULSE_API_KEY": API_KEY,
           "DATABASE_URL": f"sqlite:///{tmp_path}/pulse.db", "PULSE_UVLOOP": "1"}
    if redis_url:
        env["REDIS_URL"] = redis_url
        env["PULSE_REDIS_PREFIX"] = prefix or f"pulse-test:{uuid.uuid4().hex[:12]}:"
    env.update(extra)
    return env


async def recv_json(ws, timeout=5.0):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def subscribe(ws, channel, since=None):
    frame = {"action": "subscribe", "channel": channel}
    if since is not None:
        frame["since"] = since
    await ws.send(json.dumps(frame))
    while True:
        reply = await recv_json(ws)
        if reply.get("type") in ("subscribed", "error"):
            return reply


async def test_sigterm_closes_ws_1012_ends_sse_and_exits(tmp_path):
    port = free_port()
    token = mint_token(SECRET, 1)
    async with pulse_process(port, server_env(tmp_path)) as proc:
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws?token={token}") as ws, \
                httpx.AsyncClient(timeout=10) as http:
            await subscribe(ws, "mining")
            async with http.stream("GET", f"http://127.0.0.1:{port}/sse?channels=mining"
                                          f"&token={token}") as stream:
                lines = stream.aiter_lines()
                assert (await asyncio.wait_for(lines.__anext__(), 5)).startswith("retry:")
                proc.send_signal(signal.SIGTERM)
                # A client arriving now is sent away before any work (never opened, then 1012).
                await asyncio.sleep(0.2)
                try:
                    async with websockets.connect(f"ws://127.0.0.1:{port}/ws?token={token}"):
                        raise AssertionError("a new WebSocket opened on a stopping server")
                except websockets.InvalidStatus as refused:
                    assert refused.response.status_code == 503
                    assert refused.response.headers["retry-after"] == "1"
                except OSError:
                    pass  # the listener had already closed
                with pytest.raises(websockets.ConnectionClosed) as info:
                    await asyncio.wait_for(ws.recv(), 5)
                assert info.value.rcvd.code == 1012
                async def drain():
                    async for _ in lines:
                        pass
                await asyncio.wait_for(drain(), 5)  # the SSE stream ended
        assert await wait_exit(proc, 10) < 10
        assert proc.returncode == 0


async def test_clean_stop_runs_exit_handlers_and_flushes_its_last_lines(tmp_path):
    """A worker that stopped cleanly leaves without the interpreter's teardown (server.leave),
    yet the exit handlers an embedding program registered run, and the server's last log lines
    (the database closed, after the 1012s) reach its output."""
    port = free_port()
    program = ("import atexit, sys\n"
               "atexit.register(lambda: print('embedder exit handler ran'))\n"
               "from quart_app.__main__ import main\n"
               f"sys.exit(main(['serve', '--port', '{port}']))\n")
    env = child_env(server_env(tmp_path))
    env.pop("PYTHONUNBUFFERED", None)  # buffered output into a pipe: leave() must flush it
    proc = subprocess.Popen([sys.executable, "-c", program], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        await wait_healthy(f"http://127.0.0.1:{port}", proc)
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.get_running_loop().run_in_executor(None, proc.communicate, None, 15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = out.decode()
    assert proc.returncode == 0, text[-2000:]
    assert "shutdown: closing client connections (1012)" in text
    assert "Disconnected from database" in text
    assert text.rstrip().endswith("embedder exit handler ran"), text[-500:]


async def test_two_workers_stop_cleanly_with_status_0(tmp_path):
    """Each worker leaves by server.leave(0) after a clean stop; the parent, which waits for
    them and answers with their first non-zero status, then exits with 0."""
    port = free_port()
    async with pulse_process(port, server_env(tmp_path), args=("--workers", "2")) as proc:
        async with websockets.connect(
                f"ws://127.0.0.1:{port}/ws?token={mint_token(SECRET, 1)}") as ws:
            await subscribe(ws, "mining")
            proc.send_signal(signal.SIGTERM)
            with pytest.raises(websockets.ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), 5)
            assert info.value.rcvd.code == 1012
        assert await wait_exit(proc, 10) < 10
        assert proc.returncode == 0


async def test_two_workers_stopped_while_starting_exit_with_status_0(tmp_path):
    """SIGTERM while the workers are still importing (before their handlers are in place) ends
    them by the signal; the parent forwarded it, so that is a stop asked for, not a failure."""
    env = child_env(server_env(tmp_path))
    proc = subprocess.Popen([sys.executable, "-m", "quart_app", "serve", "--port",
                             str(free_port()), "--workers", "2"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        deadline = time.monotonic() + 15
        while len(children.read_text().split()) < 2:  # both spawned, neither ready yet
            assert proc.poll() is None and time.monotonic() < deadline
            await asyncio.sleep(0.005)
        proc.send_signal(signal.SIGTERM)
        assert await wait_exit(proc, 15) < 15
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_leave_waits_for_a_running_thread():
    """With a non-daemon thread still at work, leave() returns and the interpreter's usual exit
    waits for the thread; without one, it ends the process at once with the code given."""
    program = ("import sys, threading, time\n"
               "from quart_app.server import leave\n"
               "t = threading.Thread(target=lambda: (time.sleep(0.5), print('thread done', flush=True)))\n"
               "t.start()\n"
               "leave(3)\n"
               "print('leave returned', flush=True)\n"
               "t.join()\n"
               "leave(4)\n"
               "print('not reached', flush=True)\n")
    done = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True,
                          text=True, timeout=30)
    assert done.stdout.split() == ["leave", "returned", "thread", "done"], done.stderr
    assert done.returncode == 4


async def test_two_instances_stop_one_clients_move_with_nothing_lost(tmp_path, redis_url):
    prefix = f"pulse-test:{uuid.uuid4().hex[:12]}:"
    port_a, port_b = free_port(), free_port()
    token = mint_token(SECRET, 1)
    producer = RedisBroker(redis_url, prefix)
    await producer.connect()
    received: list[int] = []
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    try:
        async with pulse_process(port_b, server_env(tmp_path / "b", redis_url, prefix)):
            async with pulse_process(port_a, server_env(tmp_path / "a", redis_url, prefix)) as a:
                stop = asyncio.Event()

                async def produce():
                    i = 0
                    while not stop.is_set():
                        await producer.publish("competition", {"type": "match_update", "i": i})
                        i += 1
                        await asyncio.sleep(0.005)

                async with websockets.connect(f"ws://127.0.0.1:{port_a}/ws?token={token}") as ws:
                    await subscribe(ws, "competition")
                    # Only now: a publication before the subscribe would not be the client's.
                    producing = asyncio.ensure_future(produce())
                    a.send_signal(signal.SIGTERM)
                    try:
                        while True:
                            frame = await recv_json(ws)
                            if "offset" in frame and "data" in frame:
                                received.append(frame["offset"])
                    except websockets.ConnectionClosed as closed:
                        assert closed.rcvd.code == 1012
                await asyncio.sleep(0.3)  # keep publishing while the client is away
                async with websockets.connect(f"ws://127.0.0.1:{port_b}/ws?token={token}") as ws:
                    since = received[-1] if received else 0
                    await ws.send(json.dumps({"action": "subscribe", "channel": "competition",
                                              "since": since}))
                    while True:
                        frame = await recv_json(ws)
                        if frame.get("type") == "subscribed":
                            assert frame["recovered"] is True
                            break
                        received.append(frame["offset"])
                    stop.set()
                    await producing
                    last = await producer.latest_offset("competition")
                    while received[-1] < last:
                        received.append((await recv_json(ws))["offset"])
        assert received[0] == 1 and received == list(range(1, last + 1))
        assert last > 20  # publications flowed before, during and after the move
    finally:
        await producer.close()


async def test_two_workers_deliver_exactly_once(tmp_path, redis_url):
    prefix = f"pulse-test:{uuid.uuid4().hex[:12]}:"
    port = free_port()
    producer = RedisBroker(redis_url, prefix)
    await producer.connect()
    try:
        async with pulse_process(port, server_env(tmp_path, redis_url, prefix),
                                 args=("--workers", "2")):
            sockets = [await websockets.connect(
                f"ws://127.0.0.1:{port}/ws?token={mint_token(SECRET, i + 1)}") for i in range(8)]
            try:
                for ws in sockets:
                    await subscribe(ws, "activity:feed")
                for i in range(30):
                    await producer.publish("activity:feed", {"type": "feed_item", "i": i})
                for ws in sockets:
                    got = [(await recv_json(ws))["data"]["i"] for _ in range(30)]
                    assert got == list(range(30))
                    with pytest.raises(asyncio.TimeoutError):
                        await asyncio.wait_for(ws.recv(), 0.3)
            finally:
                for ws in sockets:
                    await ws.close()
    finally:
        await producer.close()


async def test_redis_restart_process_survives_and_clients_recover(tmp_path):
    if not PrivateRedis.available():
        require_service("redis-server binary", "redis://127.0.0.1:1", 1)
    redis_port = free_port()
    private = PrivateRedis(redis_port, tmp_path)
    await private.start()
    port = free_port()
    url = f"redis://127.0.0.1:{redis_port}/0"
    token = mint_token(SECRET, 1)
    try:
        async with pulse_process(port, server_env(tmp_path, url)) as proc, \
                httpx.AsyncClient(timeout=5) as http:
            async with websockets.connect(f"ws://127.0.0.1:{port}/ws?token={token}") as ws:
                await subscribe(ws, "competition")
                headers = {"X-API-Key": API_KEY}
                body = {"type": "match_update", "data": {"round": 1}}
                assert (await http.post(f"http://127.0.0.1:{port}/api/events", json=body,
                                        headers=headers)).status_code == 202
                assert (await recv_json(ws))["offset"] == 1
                await private.stop()
                await asyncio.sleep(0.5)
                assert (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
                assert (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 503
                failed = await http.post(f"http://127.0.0.1:{port}/api/events", json=body,
                                         headers=headers)
                assert failed.status_code == 503 and failed.json()["detail"]
                await private.start()  # a restarted Redis: empty, offsets start again
                for _ in range(100):
                    if (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                        break
                    await asyncio.sleep(0.1)
                # the client is told to recover (4010): history cannot cover the outage
                with pytest.raises(websockets.ConnectionClosed) as info:
                    while True:
                        await recv_json(ws, 10)
                assert info.value.rcvd.code == 4010
            async with websockets.connect(f"ws://127.0.0.1:{port}/ws?token={token}") as ws:
                ack = await subscribe(ws, "competition", since=1)
                assert ack["recovered"] is False  # refetch the snapshot, continue from ack
                assert (await http.post(f"http://127.0.0.1:{port}/api/events", json=body,
                                        headers=headers)).status_code == 202
                frame = await recv_json(ws)
                assert frame["offset"] == ack["offset"] + 1
            assert proc.poll() is None
    finally:
        await private.stop()


async def test_garbage_on_redis_channels_is_skipped(tmp_path, redis_url):
    prefix = f"pulse-test:{uuid.uuid4().hex[:12]}:"
    port = free_port()
    redis = aioredis.Redis.from_url(redis_url)
    token = mint_token(SECRET, 1)
    try:
        async with pulse_process(port, server_env(tmp_path, redis_url, prefix)) as proc:
            async with websockets.connect(f"ws://127.0.0.1:{port}/ws?token={token}") as ws:
                await subscribe(ws, "mining")
                for junk in (b"\xff\x00", b"no newline", b"1.0\n{broken", b"1.0\n[]", b""):
                    await redis.publish(f"{prefix}ch:mining", junk)
                    await redis.publish("pubsub:share_submitted", junk)
                await redis.publish("pubsub:share_submitted", json.dumps({"ok": 1}))
                frame = await recv_json(ws)
                assert frame == {"channel": "mining", "data": {"type": "share_submitted", "ok": 1}}
            assert proc.poll() is None
    finally:
        await redis.aclose()


async def test_ingest_burst_zero_loss_counted_by_offsets(tmp_path, redis_url, pg_url):
    """A burst through POST /api/events, production pair (PostgreSQL + Redis), zero loss.

    Offered at up to 1,000 events/s; the rate reached is printed (bench/ holds the 30 s run).
    """
    port = free_port()
    token = mint_token(SECRET, 1)
    total, rate = 3000, 1000
    async with pulse_process(port, server_env(tmp_path, redis_url, DATABASE_URL=pg_url)):
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws?token={token}",
                                      max_queue=None) as ws, \
                httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_connections=20)) as http:
            await subscribe(ws, "competition")
            received: list[int] = []

            async def receive():
                while len(received) < total:
                    frame = await recv_json(ws, 10)
                    if "offset" in frame:
                        received.append(frame["offset"])

            receiver = asyncio.ensure_future(receive())
            started = time.monotonic()
            statuses = []

            async def post(i):
                response = await http.post(f"http://127.0.0.1:{port}/api/events",
                                           headers={"X-API-Key": API_KEY},
                                           json={"type": "match_update", "data": {"i": i}})
                statuses.append(response.status_code)

            batch = 50
            for start in range(0, total, batch):
                await asyncio.gather(*[post(i) for i in range(start, start + batch)])
                ahead = (start + batch) / rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            await asyncio.wait_for(receiver, 20)
            elapsed = time.monotonic() - started
            print(f"\n{total} events in {elapsed:.1f}s ({total / elapsed:.0f}/s), all delivered")
            assert statuses.count(202) == total
            assert sorted(received) == received == list(range(1, total + 1))


async def test_tokens_never_reach_the_logs(tmp_path):
    port = free_port()
    token = mint_token(SECRET, 1)
    log_path = tmp_path / "server.log"
    env = dict(server_env(tmp_path), PULSE_LOG_LEVEL="debug")  # per-connection lines are DEBUG
    async with pulse_process(port, env, log_path=log_path):
        async with httpx.AsyncClient(timeout=5) as http:
            await http.get(f"http://127.0.0.1:{port}/history?channel=mining&token={token}")
            await http.get(f"http://127.0.0.1:{port}/dashboard/stats",
                           headers={"Authorization": f"Bearer {token}"})
            async with websockets.connect(f"ws://127.0.0.1:{port}/ws?token={token}") as ws:
                await ws.send(json.dumps({"action": "auth", "token": token}))
                await recv_json(ws)
            async with websockets.connect(f"ws://127.0.0.1:{port}/ws?token=not.a.valid-token"):
                pass
            metrics = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
            assert 'pulse_connections_accepted_total{transport="ws"} 1.0\n' in metrics, metrics
            assert "pulse_auth_failures_total 1.0\n" in metrics
    text = log_path.read_text()
    assert "/history" in text and "[redacted]" in text
    assert token not in text and "not.a.valid-token" not in text
    assert token.split(".")[2] not in text
    # Both upgrades were served by the direct endpoint and still have their access lines.
    upgrades = [line for line in (json.loads(raw) for raw in text.splitlines()
                                  if raw.startswith("{"))
                if line.get("logger") == "pulse.access" and line["path"].startswith("/ws")]
    assert len(upgrades) == 2, upgrades
    assert all(line["path"] == "/ws?token=[redacted]" and line["status"] == 101
               and line["method"] == "GET" and line["peer"] for line in upgrades), upgrades
    json_lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert any(line.get("conn_id") for line in json_lines)  # structured, with a connection id
