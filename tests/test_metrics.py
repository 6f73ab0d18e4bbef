"""realtime/metrics.py: the prometheus_client exposition over the hot-path counters, labels by
transport, and one answer for every worker process (issue 14)."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import httpx
from prometheus_client.parser import text_string_to_metric_families

from quart_app.realtime.auth import mint_token
from quart_app.realtime.auth import Principal
from quart_app.realtime.broker_memory import MemoryBroker
from quart_app.realtime.hub import Connection, Hub
from quart_app.realtime.metrics import Metrics
from quart_app.realtime.outbox import Outbox

from .conftest import API_KEY, SECRET, free_port
from .processes import pulse_process


def samples(text: str) -> dict:
    """{(name, frozenset(labels)): value} of a text exposition; parsing it checks the format."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _conn(user: int, transport: str) -> Connection:
    return Connection(Principal(user_id=user, expires_at=4e9), Outbox(10, lambda: None), transport)


def test_exposition_has_pulse_process_and_transport_labels():
    metrics = Metrics()
    metrics.messages_out += 3
    hub = Hub(MemoryBroker(), metrics)
    conns = [_conn(1, "ws"), _conn(2, "sse"), _conn(3, "ws"), _conn(3, "sse")]
    for conn in conns:
        hub.connect(conn)
    hub.disconnect(conns[2])
    hub.disconnect(conns[2])  # twice: counted once
    metrics.delivery_latency.observe(0.002, times=2)
    metrics.gauge("connections", "Open client connections, by transport",
                  hub.count_by_transport, label="transport")
    found = samples(metrics.render())
    assert found[("pulse_messages_out_total", frozenset())] == 3
    assert found[("pulse_connections_accepted_total", frozenset({("transport", "ws")}))] == 2
    assert found[("pulse_connections", frozenset({("transport", "sse")}))] == 2
    assert found[("pulse_connections", frozenset({("transport", "ws")}))] == 1
    assert found[("pulse_delivery_latency_seconds_bucket", frozenset({("le", "0.0025")}))] == 2
    assert found[("pulse_delivery_latency_seconds_count", frozenset())] == 2
    assert found[("pulse_workers", frozenset())] == 1
    assert any(name.startswith("process_") for name, _ in found)
    assert metrics.connections_accepted == 4


def test_shared_directory_sums_workers_and_drops_dead_gauges(tmp_path):
    metrics = Metrics()
    metrics.gauge("connections", "Open", lambda: {"ws": 1, "sse": 0}, label="transport")
    metrics.share(tmp_path)
    metrics.ingested_events = 2
    other = Metrics()
    other.gauge("connections", "Open", lambda: {"ws": 5, "sse": 1}, label="transport")
    other.ingested_events = 3
    other.count_accepted("sse")
    live = other.snapshot() | {"pid": os.getppid()}      # a live process that is not us
    dead = other.snapshot() | {"pid": _dead_pid()}        # a worker that has exited
    (tmp_path / "pulse_1.json").write_text(json.dumps(live))
    (tmp_path / "pulse_2.json").write_text(json.dumps(dead))
    (tmp_path / "pulse_3.json").write_text("{half a fi")  # being replaced: skipped
    found = samples(metrics.render())
    assert found[("pulse_ingested_events_total", frozenset())] == 2 + 3 + 3  # counters: all
    assert found[("pulse_connections_accepted_total", frozenset({("transport", "sse")}))] == 2
    assert found[("pulse_connections", frozenset({("transport", "ws")}))] == 1 + 5  # live only
    assert found[("pulse_workers", frozenset())] == 2
    metrics.write_snapshot()
    assert json.loads((tmp_path / f"pulse_{os.getpid()}.json").read_text())["pid"] == os.getpid()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


async def test_metrics_endpoint_is_prometheus_text(client):
    response = await client.get("/metrics")
    assert response.status_code == 200
    found = samples(await response.get_data(as_text=True))
    assert ("pulse_connections", frozenset({("transport", "ws")})) in found
    assert ("pulse_connections", frozenset({("transport", "sse")})) in found


async def test_two_workers_answer_one_total(tmp_path):
    """``serve --workers 2``: whichever worker a scrape reaches reports both workers' counts."""
    port = free_port()
    env = {"JWT_SECRET": SECRET, "PULSE_API_KEY": API_KEY,
           "DATABASE_URL": f"sqlite:///{tmp_path}/pulse.db"}
    token = mint_token(SECRET, 1)
    requests = 12
    async with pulse_process(port, env, args=("--workers", "2")):
        for _ in range(requests):  # a new connection each time: the kernel spreads them
            async with httpx.AsyncClient(timeout=5) as http:
                response = await http.get(f"http://127.0.0.1:{port}/history",
                                          params={"channel": "mining", "token": token})
                assert response.status_code == 200
        expected = (requests, 2)
        for _ in range(100):  # snapshots are written every second; a bounded wait
            if await _scrape(port) == expected:
                break
            await asyncio.sleep(0.1)
        # One scrape saw the total; once every worker has written a snapshot since (they do
        # every second) every scrape, whichever worker answers it, reports the same totals.
        await asyncio.sleep(1.5)
        assert [await _scrape(port) for _ in range(6)] == [expected] * 6


async def _scrape(port: int) -> tuple[float, float]:
    async with httpx.AsyncClient(timeout=5) as http:
        found = samples((await http.get(f"http://127.0.0.1:{port}/metrics")).text)
    return found[("pulse_poll_requests_total", frozenset())], found[("pulse_workers", frozenset())]
