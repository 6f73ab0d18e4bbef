import json

import websockets


async def test_live_server_ping(live_server, token, backend):
    address, _app = live_server
    async with websockets.connect(f"ws://{address}/ws?token={token(3)}") as ws:
        await ws.send(json.dumps({"action": "ping", "ts": 1}))
        assert json.loads(await ws.recv()) == {"type": "pong", "ts": 1}


async def test_client_health(client):
    response = await client.get("/healthz")
    assert response.status_code == 200
