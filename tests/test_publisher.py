"""quart_app.publisher against a real server (and real Redis): the sync and async HTTP publishers,
their retries (a lost answer, a stalled reply, a refused connection) publishing exactly once,
RedisPublisher delivering to a server's subscribers, and ``python -m quart_app publish``."""
from __future__ import annotations

import asyncio
import json
import os
import sys

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from quart_app.publisher import (AsyncPublisher, Publisher, PublishError, RedisPublisher, many,
                                 one)

from .conftest import API_KEY, ws_client
from .proxy import TcpProxy

SCORE = {"type": "score.updated", "user": "ada", "wpm": 97.5}
AGENT = {"type": "agent_status", "agent": "a-7", "status": "running"}


def svc_of(app):
    return app.extensions["pulse"]


async def offset(app, channel: str, user: int | None = None) -> int:
    return (await svc_of(app).broker.latest(channel, user=user))[0]


async def test_the_sync_publisher_publishes_broadcasts_and_batches(live_server):
    address, app = live_server

    def produce():
        with Publisher(f"http://{address}", API_KEY) as publisher:
            single = publisher.publish("leaderboard:typing_wpm", SCORE)
            both = publisher.broadcast(["project:p1:events", "leaderboard:typing_wpm"], AGENT)
            batch = publisher.batch([one("session:s1:live", SCORE), one("bad channel", SCORE)])
            with pytest.raises(PublishError) as refused:
                publisher.publish("leaderboard:typing_wpm", {"no": "type"})
            return single, both, batch, refused.value

    single, both, batch, refused = await asyncio.to_thread(produce)  # the server is in this loop
    assert single == {"channel": "leaderboard:typing_wpm", "offset": 1,
                      "published": [{"channel": "leaderboard:typing_wpm", "offset": 1}]}
    assert both == {"published": [{"channel": "project:p1:events", "offset": 1},
                                  {"channel": "leaderboard:typing_wpm", "offset": 2}]}
    assert [r["status"] for r in batch["results"]] == [202, 422]
    assert refused.status == 422 and "'data.type'" in refused.detail
    assert await offset(app, "leaderboard:typing_wpm") == 2


async def test_the_async_publisher_and_its_refusals(live_server):
    address, app = live_server
    async with AsyncPublisher(f"http://{address}", API_KEY) as publisher:
        assert (await publisher.publish("project:p1:events", AGENT))["offset"] == 1
        answer = await publisher.batch([many(["project:p1:events", "activity:feed"], AGENT),
                                        one("session:s1:live", SCORE)])
        assert [r["status"] for r in answer["results"]] == [202, 202]
        with pytest.raises(PublishError) as none_ok:
            await publisher.batch([one("nope!", SCORE)])
        assert none_ok.value.status == 422
        assert none_ok.value.answer["results"][0]["status"] == 422
        # The same key twice: the second answer is the first one, nothing goes out again.
        first = await publisher.publish("competition", SCORE, idempotency_key="k-1")
        assert await publisher.publish("competition", SCORE, idempotency_key="k-1") == first
        with pytest.raises(PublishError) as reused:
            await publisher.publish("competition", AGENT, idempotency_key="k-1")
        assert reused.value.detail == "Idempotency-Key reused with a different body"
    async with AsyncPublisher(f"http://{address}", "wrong-key") as publisher:
        with pytest.raises(PublishError) as unauthorized:
            await publisher.publish("competition", SCORE)
        assert unauthorized.value.status == 401
    assert await offset(app, "project:p1:events") == 2
    assert await offset(app, "competition") == 1


async def test_a_retry_after_a_lost_answer_publishes_once(live_server, monkeypatch):
    """The server publishes, then answers 503 (the broker call failed after the script ran):
    the publisher retries with the same key and gets the first offset back."""
    address, app = live_server
    svc = svc_of(app)
    real, failures = svc.publish, []

    async def publish_then_fail(channel, data, **kwargs):
        publication = await real(channel, data, **kwargs)
        if not failures:
            failures.append(kwargs.get("publication_id"))
            raise RedisConnectionError("reply lost")
        return publication

    monkeypatch.setattr(svc, "publish", publish_then_fail)
    async with AsyncPublisher(f"http://{address}", API_KEY) as publisher:
        answer = await publisher.publish("leaderboard:typing_wpm", SCORE)
    assert failures and failures[0] is not None   # the first attempt carried a key
    assert answer["offset"] == 1
    assert await offset(app, "leaderboard:typing_wpm") == 1


async def test_a_retry_after_a_timeout_publishes_once(live_server):
    address, app = live_server
    host, port = address.split(":")
    proxy = await TcpProxy(host, int(port)).start()
    try:
        proxy.stall_next_reply = 1.5  # the server published; its answer arrives too late
        with Publisher(f"http://127.0.0.1:{proxy.port}", API_KEY, timeout=0.5) as publisher:
            answer = await asyncio.to_thread(publisher.publish, "session:s1:live", SCORE)
        assert answer["offset"] == 1
        assert await offset(app, "session:s1:live") == 1
    finally:
        await proxy.close()


async def test_a_refused_connection_is_retried(live_server):
    address, app = live_server
    host, port = address.split(":")
    proxy = await TcpProxy(host, int(port)).start()
    try:
        proxy.cut()
        asyncio.get_running_loop().call_later(0.15, proxy.restore)
        async with AsyncPublisher(f"http://127.0.0.1:{proxy.port}", API_KEY,
                                  retries=10) as publisher:
            answer = await publisher.publish("session:s1:live", SCORE)
        assert answer["offset"] == 1
    finally:
        await proxy.close()
    with pytest.raises(PublishError) as unreachable:
        async with AsyncPublisher(f"http://127.0.0.1:{proxy.port}", API_KEY,
                                  retries=1) as publisher:
            await publisher.publish("session:s1:live", SCORE)
    assert unreachable.value.status is None and "unreachable" in unreachable.value.detail
    assert await offset(app, "session:s1:live") == 1


@pytest.mark.integration
async def test_the_redis_publisher_reaches_a_servers_subscribers(redis_server, redis_url,
                                                                redis_prefix, token):
    address, app = redis_server
    async with ws_client(address, token(7)) as ws:
        assert (await ws.subscribe("leaderboard:typing_wpm"))["type"] == "subscribed"
        assert (await ws.subscribe("gamification"))["type"] == "subscribed"
        async with RedisPublisher(redis_url, redis_prefix) as publisher:
            answer = await publisher.publish("leaderboard:typing_wpm", SCORE,
                                             idempotency_key="r-1")
            assert answer["offset"] == 1
            frame = await ws.recv_until(lambda f: f.get("channel") == "leaderboard:typing_wpm")
            assert frame == {"channel": "leaderboard:typing_wpm", "data": SCORE, "offset": 1}
            # A repeat with the key publishes nothing; a user-targeted one goes to its user.
            assert await publisher.publish("leaderboard:typing_wpm", SCORE,
                                           idempotency_key="r-1") == answer
            quest = {"type": "quest.done", "user_id": 7}
            await publisher.publish("gamification", quest)
            frame = await ws.recv_until(lambda f: f.get("channel") == "gamification")
            assert frame == {"channel": "gamification", "data": quest, "offset": 1,
                             "user_offset": 1}
            with pytest.raises(PublishError) as refused:
                await publisher.publish("no such channel", SCORE)
            assert refused.value.status == 422
            batch = await publisher.batch([one("session:s1:live", SCORE), one("x!", SCORE)])
            assert [r["status"] for r in batch["results"]] == [202, 422]
    assert await offset(app, "leaderboard:typing_wpm") == 1
    assert await offset(app, "gamification", user=7) == 1
    assert await offset(app, "gamification") == 0
    history = await svc_of(app).broker.history("leaderboard:typing_wpm", 0)
    assert [p.data for p in history.publications] == [SCORE]


async def run_cli(*args: str, **env: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "quart_app", "publish", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **env})
    out, err = await asyncio.wait_for(process.communicate(), 30)
    return process.returncode, out.decode(), err.decode()


async def test_the_cli_publishes_and_reports_refusals(live_server):
    address, app = live_server
    url = f"http://{address}"
    code, out, err = await run_cli("project:p1:events", json.dumps(AGENT), "--url", url,
                                   PULSE_API_KEY=API_KEY)
    assert code == 0, err
    assert json.loads(out) == {"channel": "project:p1:events", "offset": 1,
                               "published": [{"channel": "project:p1:events", "offset": 1}]}
    code, out, err = await run_cli("nope!", json.dumps(AGENT), "--url", url, "--api-key", API_KEY)
    assert code == 1 and out == ""
    assert "422" in err and "Invalid channel in 'channel': nope!" in err
    code, out, err = await run_cli("competition", "{bad", "--url", url, "--api-key", API_KEY)
    assert code == 1 and "not valid JSON" in err
    code, _out, err = await run_cli("competition", json.dumps(SCORE), "--url", url,
                                    "--api-key", "wrong")
    assert code == 1 and "401" in err and "X-API-Key" in err
    assert await offset(app, "project:p1:events") == 1
    assert await offset(app, "competition") == 0
