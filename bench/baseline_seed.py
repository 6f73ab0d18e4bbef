"""The seed-000 baseline: §3.3 as written, ported line for line to Quart + Hypercorn.

This is the "naive port" the issue compares against: the seed's ``ConnectionManager`` (a dict of
connections, a set per channel, ``broadcast_to_channel`` awaiting ``send_text`` client after
client, encoding JSON per broadcast) and its ``PubSubBridge`` (the 12 raw ``pubsub:*`` channels,
``get_message(timeout=1.0)``, ``{"type": suffix, **payload}``), behind the seed's ``/ws`` route
(JWT in ``?token=``, the same subscribe/unsubscribe/ping protocol). FastAPI's ``send_text`` is
Quart's ``websocket.send``; FastAPI's ``WebSocketDisconnect`` is Quart cancelling the handler.
Nothing here is tuned: that is the point.

Same event loop as Pulse (uvloop unless ``PULSE_UVLOOP=0``) and the same Hypercorn, so the
difference measured is the design. Hypercorn offers permessage-deflate as it does by default; the
bench client does not ask for it, so neither server compresses.

    REDIS_URL=redis://127.0.0.1:6379/0 JWT_SECRET=... python bench/baseline_seed.py --port 8100
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import redis.asyncio as redis  # noqa: E402
from quart import Quart, websocket  # noqa: E402

from quart_app.realtime.auth import verify_token  # noqa: E402  (the seed's verify_token: HS256, access)

logger = logging.getLogger("seed.ws")


# -- seed 000 §3.3.1 ---------------------------------------------------------------------------
@dataclass
class ClientConnection:
    websocket: object
    user_id: int
    btc_address: str
    subscriptions: set = field(default_factory=set)
    connected_at: float = field(default_factory=time.time)
    messages_sent: int = 0


class ConnectionManager:
    def __init__(self) -> None:
        self._connections: dict[str, ClientConnection] = {}
        self._channels: dict[str, set[str]] = defaultdict(set)
        self._user_connections: dict[int, set[str]] = defaultdict(set)

    async def connect(self, ws, conn_id: str, user_id: int, btc_address: str) -> None:
        await ws.accept()
        self._connections[conn_id] = ClientConnection(ws, user_id, btc_address)
        self._user_connections[user_id].add(conn_id)
        logger.info("ws_connected conn_id=%s user_id=%s", conn_id, user_id)

    async def disconnect(self, conn_id: str) -> None:
        client = self._connections.pop(conn_id, None)
        if client is None:
            return
        for channel in client.subscriptions:
            self._channels[channel].discard(conn_id)
        self._user_connections[client.user_id].discard(conn_id)
        if not self._user_connections[client.user_id]:
            del self._user_connections[client.user_id]
        logger.info("ws_disconnected conn_id=%s user_id=%s", conn_id, client.user_id)

    async def subscribe(self, conn_id: str, channel: str) -> bool:
        client = self._connections.get(conn_id)
        if client is None:
            return False
        if channel not in {"mining", "dashboard", "gamification", "competition"}:
            return False
        client.subscriptions.add(channel)
        self._channels[channel].add(conn_id)
        return True

    async def unsubscribe(self, conn_id: str, channel: str) -> bool:
        client = self._connections.get(conn_id)
        if client is None:
            return False
        client.subscriptions.discard(channel)
        self._channels[channel].discard(conn_id)
        return True

    async def broadcast_to_channel(self, channel: str, message: dict) -> int:
        conn_ids = self._channels.get(channel, set())
        if not conn_ids:
            return 0
        payload = json.dumps({"channel": channel, "data": message})
        sent = 0
        failed = []
        for conn_id in list(conn_ids):  # list(): the seed iterates the live set (may mutate)
            client = self._connections.get(conn_id)
            if client is None:
                failed.append(conn_id)
                continue
            try:
                await client.websocket.send(payload)  # FastAPI: send_text
                client.messages_sent += 1
                sent += 1
            except Exception:
                failed.append(conn_id)
        for conn_id in failed:
            await self.disconnect(conn_id)
        return sent


manager = ConnectionManager()

# -- seed 000 §3.3.3 ---------------------------------------------------------------------------
CHANNEL_MAP = {
    "pubsub:share_submitted": "mining", "pubsub:worker_status": "mining",
    "pubsub:hashrate_update": "mining", "pubsub:best_diff": "mining",
    "pubsub:block_found": "dashboard", "pubsub:badge_earned": "gamification",
    "pubsub:xp_gained": "gamification", "pubsub:level_up": "gamification",
    "pubsub:streak_update": "gamification", "pubsub:leaderboard_update": "competition",
    "pubsub:match_update": "competition", "pubsub:feed_item": "dashboard",
}


class PubSubBridge:
    def __init__(self, redis_client) -> None:
        self.redis = redis_client
        self._running = False

    async def start(self) -> None:
        self._running = True
        pubsub = self.redis.pubsub()
        await pubsub.subscribe(*CHANNEL_MAP.keys())
        try:
            while self._running:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is None:
                    continue
                redis_channel = message.get("channel", "")
                if isinstance(redis_channel, bytes):
                    redis_channel = redis_channel.decode()
                ws_channel = CHANNEL_MAP.get(redis_channel)
                if ws_channel is None:
                    continue
                try:
                    data = message.get("data", b"")
                    if isinstance(data, bytes):
                        data = data.decode()
                    payload = json.loads(data)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    continue
                await manager.broadcast_to_channel(
                    ws_channel, {"type": redis_channel.split(":")[-1], **payload})
        except asyncio.CancelledError:
            pass
        finally:
            await pubsub.unsubscribe()
            await pubsub.aclose()


# -- seed 000 §3.3.2, as a Quart route ---------------------------------------------------------
app = Quart(__name__)


@app.websocket("/ws")
async def websocket_endpoint() -> None:
    ws = websocket._get_current_object()
    try:
        principal = verify_token(os.environ["JWT_SECRET"], websocket.args.get("token"))
    except Exception as exc:
        await ws.close(4001, f"Authentication failed: {exc}")
        return
    conn_id = str(uuid.uuid4())
    await manager.connect(ws, conn_id, principal.user_id, principal.address or "")
    try:
        while True:
            raw = await ws.receive()
            try:
                msg = json.loads(raw)
            except json.JSONDecodeError:
                await ws.send(json.dumps({"type": "error", "message": "Invalid JSON"}))
                continue
            action = msg.get("action")
            if action == "subscribe":
                channel = msg.get("channel", "")
                if await manager.subscribe(conn_id, channel):
                    await ws.send(json.dumps({"type": "subscribed", "channel": channel}))
                else:
                    await ws.send(json.dumps({"type": "error",
                                              "message": f"Invalid channel: {channel}"}))
            elif action == "unsubscribe":
                channel = msg.get("channel", "")
                await manager.unsubscribe(conn_id, channel)
                await ws.send(json.dumps({"type": "unsubscribed", "channel": channel}))
            elif action == "ping":
                await ws.send(json.dumps({"type": "pong"}))
            else:
                await ws.send(json.dumps({"type": "error", "message": f"Unknown action: {action}"}))
    finally:  # FastAPI's WebSocketDisconnect is a cancellation in Quart
        await manager.disconnect(conn_id)


_bridge_task: list[asyncio.Task] = []
_stopping = False


@app.before_serving
async def _start_bridge() -> None:
    client = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    task = asyncio.get_running_loop().create_task(PubSubBridge(client).start())
    task.add_done_callback(_report_bridge_end)  # not in the seed: the bench needs to know
    _bridge_task.append(task)


def _report_bridge_end(task: asyncio.Task) -> None:
    """The seed's bridge ends silently on any error (no reconnect): say so in the log."""
    if task.cancelled() or _stopping:
        return
    exc = task.exception()
    logger.error("bridge ended: %r", exc)


@app.after_serving
async def _stop_bridge() -> None:
    global _stopping
    _stopping = True
    for task in _bridge_task:
        task.cancel()


def main() -> None:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8100)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    config = Config()
    config.bind = [f"127.0.0.1:{args.port}"]
    config.graceful_timeout = 1.0
    if os.environ.get("PULSE_UVLOOP", "1") not in {"0", "false", "no"}:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(serve(app, config))


if __name__ == "__main__":
    main()
