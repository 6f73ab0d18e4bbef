import json

import pytest

from quart_app import create_app

from .conftest import make_settings, running_app


async def test_healthz_and_readyz(client, backend):
    assert (await client.get("/healthz")).status_code == 200
    response = await client.get("/readyz")
    body = await response.get_json()
    assert response.status_code == 200, body
    assert body["status"] == "ready"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis" if backend["redis_url"] else "broker"] == "ok"


async def test_readyz_fails_with_redis_down(tmp_path):
    settings = make_settings(f"sqlite:///{tmp_path}/r.db", "redis://127.0.0.1:1/0")
    async with running_app(settings) as app:
        client = app.test_client()
        response = await client.get("/readyz")
        body = await response.get_json()
        assert response.status_code == 503
        assert "redis unreachable" in body["detail"]
        assert (await client.get("/healthz")).status_code == 200
        from quart_app.realtime.auth import mint_token

        from .conftest import SECRET
        history = await client.get("/history", query_string={
            "channel": "mining", "since": "0", "token": mint_token(SECRET, 1)})
        assert history.status_code == 503
        assert (await history.get_json())["detail"].startswith("Broker unavailable")


async def test_readyz_and_rest_with_database_down_then_back(pg_url, tmp_path, token):
    from urllib.parse import urlsplit

    from .proxy import TcpProxy

    parts = urlsplit(pg_url)
    proxy = await TcpProxy(parts.hostname, parts.port or 5432).start()
    url = f"postgresql://{parts.username}@127.0.0.1:{proxy.port}{parts.path}"
    try:
        async with running_app(make_settings(url)) as app:
            client = app.test_client()
            auth = {"Authorization": f"Bearer {token(1)}"}
            assert (await client.get("/readyz")).status_code == 200
            async with client.websocket(f"/ws?token={token(1)}") as ws:
                proxy.cut()
                response = await client.get("/readyz")
                assert response.status_code == 503
                assert "database unreachable" in (await response.get_json())["detail"]
                assert (await client.get("/healthz")).status_code == 200
                stats = await client.get("/dashboard/feed", headers=auth)
                assert stats.status_code == 503
                assert "Database unavailable" in (await stats.get_json())["detail"]
                await ws.send(json.dumps({"action": "subscribe", "channel": "mining"}))
                assert json.loads(await ws.receive())["type"] == "subscribed"
                await app.extensions["pulse"].publish("mining", {"type": "share_submitted"})
                assert json.loads(await ws.receive())["offset"] == 1  # WebSockets stay up
            proxy.restore()
            for _ in range(50):
                if (await client.get("/readyz")).status_code == 200:
                    break
            assert (await client.get("/readyz")).status_code == 200
            assert (await client.get("/dashboard/feed", headers=auth)).status_code == 200
    finally:
        await proxy.close()


async def test_metrics_exposition(client):
    text = await (await client.get("/metrics")).get_data(as_text=True)
    for name in ("pulse_connections", "pulse_messages_out_total",
                 "pulse_slow_consumer_closes_total", "pulse_listener_reconnects_total",
                 "pulse_delivery_latency_seconds_bucket"):
        assert name in text


async def test_admin_stats_requires_api_key(client):
    assert (await client.get("/admin/stats")).status_code == 401
    response = await client.get("/admin/stats", headers={"X-API-Key": "test-api-key"})
    stats = await response.get_json()
    assert {k: stats[k] for k in ("total_connections", "unique_users", "channels")} == {
        "total_connections": 0, "unique_users": 0, "channels": {}}
    assert stats["cluster"]["processes"] == 1  # the rest: tests/test_presence.py


async def test_unknown_path_is_json_404(client):
    response = await client.get("/nope")
    assert response.status_code == 404
    assert await response.get_json() == {"detail": "Not found"}
