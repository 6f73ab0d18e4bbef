// Credentials: cookie first, then first-frame auth, the query only for EventSource; 4001 means
// ask for a fresh token, never hammer.

import { test } from "node:test";
import assert from "node:assert/strict";

import { CloseCode, closeCodeName, isAuthFailure, isPromptReconnect } from "../codes.js";
import { tokenExpiry } from "../client.js";
import { fakeJwt, settle } from "./fakes.mjs";
import { ackAll, advanceAlive, connectWs, openWs, setup } from "./helpers.mjs";

test("codes.js mirrors quart_app/realtime/protocol.py", async () => {
  const { readFile } = await import("node:fs/promises");
  const source = await readFile(new URL("../../../quart_app/realtime/protocol.py", import.meta.url), "utf8");
  const block = source.slice(source.indexOf("class CloseCode"), source.indexOf("class ControlFrame"));
  const python = Object.fromEntries([...block.matchAll(/^\s+([A-Z_]+) = (\d+)/gm)]
    .map(([, name, value]) => [name, Number(value)]));
  assert.deepEqual({ ...CloseCode }, python);
  assert.ok(isAuthFailure(4001));
  for (const code of [1012, 4008, 4010]) assert.ok(isPromptReconnect(code));
  for (const code of [1000, 1006, 4001, 4009, 4029]) assert.ok(!isPromptReconnect(code));
  assert.equal(closeCodeName(4008), "SLOW_CONSUMER");
});

test("with a token from getToken: first-frame auth on the socket, never in its URL", async () => {
  const token = fakeJwt({ sub: "1", exp: 4_000_000_000 });
  const env = setup({ getToken: async () => token });
  env.client.subscribe("a", () => {});
  const ws = await connectWs(env);
  assert.equal(new URL(ws.url).search, "");
  assert.deepEqual(ws.sent[0], { action: "auth", token });
  assert.equal(ws.sent[1].action, "ping");
  assert.equal(ws.sent[2].action, "subscribe");
});

test("with a token, EventSource (no headers, no cookie) carries it in the query", async () => {
  const env = setup({ getToken: () => "tok", transports: ["sse"] });
  env.client.subscribe("a", () => {});
  env.client.connect();
  await settle();
  assert.equal(env.ES.last.url.searchParams.get("token"), "tok");
});

test("4001: one request for a fresh token, then a reconnect that uses it", async () => {
  const asked = [];
  const env = setup({ onAuthRequired: async (info) => { asked.push(info); return "fresh"; } });
  env.client.subscribe("a", () => {});
  let ws = await connectWs(env);
  ackAll(ws, { a: 3 });
  ws.serverClose(CloseCode.UNAUTHORIZED, "Token expired");
  await settle();
  assert.equal(asked.length, 1);
  assert.equal(env.client.mode, "unauthorized");
  await env.clock.advance(0);
  ws = env.WS.last;
  assert.equal(env.WS.instances.length, 2);
  ws.open();
  assert.deepEqual(ws.sent[0], { action: "auth", token: "fresh" });
  ws.pong();
  await settle();
  assert.deepEqual(ws.frames("subscribe"), [{ action: "subscribe", channel: "a", since: 3 }]);
  assert.equal(env.client.mode, "websocket");
});

test("4001 again and again: backoff between tries, then stop (no hammering)", async () => {
  let asked = 0;
  const env = setup({ onAuthRequired: async () => { asked += 1; return "still-bad"; }, maxAuthRetries: 3 });
  const events = [];
  env.client.on("auth", (e) => events.push(e));
  env.client.subscribe("a", () => {});
  env.client.connect();
  await settle();
  const times = [];
  for (let i = 0; i < 10; i += 1) {
    const ws = env.WS.last;
    if (ws.readyState === 3) break;
    times.push(env.clock.now());
    ws.open();
    ws.serverClose(CloseCode.UNAUTHORIZED, "Invalid token");
    await settle();
    await env.clock.advance(env.clock.pendingTimeouts()[0] ?? 60_000);
  }
  assert.equal(asked, 3);
  assert.equal(env.WS.instances.length, 4, "the first socket and one per fresh token");
  const gaps = times.slice(1).map((t, i) => t - times[i]);
  assert.ok(gaps[1] >= 1000 && gaps[2] >= 2000, `growing waits: ${gaps}`);
  await env.clock.advance(30 * 60_000);
  assert.equal(env.WS.instances.length, 4, "nothing more until the page acts");
  assert.equal(env.client.mode, "unauthorized");
  assert.equal(env.ES.instances.length, 0, "a refused token is no reason to try SSE");
  assert.deepEqual(events.at(-1), { ok: false, reason: "refused" });
  // setToken() (say, after the user signed in again) starts over.
  env.client.setToken("good");
  await settle();
  await openWs(env);
  assert.equal(env.client.mode, "websocket");
});

test("4001 with no fresh token: the client waits, it does not retry", async () => {
  const env = setup({ onAuthRequired: async () => null });
  env.client.subscribe("a", () => {});
  const ws = await connectWs(env);
  ws.serverClose(CloseCode.UNAUTHORIZED, "Token expired");
  await settle();
  await env.clock.advance(60 * 60_000);
  assert.equal(env.WS.instances.length, 1);
  assert.equal(env.client.mode, "unauthorized");
});

test("onAuthRequired answering true (cookie renewed elsewhere) reconnects with the cookie", async () => {
  const env = setup({ onAuthRequired: async () => true });
  env.client.subscribe("a", () => {});
  const ws = await connectWs(env);
  ws.serverClose(CloseCode.UNAUTHORIZED, "Token expired");
  await settle();
  await env.clock.advance(0);
  const next = await openWs(env);
  assert.equal(next.sent[0].action, "ping", "no auth frame: the cookie carries the session");
  assert.equal(env.client.mode, "websocket");
});

test("a token about to expire is renewed on the live socket with an auth frame", async () => {
  const now = Math.floor(1_700_000_000_000 / 1000); // FakeClock's start
  let token = fakeJwt({ sub: "1", exp: now + 600 });
  const env = setup({ getToken: async () => token });
  assert.equal(Math.floor(env.clock.now() / 1000), now);
  env.client.subscribe("a", () => {});
  const ws = await connectWs(env);
  token = fakeJwt({ sub: "1", exp: now + 4200 });
  await advanceAlive(env, ws, 539_000);
  assert.equal(ws.frames("auth").length, 1, "only the first frame so far");
  await advanceAlive(env, ws, 1000);
  assert.deepEqual(ws.frames("auth").at(-1), { action: "auth", token });
  ws.receive({ type: "authenticated", expires_at: now + 4200 });
  assert.equal(env.client.mode, "websocket");
  assert.equal(tokenExpiry(token), now + 4200);
  assert.equal(tokenExpiry("not a jwt"), null);
});
