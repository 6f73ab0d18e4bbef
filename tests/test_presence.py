"""Presence per namespace and cluster-wide stats (docs/namespaces.md, docs/protocol.md §16,
docs/operations.md "Cluster stats and presence"): on the in-process broker and on a real Redis,
and across two real server processes on one Redis, one of them killed."""
from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from dataclasses import replace

import httpx
import pytest

from quart_app.config import load_settings
from quart_app.errors import ConfigError
from quart_app.dashboard import channels
from quart_app.realtime import namespaces
from quart_app.realtime.auth import mint_token

from .conftest import (API_KEY, REDIS_URL, SECRET, free_port, make_settings, require_service,
                       running_app, serve_app, ws_client)
from .processes import pulse_process

NAMESPACES = """
[namespaces.race]
pattern = "race:{race}"
presence = true
join_leave = true

[namespaces.team]
pattern = "team:{team}:room"
subscribe = "member:team:projects"
presence = true

[namespaces.quiet]
pattern = "quiet:{id}"
presence = true
"""
ADMIN = {"X-API-Key": API_KEY}


@pytest.fixture(autouse=True)
def builtin_table():
    yield
    namespaces.install(namespaces.Registry(channels.NAMESPACES))


@pytest.fixture
def namespaces_file(tmp_path):
    path = tmp_path / "namespaces.toml"
    path.write_text(NAMESPACES)
    return str(path)


@pytest.fixture(params=["memory", "redis"])
def presence_settings(request, tmp_path, namespaces_file):
    redis_url = None
    if request.param == "redis":
        require_service("Redis", REDIS_URL, 6379)
        redis_url = REDIS_URL
    settings = make_settings(f"sqlite:///{tmp_path}/pulse.db", redis_url,
                             f"pulse-test:{uuid.uuid4().hex[:12]}:")
    return replace(settings, namespaces_file=namespaces_file)


def token(user_id: int, **kwargs) -> str:
    return mint_token(SECRET, user_id, **kwargs)


async def get(http, base, path, user=99, **params):
    return await http.get(f"http://{base}{path}", params={**params, "token": token(user)})


async def users_present(http, base, channel, user=99) -> list[int]:
    answer = await get(http, base, "/presence", user, channel=channel)
    assert answer.status_code == 200, answer.text
    return sorted(c["user"] for c in answer.json()["clients"])


async def next_data(ws, timeout=3.0) -> dict:
    """The next publication's data (control frames skipped)."""
    frame = await ws.recv_until(lambda f: "data" in f, timeout)
    return frame["data"]


# -- the namespace options --------------------------------------------------------------------
def test_presence_options_in_the_file_and_the_builtin_type(namespaces_file, tmp_path):
    registry = namespaces.load_file(namespaces_file)
    race = registry.find("race:r1")[0]
    assert (race.presence, race.join_leave) == (True, True)
    quiet = registry.find("quiet:q")[0]
    assert (quiet.presence, quiet.join_leave) == (True, False)
    assert not any(ns.presence or ns.join_leave for ns in channels.NAMESPACES)
    namespaces.install(registry)
    assert namespaces.presence_of("race:r1") is race
    assert namespaces.presence_of("mining") is None and namespaces.presence_of("nope") is None
    with pytest.raises(namespaces.NamespaceError, match="needs 'presence'"):
        namespaces.Namespace("x", "x:{id}", join_leave=True)
    for text, problem in (("presence = 'yes'", "'presence' must be true or false"),
                          ("join_leave = true", "'join_leave' = true needs 'presence' = true")):
        bad = tmp_path / "bad.toml"
        bad.write_text(f"[namespaces.x]\npattern = 'x:{{id}}'\n{text}\n")
        with pytest.raises(ConfigError) as caught:
            load_settings({"PULSE_NAMESPACES": str(bad)})
        assert problem in caught.value.detail and "namespace 'x'" in caught.value.detail


# -- one server, either broker ----------------------------------------------------------------
async def test_presence_lists_counts_and_announces(presence_settings):
    async with serve_app(presence_settings) as (base, app), httpx.AsyncClient(timeout=5) as http:
        async with ws_client(base, token(9)) as watcher:
            assert (await watcher.subscribe("race:r1"))["type"] == "subscribed"
            assert await next_data(watcher) == {"type": "join", "user": 9}  # its own, too
            async with ws_client(base, token(1)) as one, ws_client(base, token(1)) as tab, \
                    ws_client(base, token(2)) as two:
                await one.subscribe("race:r1")
                assert await next_data(watcher) == {"type": "join", "user": 1}
                await tab.subscribe("race:r1")            # user 1 again: no second join
                await two.subscribe("race:r1")
                assert await next_data(watcher) == {"type": "join", "user": 2}
                assert await users_present(http, base, "race:r1") == [1, 1, 2, 9]
                listed = (await get(http, base, "/presence", channel="race:r1")).json()
                assert listed["channel"] == "race:r1" and listed["more"] is False
                assert len({c["client"] for c in listed["clients"]}) == 4
                count = await get(http, base, "/presence/count", channel="race:r1")
                assert count.json() == {"channel": "race:r1", "clients": 4, "users": 3}
                # one of user 1's two tabs goes: no leave; user 2 unsubscribes: leave
                await tab.ws.close()
                await two.send({"action": "unsubscribe", "channel": "race:r1"})
                assert await next_data(watcher) == {"type": "leave", "user": 2}
                assert await users_present(http, base, "race:r1") == [1, 9]
            # a clean disconnect removes at once, and says so
            assert await next_data(watcher) == {"type": "leave", "user": 1}
            assert await users_present(http, base, "race:r1") == [9]
            assert (await get(http, base, "/presence/count", channel="race:r1")).json() == {
                "channel": "race:r1", "clients": 1, "users": 1}
            # join/leave carry no offset: nothing in history, offsets untouched
            history = (await get(http, base, "/history", channel="race:r1")).json()
            assert history["publications"] == [] and history["offset"] == 0
        svc = app.extensions["pulse"]
        await svc.presence.settled()
        assert svc.presence.local == {} and svc.presence.entry_count == 0


async def test_quiet_presence_and_sse_subscribers(presence_settings):
    """Presence without join_leave announces nothing; an SSE stream is present like a socket."""
    async with serve_app(presence_settings) as (base, app), httpx.AsyncClient(timeout=5) as http:
        async with ws_client(base, token(1)) as one, http.stream(
                "GET", f"http://{base}/sse", params={"channels": "quiet:q", "token": token(2)}
        ) as stream:
            lines = stream.aiter_lines()
            await one.subscribe("quiet:q")
            acks = 0
            while acks < 1:  # the stream's ack: it is subscribed
                line = await asyncio.wait_for(lines.__anext__(), 3)
                acks += line.startswith("data:") and '"subscribed"' in line
            assert await users_present(http, base, "quiet:q") == [1, 2]
            assert await one.nothing(0.3)  # no join frames on a quiet namespace
        for _ in range(50):  # the stream's end reaches the server a moment later
            if await users_present(http, base, "quiet:q") == []:
                break
            await asyncio.sleep(0.05)
        assert await users_present(http, base, "quiet:q") == []


async def test_presence_is_guarded_like_history(presence_settings):
    async with serve_app(presence_settings) as (base, _app), httpx.AsyncClient(timeout=5) as http:
        member = token(1, projects=["red"])
        async with ws_client(base, member) as ws:
            assert (await ws.subscribe("team:red:room"))["type"] == "subscribed"
            answer = await http.get(f"http://{base}/presence",
                                    params={"channel": "team:red:room", "token": member})
            assert [c["user"] for c in answer.json()["clients"]] == [1]
            outsider = token(2, projects=["blue"])
            for path in ("/presence", "/presence/count", "/history"):
                refused = await http.get(f"http://{base}{path}",
                                         params={"channel": "team:red:room", "token": outsider})
                assert refused.status_code == 403, path
                assert refused.json()["detail"] == \
                    "Forbidden channel: team:red:room (not a member of this project)"
        assert (await http.get(f"http://{base}/presence",
                               params={"channel": "race:r1"})).status_code == 401
        for params, status, detail in (
                ({}, 400, "Missing or invalid 'channel'"),
                ({"channel": ""}, 400, "Missing or invalid 'channel'"),
                ({"channel": "nope:x"}, 400, "Invalid channel: nope:x"),
                ({"channel": "race:" + "x" * 200}, 400, "Invalid channel"),
                ({"channel": "mining"}, 400, "Presence is not kept on mining: its namespace "
                                             "'mining' does not set 'presence = true'")):
            for path in ("/presence", "/presence/count"):
                answer = await get(http, base, path, **params)
                assert answer.status_code == status, (path, params)
                assert answer.json()["detail"].startswith(detail), answer.json()


async def test_admin_stats_has_the_cluster(presence_settings):
    async with serve_app(presence_settings) as (base, app), httpx.AsyncClient(timeout=5) as http:
        async with ws_client(base, token(1)) as one, ws_client(base, token(2)) as two:
            await one.subscribe("race:r1")
            await two.subscribe("mining")
            stats = (await http.get(f"http://{base}/admin/stats", headers=ADMIN)).json()
        assert stats["total_connections"] == 2 and stats["channels"] == {"race:r1": 1,
                                                                         "mining": 1}
        cluster = stats["cluster"]
        assert cluster["processes"] == 1
        assert cluster["total_connections"] == 2 and cluster["connections"] == {"ws": 2, "sse": 0}
        assert cluster["subscriptions"] == 2 and cluster["presence_entries"] == 1
        assert cluster["channels"] == {"race:r1": 1, "mining": 1}
        assert cluster["expiry_seconds"] == 15.0 and cluster["heartbeat_seconds"] == 5.0
        (own,) = cluster["per_process"]
        assert own["process"] == app.extensions["pulse"].cluster.process
        assert own["total_connections"] == 2 and "channels" not in own


async def test_with_redis_down_stats_still_answer_and_presence_is_503(tmp_path, namespaces_file):
    settings = replace(make_settings(f"sqlite:///{tmp_path}/r.db", "redis://127.0.0.1:1/0"),
                       namespaces_file=namespaces_file)
    async with running_app(settings) as app:
        client = app.test_client()
        stats = await (await client.get("/admin/stats", headers=ADMIN)).get_json()
        assert stats["cluster"]["processes"] == 1
        assert stats["cluster"]["detail"].startswith("Broker unavailable")
        answer = await client.get("/presence", query_string={"channel": "race:r1",
                                                             "token": token(1)})
        assert answer.status_code == 503
        assert (await answer.get_json())["detail"].startswith("Broker unavailable")


# -- two real processes on one Redis ----------------------------------------------------------
TTL = 3.0  # PULSE_HEARTBEAT_TTL_SECONDS for the processes below: heartbeats every 1 s


def process_env(tmp_path, name, prefix, namespaces_file):
    (tmp_path / name).mkdir()
    return {"JWT_SECRET": SECRET, "PULSE_API_KEY": API_KEY, "REDIS_URL": REDIS_URL,
            "PULSE_REDIS_PREFIX": prefix, "PULSE_NAMESPACES": namespaces_file,
            "PULSE_HEARTBEAT_TTL_SECONDS": str(TTL),
            "DATABASE_URL": f"sqlite:///{tmp_path / name}/pulse.db"}


async def eventually(check, timeout: float, step: float = 0.1):
    """Poll ``check`` until it returns a true value; return (value, seconds waited)."""
    started = time.monotonic()
    while True:
        value = await check()
        if value or time.monotonic() - started > timeout:
            return value, time.monotonic() - started
        await asyncio.sleep(step)


@pytest.mark.integration
async def test_presence_converges_after_a_process_is_killed(tmp_path, namespaces_file):
    require_service("Redis", REDIS_URL, 6379)
    prefix = f"pulse-test:{uuid.uuid4().hex[:12]}:"
    port_a, port_b = free_port(), free_port()
    a, b = f"127.0.0.1:{port_a}", f"127.0.0.1:{port_b}"
    async with pulse_process(port_a, process_env(tmp_path, "a", prefix, namespaces_file)), \
            pulse_process(port_b, process_env(tmp_path, "b", prefix, namespaces_file)) as proc_b, \
            httpx.AsyncClient(timeout=5) as http:
        async with ws_client(a, token(9)) as watcher, ws_client(a, token(1)) as one, \
                ws_client(a, token(2)) as two, ws_client(b, token(3)) as three, \
                ws_client(b, token(4)) as four:
            await watcher.subscribe("race:r1")
            for ws in (one, two, three, four):
                assert (await ws.subscribe("race:r1"))["type"] == "subscribed"
            everyone = [1, 2, 3, 4, 9]

            async def both_see_everyone():
                return all([await users_present(http, host, "race:r1") == everyone
                            for host in (a, b)])

            assert (await eventually(both_see_everyone, 3))[0]
            joined = {(await next_data(watcher))["user"] for _ in everyone}
            assert joined == set(everyone)  # joins made on B reach A's subscribers

            async def cluster(host=a):
                answer = await http.get(f"http://{host}/admin/stats", headers=ADMIN)
                return answer.json()["cluster"]

            async def everyone_counted():
                # the other process's figures are those of its last heartbeat (1 s here)
                stats = await cluster(b)
                return (stats["processes"], stats["total_connections"],
                        stats["presence_entries"]) == (2, 5, 5) and stats

            stats = (await eventually(everyone_counted, 3))[0]
            assert stats, await cluster(b)
            assert stats["channels"] == {"race:r1": 5} and stats["subscriptions"] == 5
            assert stats["connections"] == {"ws": 5, "sse": 0}

            # A clean disconnect removes at once, everywhere.
            await two.ws.close()
            assert await next_data(watcher) == {"type": "leave", "user": 2}
            assert await users_present(http, b, "race:r1") == [1, 3, 4, 9]

            # SIGKILL B: no goodbye. Its clients drop out within the heartbeat bound.
            proc_b.send_signal(signal.SIGKILL)
            await asyncio.get_running_loop().run_in_executor(None, proc_b.wait, 5)
            killed_at = time.monotonic()

            async def gone_from_presence():
                return await users_present(http, a, "race:r1") == [1, 9]

            converged, waited = await eventually(gone_from_presence, TTL + 3)
            assert converged, await users_present(http, a, "race:r1")
            assert waited <= TTL + 1.0, waited  # the bound, and 1 s for polling and load
            count = (await get(http, a, "/presence/count", channel="race:r1")).json()
            assert count == {"channel": "race:r1", "clients": 2, "users": 2}
            # ... and their users' leaves reach the survivors' subscribers
            left = {(await next_data(watcher, TTL))["user"] for _ in range(2)}
            assert left == {3, 4}

            async def one_process():
                return (await cluster())["processes"] == 1 or None

            assert (await eventually(one_process, TTL + 3))[0]
            assert time.monotonic() - killed_at <= TTL + 1.0
            stats = await cluster()
            assert stats["total_connections"] == 2 and stats["channels"] == {"race:r1": 2}
            assert len(stats["per_process"]) == 1
        # A clean stop (SIGTERM, pulse_process's exit) removes what is left at once.
    import redis.asyncio as aioredis

    client = aioredis.from_url(REDIS_URL)
    try:
        left_over = [k async for k in client.scan_iter(match=f"{prefix}presence*")]
        left_over += [k async for k in client.scan_iter(match=f"{prefix}stats:*")]
        assert left_over == []
    finally:
        await client.aclose()


# -- the batching and the store, without a server ---------------------------------------------
class FakeConn:
    def __init__(self, number: int, user: int, *channels: str):
        self.id, self.user_id, self.subs = f"c{number}", user, dict.fromkeys(channels)


class FakeHub:
    def __init__(self):
        self.dispatched = []

    def dispatch(self, publication):
        self.dispatched.append(publication.data)


@pytest.fixture(params=["memory", "redis"])
async def store(request, namespaces_file):
    """A presence store with a 0.5 s entry TTL; ``store.announced()`` reads the join/leave
    publications it made (the hub's dispatch in process, the channel's pub/sub in Redis)."""
    from quart_app.realtime.broker_redis import RedisBroker
    from quart_app.realtime.presence import MemoryStore, RedisStore

    namespaces.install(namespaces.load_file(namespaces_file))
    if request.param == "memory":
        hub = FakeHub()
        made = MemoryStore(hub)

        async def announced(count):
            found, hub.dispatched[:count] = hub.dispatched[:count], []
            return [(d["type"], d["user"]) for d in found]

        made.announced = announced
        yield made
        return
    require_service("Redis", REDIS_URL, 6379)
    broker = RedisBroker(REDIS_URL, f"pulse-test:{uuid.uuid4().hex[:12]}:")
    await broker.connect()
    pubsub = broker.redis.pubsub()
    await pubsub.subscribe(f"{broker.prefix}ch:race:r1")
    made = RedisStore(broker, 0.5)

    async def announced(count):
        found = []
        deadline = time.monotonic() + 3
        while len(found) < count and time.monotonic() < deadline:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
            if message is None:  # a subscribe confirmation, or nothing yet
                continue
            body = json.loads(message["data"].partition(b"\n")[2])
            assert "offset" not in body and body["channel"] == "race:r1"
            found.append((body["data"]["type"], body["data"]["user"]))
        return found

    made.announced = announced
    try:
        yield made
    finally:
        await pubsub.aclose()
        await broker.close()


async def test_a_storm_of_subscribes_is_one_write_per_loop_iteration(store):
    from quart_app.realtime.presence import Presence

    presence = Presence("p1", lambda: store)
    conns = [FakeConn(n, n % 700, "race:r1", "quiet:q") for n in range(2500)]
    for conn in conns:  # 5,000 subscriptions in one loop iteration
        presence.joined(conn, "race:r1")
        presence.joined(conn, "quiet:q")
        presence.joined(conn, "mining")  # no presence there: ignored
    assert presence.entry_count == 5000
    await presence.settled()
    assert presence.batches == 1  # one pipelined round trip (chunked into script calls)
    assert (await presence.read("race:r1"))[:2] == (2500, 700)
    assert (await presence.read("quiet:q"))[:2] == (2500, 700)
    assert (await presence.read("race:r1", 3))[2][0]["client"].startswith("p1-c")
    assert len(await store.announced(700)) == 700  # one join per user, not per connection
    for conn in conns[:2000]:
        presence.gone(conn)
    await presence.settled()
    assert presence.batches == 2
    assert (await presence.read("race:r1"))[:2] == (500, 500)
    assert presence.held.keys() == {c.id for c in conns[2000:]}


async def test_entries_of_a_silent_process_expire_and_leave(store):
    """A process that stops heartbeating: its entries go after the TTL (0.5 s here), and each of
    its users leaves, published by whoever cleans up (here a reader)."""
    from quart_app.realtime.presence import Presence

    dead, alive = Presence("dead", lambda: store), Presence("alive", lambda: store)
    dead.joined(FakeConn(1, 1, "race:r1"), "race:r1")
    dead.joined(FakeConn(2, 2, "race:r1"), "race:r1")
    alive.joined(FakeConn(1, 2, "race:r1"), "race:r1")  # user 2 is also on a live process
    await dead.settled()
    await alive.settled()
    assert sorted(await store.announced(2)) == [("join", 1), ("join", 2)]
    if not hasattr(store, "redis"):
        return  # the memory store: one process, nothing can die without its table
    for _ in range(3):  # the live one keeps beating
        await asyncio.sleep(0.25)
        assert await alive.heartbeat()
    assert (await alive.read("race:r1"))[:2] == (1, 1)
    assert await store.announced(1) == [("leave", 1)]  # user 2 stays: still on "alive"


async def test_a_heartbeat_drops_what_ended_without_a_hook_and_close_says_goodbye(store):
    from quart_app.realtime.presence import Presence

    presence = Presence("p1", lambda: store)
    one, two = FakeConn(1, 1, "race:r1"), FakeConn(2, 2, "race:r1")
    presence.joined(one, "race:r1")
    presence.joined(two, "race:r1")
    del two.subs["race:r1"]  # a resubscribe that failed: the hub forgot it, no hook ran
    assert await presence.heartbeat()
    assert [c["user"] for c in (await presence.read("race:r1", 10))[2]] == [1]
    await presence.close()
    assert (await presence.read("race:r1"))[:2] == (0, 0)
    presence.joined(FakeConn(3, 3, "race:r1"), "race:r1")  # closed: ignored
    assert presence.entry_count == 0 and not await presence.heartbeat()
