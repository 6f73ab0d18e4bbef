// The client outside a browser: injected implementations, a clear error when none exists,
// options that are checked, getClient's one shared client, history(), state and metrics events.

import { test } from "node:test";
import assert from "node:assert/strict";

import { Client, ErrorCode, PulseError, getClient } from "../index.js";
import { fakeEventSourceClass, fakeFetch, fakeWebSocketClass, settle } from "./fakes.mjs";
import { ackAll, connectWs, setup } from "./helpers.mjs";

/** Run `fn` with globalThis[name] removed (Node 22 has a WebSocket; this checks the absence). */
function without(names, fn) {
  const saved = names.map((n) => [n, Object.getOwnPropertyDescriptor(globalThis, n)]);
  for (const n of names) delete globalThis[n];
  try {
    return fn();
  } finally {
    for (const [n, d] of saved) if (d) Object.defineProperty(globalThis, n, d);
  }
}

test("no WebSocket and no EventSource: a PulseError that says what to inject, no silent polling", () => {
  without(["WebSocket", "EventSource"], () => {
    assert.throws(() => new Client({ baseUrl: "http://pulse.test/" }), (e) => {
      assert.ok(e instanceof PulseError);
      assert.equal(e.code, ErrorCode.NO_TRANSPORT);
      assert.match(e.message, /WebSocket/);
      assert.match(e.message, /`ws` package/);
      return true;
    });
    // Asked for explicitly, polling alone is fine (fetch is there).
    const client = new Client({ baseUrl: "http://pulse.test/", transports: ["polling"], fetch: fakeFetch(() => ({ body: {} })) });
    assert.equal(client.ladder.canPush, false);
    // A transport named explicitly must exist.
    assert.throws(() => new Client({ baseUrl: "http://pulse.test/", transports: ["websocket", "sse"] }),
      (e) => e.code === ErrorCode.NO_TRANSPORT && /"websocket" needs a WebSocket/.test(e.message));
    assert.throws(() => new Client({ baseUrl: "http://pulse.test/", transports: ["polling"], fetch: null }),
      (e) => e.code === ErrorCode.NO_TRANSPORT);
  });
});

test("injected WebSocket, EventSource and fetch are the ones used", async () => {
  await without(["WebSocket", "EventSource"], async () => {
    const WebSocket = fakeWebSocketClass();
    const EventSource = fakeEventSourceClass();
    const fetch = fakeFetch(() => ({ body: { channel: "a", offset: 3, recovered: true, publications: [] } }));
    const client = new Client({ baseUrl: "http://pulse.test/base/", WebSocket, EventSource, fetch, token: "tok" });
    client.subscribe("a");
    client.connect();
    await settle();
    assert.equal(WebSocket.instances.length, 1);
    assert.equal(WebSocket.last.url, "ws://pulse.test/ws");
    WebSocket.last.open();
    assert.deepEqual(WebSocket.last.sent[0], { action: "auth", token: "tok" }, "first-frame auth");
    await client.history("a");
    assert.equal(fetch.calls.length, 1);
    client.close();
  });
});

test("options are checked: unknown names, bad values, baseUrl outside a browser", () => {
  const WebSocket = fakeWebSocketClass();
  assert.throws(() => new Client({ baseUrl: "http://h/", WebSocket, reconectDelay: 5 }),
    (e) => e.code === ErrorCode.BAD_OPTION && /"reconectDelay"/.test(e.message));
  assert.throws(() => new Client({ baseUrl: "http://h/", WebSocket, transports: ["carrier-pigeon"] }),
    (e) => e.code === ErrorCode.BAD_OPTION);
  assert.throws(() => new Client({ baseUrl: "http://h/", WebSocket, onResync: "reload" }),
    (e) => e.code === ErrorCode.BAD_OPTION);
  assert.throws(() => new Client({ WebSocket }), (e) => e.code === ErrorCode.BAD_OPTION && /baseUrl/.test(e.message));
  assert.throws(() => env().client.subscribe("a", { since: -1 }), (e) => e.code === ErrorCode.BAD_OPTION);
  function env() { return setup(); }
});

test("any number of clients, each with its own connection", async () => {
  const a = setup();
  const b = setup();
  a.client.subscribe("x");
  b.client.subscribe("y");
  const wsA = await connectWs(a);
  const wsB = await connectWs(b);
  assert.deepEqual(wsA.frames("subscribe").map((f) => f.channel), ["x"]);
  assert.deepEqual(wsB.frames("subscribe").map((f) => f.channel), ["y"]);
});

test("getClient: one shared client; other options throw instead of being ignored", () => {
  const WebSocket = fakeWebSocketClass();
  const options = { baseUrl: "http://shared.test/", WebSocket };
  const first = getClient(options);
  assert.equal(getClient(), first);
  assert.equal(getClient({ ...options }), first, "equal options are the same client");
  assert.throws(() => getClient({ baseUrl: "http://other.test/", WebSocket }),
    (e) => e.code === ErrorCode.CLIENT_EXISTS && /new Client/.test(e.message));
  first.close();
  const second = getClient({ baseUrl: "http://other.test/", WebSocket });
  assert.notEqual(second, first, "after close() a new shared client");
  second.close();
});

test("history(): GET /history with since and limit, the server's shape, errors as PulseError", async () => {
  const publications = [1, 2, 3, 4].map((offset) => ({ channel: "activity:feed", data: { n: offset }, offset }));
  const fetch = fakeFetch((url, init) => {
    if (url.searchParams.get("channel") === "user:2:progress") {
      return { status: 403, body: { detail: "Forbidden channel: user:2:progress belongs to another user" } };
    }
    const since = Number(url.searchParams.get("since"));
    return { body: { channel: "activity:feed", offset: 4, recovered: true, publications: publications.filter((p) => p.offset > since) } };
  });
  const env = setup({ fetch, token: "tok" });
  const page = await env.client.history("activity:feed", { since: 1, limit: 2 });
  const call = fetch.calls[0];
  assert.equal(call.url.pathname, "/history");
  assert.equal(call.url.searchParams.get("channel"), "activity:feed");
  assert.equal(call.url.searchParams.get("since"), "1");
  assert.equal(call.init.headers.Authorization, "Bearer tok");
  assert.deepEqual(page.publications.map((p) => p.offset), [2, 3]);
  assert.equal(page.truncated, true);
  assert.equal(page.offset, 4);
  assert.equal(page.recovered, true);
  const rest = await env.client.history("activity:feed", { since: 3 });
  assert.deepEqual(rest.publications.map((p) => p.offset), [4]);
  assert.equal(rest.truncated, false);
  await assert.rejects(env.client.history("user:2:progress"), (e) => {
    assert.equal(e.code, ErrorCode.HTTP);
    assert.equal(e.status, 403);
    assert.match(e.reason, /belongs to another user/);
    return true;
  });
  const down = setup({ fetch: async () => { throw new TypeError("fetch failed"); } });
  await assert.rejects(down.client.history("a"), (e) => e.code === ErrorCode.HTTP && e.temporary);
});

test("state and metrics events follow the connection", async () => {
  const env = setup();
  const states = [];
  const metrics = [];
  env.client.on("state", (s) => states.push(s.mode));
  env.client.on("metrics", (m) => metrics.push(m));
  env.client.subscribe("a");
  const ws = await connectWs(env);
  ackAll(ws);
  assert.equal(env.client.state, "websocket");
  assert.deepEqual(states, ["connecting", "websocket"]);
  assert.ok(metrics.some((m) => m.transport === "websocket" && typeof m.latency === "number"),
    "the latency of the first ping");
  assert.deepEqual(metrics.at(-1).channels, ["a"]);
  ws.serverClose(1006);
  await settle();
  assert.equal(states.at(-1), "offline");
  assert.equal(metrics.at(-1).reconnects, 1);
  assert.equal(metrics.at(-1).transport, null);
});
