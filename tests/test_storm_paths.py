"""What a reconnect storm leans on (docs/scaling.md): one user's concurrent subscribes share one
snapshot, stats reads and writes made together go to Redis as one MGET and one pipeline, and
stats missed together are computed by one query."""
from __future__ import annotations

import asyncio

from quart_app.dashboard.cache import RedisCache

from .conftest import ws_client


async def test_one_users_concurrent_subscribes_share_one_snapshot(live_server, token):
    address, app = live_server
    svc = app.extensions["pulse"]
    provider = svc.snapshots["dashboard"]
    calls = []

    async def slow(user_id):
        calls.append(user_id)
        await asyncio.sleep(0.3)  # long enough for every subscribe below to arrive meanwhile
        return await provider(user_id)

    svc.snapshots["dashboard"] = slow

    async def connect():
        async with ws_client(address, token(9)) as ws:
            ack = await ws.subscribe("dashboard")
            snapshot = await ws.recv()
            return ack["type"], snapshot["data"]["type"], snapshot["data"]["user_id"]

    answers = await asyncio.gather(*(connect() for _ in range(8)))
    assert answers == [("subscribed", "stats_update", 9)] * 8
    assert calls == [9]
    async with ws_client(address, token(9)) as ws:  # later: asked again, not kept
        await ws.subscribe("dashboard")
        await ws.recv()
    assert calls == [9, 9]


async def test_cache_reads_made_together_go_as_one_mget(redis_url, redis_prefix):
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url)
    cache = RedisCache(client, redis_prefix)
    trips = []
    real = client.mget

    async def counting(keys):
        trips.append(len(keys))
        return await real(keys)

    client.mget = counting
    scripts = []
    real_evalsha = client.evalsha

    async def counting_evalsha(sha, numkeys, *args):
        scripts.append(numkeys)
        return await real_evalsha(sha, numkeys, *args)

    client.evalsha = counting_evalsha
    try:
        await asyncio.gather(*(cache.set(f"k{i}", {"i": i}, 10) for i in range(0, 50, 2)))
        assert scripts == [25]  # 25 sets made together: one script call
        ttl = await client.pttl(redis_prefix + "k48")
        assert 9000 < ttl <= 10000  # each key set with its time to live
        trips.clear()
        answers = await asyncio.gather(*(cache.get_many([f"k{i}", f"k{i + 1}"])
                                         for i in range(0, 50, 2)), cache.get("k0"))
        assert trips == [50]  # 51 asks, 50 distinct keys, one MGET
        assert answers[:-1] == [[{"i": i}, None] for i in range(0, 50, 2)]
        assert answers[-1] == {"i": 0}
    finally:
        await client.aclose()


async def test_stats_missed_together_are_computed_by_one_query(app):
    """Twenty users' snapshots asked at once (cold cache): one query, and each user's stats
    are what a query of their own gives (on SQLite and on PostgreSQL)."""
    from quart_app.dashboard import stats

    from .dashboard_support import ingest

    svc = app.extensions["pulse"]
    for user in (3, 7):
        await ingest(app, "share_submitted", user, shares=user)
    await stats.invalidate_stats(svc, 3)
    await stats.invalidate_stats(svc, 7)
    batches = []
    real = stats.compute_stats_many

    async def counting(db, user_ids, now=None):
        batches.append(sorted(user_ids))
        return await real(db, user_ids, now)

    stats.compute_stats_many = counting
    try:
        found = await asyncio.gather(*(stats.get_stats(svc, user) for user in range(1, 21)))
    finally:
        stats.compute_stats_many = real
    assert batches == [list(range(1, 21))]
    for user, got in zip(range(1, 21), found):
        assert got == await stats.compute_stats(svc.db, user)
    assert (found[2]["shares_today"], found[6]["shares_today"], found[0]["shares_today"]) == \
        (3, 7, 0)


async def test_a_batch_that_fails_fails_every_ask_it_left_unanswered():
    """The mechanism under the three above: asks of one iteration run together, in parts of
    ``most``; a part that raises gives its unanswered asks the error, and only those."""
    from quart_app.realtime.batching import IterationBatch

    runs = []

    async def run(asked):
        runs.append([item for item, _future in asked])
        for item, future in asked:
            if item == 2:
                raise ValueError("no 2")
            future.set_result(item * 10)

    batch = IterationBatch(run, most=3)
    answers = await asyncio.gather(*(batch.ask(i) for i in range(6)), return_exceptions=True)
    assert runs == [[0, 1, 2], [3, 4, 5]]
    assert answers[:2] == [0, 10] and answers[3:] == [30, 40, 50]
    assert isinstance(answers[2], ValueError)


async def test_asks_made_while_a_batch_is_in_flight_go_together_after_it():
    """Batches form by themselves: with one run in flight (``depth=1``), the asks of the next
    loop iterations wait and go as one batch when it returns; idle, an ask goes at once."""
    from quart_app.realtime.batching import IterationBatch

    runs = []
    release = asyncio.Event()

    async def run(asked):
        runs.append([item for item, _future in asked])
        if len(runs) == 1:
            await release.wait()
        for item, future in asked:
            future.set_result(-item)

    batch = IterationBatch(run)
    first = batch.ask(0)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert runs == [[0]]  # went at once
    later = []
    for i in range(1, 6):  # five loop iterations while the first batch is in flight
        later.append(batch.ask(i))
        await asyncio.sleep(0)
    assert runs == [[0]]
    release.set()
    assert await asyncio.gather(first, *later) == [0, -1, -2, -3, -4, -5]
    assert runs == [[0], [1, 2, 3, 4, 5]]
    assert await batch.ask(9) == -9  # idle again: alone
    assert runs[-1] == [9]


async def test_asks_arriving_one_by_one_linger_to_share_a_batch():
    """With ``linger``, a batch starts no sooner than that after the one before it: asks that
    trickle in one per loop iteration (connects arriving one by one) wait and go together,
    while an ask after a quiet spell goes at once."""
    from quart_app.realtime.batching import IterationBatch

    loop = asyncio.get_running_loop()
    runs = []

    async def run(asked):
        runs.append(([item for item, _future in asked], loop.time()))
        for item, future in asked:
            future.set_result(item)

    batch = IterationBatch(run, linger=0.2)
    started = loop.time()
    assert await batch.ask(0) == 0
    assert runs[0][0] == [0] and runs[0][1] - started < 0.1  # idle: at once
    trickle = []
    for i in range(1, 6):
        trickle.append(batch.ask(i))
        await asyncio.sleep(0.01)  # answered already if the batch did not wait
    assert runs[1:] == []
    assert await asyncio.gather(*trickle) == [1, 2, 3, 4, 5]
    assert [items for items, _at in runs] == [[0], [1, 2, 3, 4, 5]]
    assert runs[1][1] - runs[0][1] >= 0.2 - 0.01  # not before the linger was over
    await asyncio.sleep(0.25)
    quiet = loop.time()
    assert await batch.ask(6) == 6
    assert runs[-1][0] == [6] and runs[-1][1] - quiet < 0.1  # after a quiet spell: at once
