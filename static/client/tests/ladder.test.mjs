// The fallback ladder: WebSocket -> SSE -> polling, and back to push.

import { test } from "node:test";
import assert from "node:assert/strict";

import { DEFAULTS } from "../client.js";
import { fakeFetch, settle } from "./fakes.mjs";
import { ackAll, connectWs, openWs, recorder, setup } from "./helpers.mjs";

/** Refuse WebSocket attempts until SSE is tried; return the EventSource. */
async function failWsUntilSse(env) {
  for (let i = 0; i < 10 && env.ES.instances.length === 0; i += 1) {
    env.WS.last.refuse();
    await settle();
    await env.clock.advance(env.clock.pendingTimeouts()[0] ?? 0);
  }
  return env.ES.last;
}

test("WebSockets failing twice -> SSE with the channels and the resume cursor", async () => {
  const env = setup();
  const a = recorder();
  env.client.subscribe("dashboard", a);
  env.client.subscribe("mining", () => {});
  let ws = await connectWs(env);
  ackAll(ws, { dashboard: 7, mining: 3 });
  ws.serverClose(1006);
  await settle();
  await env.clock.advance(env.clock.pendingTimeouts()[0]);
  const es = await failWsUntilSse(env);
  assert.equal(env.WS.instances.length, 3, "the drop, then two refused attempts");
  assert.equal(es.url.pathname, "/sse");
  assert.equal(es.channels, "dashboard,mining");
  assert.equal(es.cursor, "dashboard:7,mining:3");
  assert.equal(es.url.searchParams.get("token"), null, "the cookie authenticates: no token in the URL");
  es.open();
  assert.equal(env.client.mode, "sse");
  es.message({ channel: "dashboard", data: { n: 8 }, offset: 8 }, "dashboard:8,mining:3");
  es.message({ type: "subscribed", channel: "dashboard", offset: 8, recovered: true });
  es.message({ type: "subscribed", channel: "mining", offset: 3, recovered: true });
  es.message({ channel: "dashboard", data: { n: 9 }, offset: 9 }, "dashboard:9,mining:3");
  assert.deepEqual(a.offsets(), [8, 9]);
  assert.equal(env.client.metrics().transport, "sse");
  assert.equal(env.client.metrics().received, 3 + 4, "pong and 2 acks on the socket, 4 SSE frames");
});

test("on SSE a new channel reopens the stream with the cursor; a gap reopens it too", async () => {
  const env = setup({ transports: ["sse", "polling"] });
  env.client.subscribe("a", () => {});
  env.client.connect();
  await settle();
  let es = env.ES.last;
  es.open();
  es.message({ type: "subscribed", channel: "a", offset: 4, recovered: false });
  const b = recorder();
  env.client.subscribe("b", b);
  env.client.subscribe("c", () => {}); // same tick: one new stream for both
  await env.clock.advance(0);
  assert.equal(env.ES.instances.length, 2);
  assert.ok(es.closed, "the old stream is closed");
  es = env.ES.last;
  assert.equal(es.channels, "a,b,c");
  assert.equal(es.cursor, "a:4");
  es.open();
  assert.equal(env.client.mode, "sse");
  for (const ch of ["a", "b", "c"]) {
    es.message({ type: "subscribed", channel: ch, offset: 1, recovered: ch !== "a" });
  }
  es.message({ channel: "b", data: {}, offset: 2 });
  es.message({ channel: "b", data: {}, offset: 5 }); // gap
  await env.clock.advance(0);
  assert.equal(env.ES.instances.length, 3);
  assert.equal(env.ES.last.cursor, "a:1,b:2,c:1");
  assert.equal(env.client.metrics().gaps, 1);
  assert.deepEqual(b.offsets(), [2]);
});

test("SSE failing too -> polling every 30 s (history + snapshot), then back to WebSocket", async () => {
  const history = [];
  const fetch = fakeFetch((url) => {
    if (url.pathname === "/history") {
      const since = url.searchParams.get("since");
      // (A stream refused before opening makes the client probe its channels with a huge since.)
      if (since !== String(Number.MAX_SAFE_INTEGER)) history.push(`${url.searchParams.get("channel")}@${since}`);
      return { body: { channel: "a", offset: 6, recovered: true, publications: [
        { channel: "a", data: { n: 6 }, offset: 6 }] } };
    }
    return { body: { status: "ok" } };
  });
  const env = setup({ fetch });
  const a = recorder();
  env.client.subscribe("a", a);
  let ws = await connectWs(env);
  ackAll(ws, { a: 5 });
  ws.serverClose(1006);
  await settle();
  // Refuse everything until the client polls.
  for (let i = 0; i < 10 && env.polls.length === 0; i += 1) {
    const pending = env.ES.instances.filter((e) => !e.closed && e.readyState === 0);
    if (env.WS.last.readyState === 0) env.WS.last.refuse();
    for (const es of pending) es.error();
    await settle();
    await env.clock.advance(env.clock.pendingTimeouts()[0] ?? 0);
  }
  assert.equal(env.ES.instances.length, 2, "SSE was tried twice");
  assert.equal(env.polls.length, 1, "polling started at once");
  assert.deepEqual(history, ["a@5"]);
  assert.deepEqual(a.offsets(), [6], "what /history had is delivered in order");
  assert.equal(env.client.mode, "polling");
  // Polling goes on every 30 s while push stays down.
  const pollsAt = env.polls.length;
  for (let i = 0; i < 70 && env.polls.length < pollsAt + 2; i += 1) {
    if (env.WS.last.readyState === 0) env.WS.last.refuse();
    for (const es of env.ES.instances) if (!es.closed && es.readyState === 0) es.error();
    await env.clock.advance(1000);
  }
  assert.equal(env.polls.length, pollsAt + 2);
  assert.equal(env.polls.at(-1) - env.polls.at(-2), DEFAULTS.pollIntervalMs);
  // Push comes back: the next WebSocket attempt succeeds, polling stops, since is the last seen.
  for (let i = 0; i < 60 && env.client.mode !== "websocket"; i += 1) {
    await env.clock.advance(1000);
    for (const es of env.ES.instances) if (!es.closed && es.readyState === 0) es.error();
    if (env.WS.last.readyState === 0) {
      ws = await openWs(env);
    }
  }
  assert.equal(env.client.mode, "websocket");
  assert.deepEqual(ws.frames("subscribe"), [{ action: "subscribe", channel: "a", since: 6 }]);
  const polls = env.polls.length;
  for (let i = 0; i < 5; i += 1) {
    await env.clock.advance(DEFAULTS.pingIntervalMs);
    ws.pong();
  }
  assert.equal(env.client.mode, "websocket");
  assert.equal(env.polls.length, polls, "no polling while pushed");
});

test("polling only: a channel never acknowledged learns its offset, no resync", async () => {
  const seen = [];
  const fetch = fakeFetch((url) => {
    seen.push(url.searchParams.get("since"));
    return { body: { channel: "a", offset: 12, recovered: false, publications: [] } };
  });
  const env = setup({ fetch, transports: ["polling"] });
  env.client.subscribe("a", () => {});
  env.client.connect();
  await settle();
  assert.deepEqual(seen, [String(Number.MAX_SAFE_INTEGER)]);
  assert.equal(env.client.channels.get("a").last, 12);
  await env.clock.advance(0);
  assert.deepEqual(env.resyncs, []);
  await env.clock.advance(DEFAULTS.pollIntervalMs);
  assert.deepEqual(seen.at(-1), "12");
  await env.clock.advance(DEFAULTS.resyncBatchMs);
  assert.deepEqual(env.resyncs, [["a"]], "history no longer reached back: reload");
  assert.equal(env.client.mode, "polling");
});

test("polling that fails shows offline; a poll answering 401 asks for credentials", async () => {
  let status = 503;
  const fetch = fakeFetch(() => ({ status, body: { detail: "down" } }));
  const asked = [];
  const onAuthRequired = async () => {
    asked.push(1);
    return null;
  };
  const env = setup({ fetch, transports: ["polling"], onAuthRequired });
  env.client.subscribe("a", () => {});
  env.client.connect();
  await settle();
  assert.equal(env.client.mode, "offline");
  status = 401;
  await env.clock.advance(DEFAULTS.pollIntervalMs);
  assert.equal(env.client.mode, "unauthorized");
  assert.equal(asked.length, 1);
});

test("on SSE, WebSocket is retried periodically and replaces the stream when it works", async () => {
  const env = setup();
  env.client.subscribe("a", () => {});
  env.client.connect();
  await settle();
  const es = await failWsUntilSse(env);
  es.open();
  es.message({ type: "subscribed", channel: "a", offset: 2, recovered: false });
  const wsCount = env.WS.instances.length;
  await env.clock.advance(DEFAULTS.upgradeIntervalMs - 1);
  assert.equal(env.WS.instances.length, wsCount, "not before the upgrade interval");
  await env.clock.advance(1);
  assert.equal(env.WS.instances.length, wsCount + 1, "a WebSocket probe");
  env.WS.last.refuse(); // still blocked: stay on SSE
  await settle();
  assert.equal(env.client.mode, "sse");
  assert.equal(es.closed, false);
  await env.clock.advance(DEFAULTS.upgradeIntervalMs);
  const ws = await openWs(env);
  assert.equal(env.client.mode, "websocket");
  assert.ok(es.closed, "the stream is closed once the socket answers");
  assert.deepEqual(ws.frames("subscribe"), [{ action: "subscribe", channel: "a", since: 2 }]);
});

test("after a server restart on SSE, WebSocket comes back quickly when it worked before", async () => {
  const env = setup();
  env.client.subscribe("a", () => {});
  const ws = await connectWs(env);
  ackAll(ws, { a: 1 });
  ws.serverClose(1012);
  await settle();
  await env.clock.advance(env.clock.pendingTimeouts()[0]);
  const es = await failWsUntilSse(env);
  es.open();
  const wsCount = env.WS.instances.length;
  await env.clock.advance(DEFAULTS.quickUpgradeMs);
  assert.equal(env.WS.instances.length, wsCount + 1);
  await openWs(env);
  assert.equal(env.client.mode, "websocket");
});

test("an SSE stream that ends is reopened promptly from its cursor", async () => {
  const env = setup({ transports: ["sse"] });
  env.client.subscribe("a", () => {});
  env.client.connect();
  await settle();
  env.ES.last.open();
  env.ES.last.message({ type: "subscribed", channel: "a", offset: 3, recovered: false });
  env.ES.last.message({ channel: "a", data: {}, offset: 4 }, "a:4");
  env.ES.last.error(); // server shutdown ends the stream
  await settle();
  const [delay] = env.clock.pendingTimeouts();
  assert.ok(delay < 1000);
  await env.clock.advance(delay);
  assert.equal(env.ES.last.cursor, "a:4");
});
