// The client over WebSocket: routing, cleanup, resubscribe with `since`, gaps, metrics, backoff.

import { test } from "node:test";
import assert from "node:assert/strict";

import { DEFAULTS, backoffDelay } from "../client.js";
import { CloseCode } from "../codes.js";
import { settle } from "./fakes.mjs";
import { ackAll, connectWs, openWs, recorder, setup } from "./helpers.mjs";

test("backoff grows from 1 s to 30 s, jittered, never outside its bounds", () => {
  for (let attempt = 0; attempt < 40; attempt += 1) {
    const ceiling = Math.min(30_000, 1000 * 2 ** attempt);
    for (const r of [0, 0.01, 0.25, 0.5, 0.75, 0.999]) {
      const delay = backoffDelay(attempt, DEFAULTS, () => r);
      assert.ok(delay >= 1000, `attempt ${attempt}: ${delay} < 1 s`);
      assert.ok(delay <= ceiling, `attempt ${attempt}: ${delay} > ${ceiling}`);
      assert.ok(delay >= ceiling / 2, `attempt ${attempt}: ${delay} < half of ${ceiling}`);
    }
  }
  assert.equal(backoffDelay(0, DEFAULTS, () => 0.5), 1000);
  assert.equal(backoffDelay(100, DEFAULTS, () => 1), 30_000);
  assert.equal(backoffDelay(100, DEFAULTS, () => 0), 15_000);
  // Jitter spreads clients: two draws of the same attempt differ.
  assert.notEqual(backoffDelay(4, DEFAULTS, () => 0.1), backoffDelay(4, DEFAULTS, () => 0.9));
});

test("a refused WebSocket is retried with growing delays, then the attempts stop", async () => {
  const env = setup({ transports: ["websocket"], maxAttempts: 6, random: () => 0.999 });
  env.client.connect();
  await settle();
  const delays = [];
  for (let i = 0; i < 6; i += 1) {
    env.WS.last.refuse();
    await settle();
    assert.equal(env.client.mode, "connecting", "never connected yet: not 'offline'");
    const [delay] = env.clock.pendingTimeouts();
    delays.push(Math.round(delay));
    const before = env.WS.instances.length;
    await env.clock.advance(delay);
    assert.equal(env.WS.instances.length, before + 1, "one new socket per attempt");
  }
  assert.deepEqual(delays, [1000, 2000, 4000, 8000, 16000, 30000].map((c) => Math.round(c * 0.9995)));
  env.WS.last.refuse();
  await settle();
  const count = env.WS.instances.length;
  await env.clock.advance(10 * 60_000);
  assert.equal(env.WS.instances.length, count, "no attempt after maxAttempts");
  assert.equal(env.client.mode, "offline");
  assert.equal(env.client.metrics().reconnects, 6);
});

test("subscribe before connecting: the first connection carries every channel", async () => {
  const env = setup();
  const dash = recorder();
  env.client.subscribe("dashboard", dash);
  env.client.subscribe("mining", () => {});
  const ws = await connectWs(env);
  assert.equal(new URL(ws.url).pathname, "/ws");
  assert.equal(new URL(ws.url).search, "", "no token in the WebSocket URL");
  assert.deepEqual(ws.sent[0].action, "ping", "the ping goes first (no token: the cookie authenticates)");
  assert.deepEqual(ws.frames("subscribe"), [
    { action: "subscribe", channel: "dashboard" },
    { action: "subscribe", channel: "mining" },
  ]);
  ackAll(ws, { dashboard: 5, mining: 2 });
  ws.receive({ channel: "dashboard", data: { type: "stats_update", hashrate: 1 } }); // snapshot
  ws.receive({ channel: "dashboard", data: { type: "feed_item", id: 9 }, offset: 6 });
  assert.deepEqual(dash.calls.map(({ data, meta }) => ({ data, meta })), [
    { data: { type: "stats_update", hashrate: 1 }, meta: { channel: "dashboard", offset: null } },
    { data: { type: "feed_item", id: 9 }, meta: { channel: "dashboard", offset: 6 } },
  ]);
  assert.equal(env.client.mode, "websocket");
  assert.deepEqual(env.resyncs, [], "a first subscribe is no resync");
});

test("handlers are routed by channel and cleaned up; the last one out unsubscribes", async () => {
  const env = setup();
  const a1 = recorder();
  const a2 = recorder();
  const b = recorder();
  const subA1 = env.client.subscribe("a", a1);
  const subA2 = env.client.subscribe("a", a2);
  env.client.subscribe("b", b);
  const ws = await connectWs(env);
  assert.equal(ws.frames("subscribe").length, 2, "one subscribe per channel, not per handler");
  ackAll(ws);
  ws.receive({ channel: "a", data: { n: 1 }, offset: 1 });
  ws.receive({ channel: "b", data: { n: 2 }, offset: 1 });
  ws.receive({ channel: "zzz", data: { n: 3 }, offset: 1 });
  assert.deepEqual([a1.calls.length, a2.calls.length, b.calls.length], [1, 1, 1]);
  subA1.unsubscribe();
  subA1.unsubscribe(); // idempotent
  assert.equal(ws.frames("unsubscribe").length, 0, "a2 still listens");
  ws.receive({ channel: "a", data: { n: 4 }, offset: 2 });
  assert.deepEqual([a1.calls.length, a2.calls.length], [1, 2]);
  subA2.unsubscribe();
  assert.deepEqual(ws.frames("unsubscribe"), [{ action: "unsubscribe", channel: "a" }]);
  ws.receive({ channel: "a", data: { n: 5 }, offset: 3 });
  assert.equal(a2.calls.length, 2);
  assert.deepEqual(env.client.metrics().channels, ["b"]);
  // Subscribing again later is a fresh subscribe on the wire.
  env.client.subscribe("a", a1);
  assert.deepEqual(ws.frames("subscribe").at(-1), { action: "subscribe", channel: "a" });
});

test("a throwing handler does not stop the others", async () => {
  const env = setup();
  const errors = [];
  env.client.on("error", (e) => errors.push(e));
  const good = recorder();
  const original = console.error;
  console.error = () => {};
  try {
    env.client.subscribe("a", () => { throw new Error("boom"); });
    env.client.subscribe("a", good);
    const ws = await connectWs(env);
    ackAll(ws);
    ws.receive({ channel: "a", data: {}, offset: 1 });
  } finally {
    console.error = original;
  }
  assert.equal(good.calls.length, 1);
  assert.match(errors[0].message, /boom/);
  assert.equal(errors[0].code, "handler");
  assert.equal(errors[0].channel, "a");
});

test("after a reconnect every channel resubscribes with since = last offset seen", async () => {
  const env = setup();
  const a = recorder();
  env.client.subscribe("a", a);
  env.client.subscribe("b", () => {});
  let ws = await connectWs(env);
  ackAll(ws, { a: 4, b: 10 });
  ws.receive({ channel: "a", data: { n: 5 }, offset: 5 });
  ws.serverClose(CloseCode.SERVICE_RESTART, "Server restarting");
  await settle();
  const [delay] = env.clock.pendingTimeouts();
  assert.ok(delay <= DEFAULTS.promptDelayMs, `1012 reconnects promptly (${delay} ms)`);
  await env.clock.advance(delay);
  ws = await openWs(env);
  assert.deepEqual(ws.frames("subscribe"), [
    { action: "subscribe", channel: "a", since: 5 },
    { action: "subscribe", channel: "b", since: 10 },
  ]);
  // Replay first, then the ack, then live: delivered once each, in order.
  ws.receive({ channel: "a", data: { n: 6 }, offset: 6 });
  ws.receive({ channel: "a", data: { n: 7 }, offset: 7 });
  ackAll(ws, { a: 7, b: 10 });
  ws.receive({ channel: "a", data: { n: 7 }, offset: 7 }); // duplicate at the seam
  ws.receive({ channel: "a", data: { n: 8 }, offset: 8 });
  assert.deepEqual(a.offsets(), [5, 6, 7, 8]);
  assert.deepEqual(env.resyncs, []);
  assert.equal(env.client.metrics().reconnects, 1);
});

test("recovered:false asks the page to reload its snapshot, once for all channels", async () => {
  const env = setup();
  env.client.subscribe("a", () => {});
  env.client.subscribe("b", () => {});
  env.client.subscribe("c", () => {});
  let ws = await connectWs(env);
  ackAll(ws, { a: 3, b: 3, c: 3 });
  ws.serverClose(CloseCode.SLOW_CONSUMER, "slow consumer");
  await env.clock.advance(DEFAULTS.promptDelayMs);
  ws = await openWs(env);
  ws.receive({ type: "subscribed", channel: "a", offset: 1, recovered: false });
  ws.receive({ type: "subscribed", channel: "b", offset: 9, recovered: false });
  ws.receive({ type: "subscribed", channel: "c", offset: 3, recovered: true });
  await env.clock.advance(DEFAULTS.resyncBatchMs);
  assert.deepEqual(env.resyncs, [["a", "b"]]);
  assert.equal(env.client.metrics().resyncs, 1);
  // The ack's offset is the new baseline (the server may have restarted from 0).
  ws.receive({ channel: "a", data: {}, offset: 2 });
  assert.equal(env.client.channels.get("a").last, 2);
});

test("a gap in offsets resubscribes from the last offset; nothing is lost or doubled", async () => {
  const env = setup();
  const a = recorder();
  env.client.subscribe("a", a);
  const ws = await connectWs(env);
  ackAll(ws, { a: 5 });
  ws.receive({ channel: "a", data: {}, offset: 6 });
  ws.receive({ channel: "a", data: { type: "stats_update" } }); // no offset: no gap check
  ws.receive({ channel: "a", data: {}, offset: 9 }); // 7 and 8 went missing
  assert.deepEqual(a.offsets(), [6, null]);
  assert.deepEqual(ws.sent.slice(-2), [
    { action: "unsubscribe", channel: "a" },
    { action: "subscribe", channel: "a", since: 6 },
  ]);
  assert.equal(env.client.metrics().gaps, 1);
  ws.receive({ channel: "a", data: {}, offset: 10 }); // still the old subscription: dropped
  ws.receive({ type: "unsubscribed", channel: "a" });
  for (const offset of [7, 8, 9, 10]) ws.receive({ channel: "a", data: {}, offset });
  ws.receive({ type: "subscribed", channel: "a", offset: 10, recovered: true });
  ws.receive({ channel: "a", data: {}, offset: 11 });
  assert.deepEqual(a.offsets(), [6, null, 7, 8, 9, 10, 11]);
  assert.equal(env.client.metrics().gaps, 1);
  await env.clock.advance(DEFAULTS.resyncBatchMs);
  assert.deepEqual(env.resyncs, []);
});

test("every hole is a real loss: recovered at once, every time, with no grace window", async () => {
  // The server gives user-targeted publications an offset space of their own (DESIGN §9), so
  // the client never has to guess whether a hole is someone else's event.
  const env = setup();
  const a = recorder();
  env.client.subscribe("dashboard", a);
  const ws = await connectWs(env);
  ackAll(ws, { dashboard: 1 });
  for (const [hole, since] of [[3, 1], [6, 3], [9, 6]]) {
    ws.receive({ channel: "dashboard", data: {}, offset: hole });
    assert.deepEqual(ws.sent.slice(-2), [
      { action: "unsubscribe", channel: "dashboard" },
      { action: "subscribe", channel: "dashboard", since },
    ], `the hole before ${hole} is recovered at once`);
    ws.receive({ type: "unsubscribed", channel: "dashboard" });
    for (let offset = since + 1; offset <= hole; offset += 1) {
      ws.receive({ channel: "dashboard", data: {}, offset });
    }
    ws.receive({ type: "subscribed", channel: "dashboard", offset: hole, recovered: true });
    await env.clock.advance(1000);
    ws.pong();
  }
  assert.deepEqual(a.offsets(), [2, 3, 4, 5, 6, 7, 8, 9]);
  assert.equal(env.client.metrics().gaps, 3);
  assert.throws(() => setup({ sparseWindowMs: 60_000 }), /unknown Client option "sparseWindowMs"/);
});

test("keepalive pings every 30 s with ts; latency is measured from the echo", async () => {
  const env = setup();
  env.client.subscribe("a", () => {});
  env.client.connect();
  await settle();
  const ws = env.WS.last;
  ws.open();
  await env.clock.advance(42);
  ws.pong();
  await settle();
  assert.equal(env.client.metrics().latency, 42);
  const latencies = [];
  env.client.on("latency", (ms) => latencies.push(ms));
  await env.clock.advance(30_000);
  assert.equal(ws.frames("ping").length, 2);
  assert.equal(ws.frames("ping")[1].ts, env.clock.now());
  await env.clock.advance(7);
  ws.pong();
  assert.deepEqual(latencies, [7]);
  assert.equal(env.client.mode, "websocket");
});

test("a link that stops answering pings is dropped and reconnected", async () => {
  const env = setup();
  env.client.subscribe("a", () => {});
  const ws = await connectWs(env);
  await env.clock.advance(30_000 + DEFAULTS.pongTimeoutMs);
  assert.ok(ws.closedWith, "the silent socket was closed");
  assert.equal(env.client.mode, "offline");
  await env.clock.advance(1000);
  assert.equal(env.WS.instances.length, 2);
});

test("metrics count frames sent and received, reconnects, latency and transport", async () => {
  const env = setup();
  env.client.subscribe("a", () => {});
  const ws = await connectWs(env); // sent: ping, subscribe; received: pong
  ackAll(ws);
  ws.receive({ channel: "a", data: {}, offset: 1 });
  let m = env.client.metrics();
  assert.equal(m.sent, 2);
  assert.equal(m.received, 3);
  assert.equal(m.transport, "websocket");
  assert.equal(m.reconnects, 0);
  assert.equal(typeof m.latency, "number");
  ws.serverClose(1006, "");
  await settle();
  m = env.client.metrics();
  assert.equal(m.transport, null);
  assert.equal(m.reconnects, 1);
  assert.equal(m.latency, null, "no latency while offline");
});

test("a drop without a prompt code waits the backoff; 1012/4008/4010 come back within 1 s", async () => {
  for (const [code, prompt] of [[1006, false], [4009, false], [1012, true], [4008, true], [4010, true]]) {
    const env = setup({ random: () => 0.999 });
    const ws = await connectWs(env);
    ws.serverClose(code, "");
    await settle();
    const [delay] = env.clock.pendingTimeouts();
    if (prompt) assert.ok(delay < 1000, `${code}: ${delay}`);
    else assert.ok(delay >= 1000, `${code}: ${delay}`);
  }
});

test("close() stops everything", async () => {
  const env = setup();
  env.client.subscribe("a", () => {});
  const ws = await connectWs(env);
  env.client.close();
  assert.ok(ws.closedWith);
  await env.clock.advance(10 * 60_000);
  assert.equal(env.WS.instances.length, 1);
  assert.equal(env.client.mode, "closed");
});
