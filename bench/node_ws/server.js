// The fastest peer, "Node ws + node-redis (one event loop)", for bench/run.py
// --servers node: the protocol subset the bench client speaks, and the seed baseline's raw Redis
// path and message (PUBLISH pubsub:feed_item → {"channel":"dashboard","data":{"type":"feed_item",
// ...payload}}, serialised once, sent to each client). Tokens are taken, not verified: this is a
// yardstick for fan-out on this machine, not a server. Setup: `npm ci --prefix bench/node_ws`.
"use strict";
const http = require("http");
const { WebSocketServer } = require("ws");
const { createClient } = require("redis");

const args = process.argv.slice(2);
const port = Number(args[args.indexOf("--port") + 1] || 8200);
const redisUrl = process.env.REDIS_URL || "redis://127.0.0.1:6379/0";

const channels = new Map(); // channel → Set<WebSocket>

const server = http.createServer((req, res) => {
  res.writeHead(req.url === "/readyz" ? 200 : 404, { "content-type": "text/plain" });
  res.end("ok");
});
const wss = new WebSocketServer({ server, path: "/ws", perMessageDeflate: false });

wss.on("connection", (ws) => {
  const subs = new Set();
  ws.on("message", (data) => {
    let msg;
    try { msg = JSON.parse(data); } catch { return; }
    if (msg.action === "subscribe" && typeof msg.channel === "string") {
      if (!channels.has(msg.channel)) channels.set(msg.channel, new Set());
      channels.get(msg.channel).add(ws);
      subs.add(msg.channel);
      ws.send(JSON.stringify({ type: "subscribed", channel: msg.channel }));
    } else if (msg.action === "ping") {
      ws.send(JSON.stringify({ type: "pong" }));
    }
  });
  ws.on("close", () => {
    for (const c of subs) channels.get(c)?.delete(ws);
  });
});

(async () => {
  const sub = createClient({ url: redisUrl });
  await sub.connect();
  await sub.subscribe("pubsub:feed_item", (message) => {
    let payload;
    try { payload = JSON.parse(message); } catch { return; }
    const text = JSON.stringify({ channel: "dashboard", data: { type: "feed_item", ...payload } });
    for (const ws of channels.get("dashboard") || []) ws.send(text);
  });
  server.listen(port, "127.0.0.1");
})();
process.on("SIGTERM", () => process.exit(0));
