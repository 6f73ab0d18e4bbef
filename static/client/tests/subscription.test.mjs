// Subscription objects: every state and event, the refused subscription, shared channels.

import { test } from "node:test";
import assert from "node:assert/strict";

import { CloseCode } from "../codes.js";
import { ErrorCode, PulseError } from "../errors.js";
import { settle } from "./fakes.mjs";
import { ackAll, connectWs, openWs, setup } from "./helpers.mjs";

/** Every event of `sub`, as [name, payload] pairs. */
function record(sub) {
  const events = [];
  for (const name of ["state", "subscribed", "publication", "error", "unsubscribed"]) {
    sub.on(name, (payload) => events.push([name, payload]));
  }
  events.named = (name) => events.filter(([n]) => n === name).map(([, p]) => p);
  events.states = () => events.named("state").map((s) => s.state);
  return events;
}

test("subscribing -> subscribed (recovered false) -> publications -> unsubscribed", async () => {
  const env = setup();
  const sub = env.client.subscribe("dashboard");
  const events = record(sub);
  assert.equal(sub.state, "subscribing");
  assert.equal(sub.channel, "dashboard");
  const ws = await connectWs(env);
  ws.receive({ type: "subscribed", channel: "dashboard", offset: 4, recovered: false, epoch: "e1" });
  assert.equal(sub.state, "subscribed");
  assert.deepEqual(events.named("subscribed"), [{
    channel: "dashboard", recovered: false, resubscribed: false, offset: 4, userOffset: null, epoch: "e1",
  }]);
  ws.receive({ channel: "dashboard", data: { type: "feed_item", id: 1 }, offset: 5 });
  assert.deepEqual(events.named("publication"), [
    { channel: "dashboard", data: { type: "feed_item", id: 1 }, offset: 5, userOffset: null },
  ]);
  assert.equal(sub.offset, 5);
  assert.equal(sub.epoch, "e1");
  sub.unsubscribe();
  sub.unsubscribe();
  assert.equal(sub.state, "unsubscribed");
  assert.deepEqual(events.named("unsubscribed"), [{ channel: "dashboard", reason: "unsubscribe" }]);
  assert.deepEqual(events.states(), ["subscribed", "unsubscribed"]);
  assert.deepEqual(ws.frames("unsubscribe"), [{ action: "unsubscribe", channel: "dashboard" }]);
  ws.receive({ channel: "dashboard", data: {}, offset: 6 });
  assert.equal(events.named("publication").length, 1, "nothing after unsubscribe");
});

test("ready() resolves on the ack; a reconnect goes through subscribing and recovers", async () => {
  const env = setup();
  const sub = env.client.subscribe("a", { since: 7 });
  const events = record(sub);
  let ws = await connectWs(env);
  assert.deepEqual(ws.frames("subscribe"), [{ action: "subscribe", channel: "a", since: 7 }],
    "the since given to subscribe() goes out with the first subscribe");
  const ready = sub.ready();
  ackAll(ws, { a: 9 });
  assert.equal(await ready, sub);
  ws.serverClose(CloseCode.SERVICE_RESTART);
  await settle();
  assert.equal(sub.state, "subscribing", "the link went: waiting for the next ack");
  await env.clock.advance(env.clock.pendingTimeouts()[0]);
  ws = await openWs(env);
  assert.deepEqual(ws.frames("subscribe"), [{ action: "subscribe", channel: "a", since: 9 }]);
  ackAll(ws, { a: 9 });
  assert.deepEqual(events.states(), ["subscribed", "subscribing", "subscribed"]);
  assert.deepEqual(events.named("subscribed").map((e) => [e.recovered, e.resubscribed]),
    [[true, false], [true, true]]);
});

test("a refused subscription fails with the server's reason, leaves metrics, is never retried", async () => {
  const env = setup();
  const errors = [];
  env.client.on("error", (e) => errors.push(e));
  const ok = env.client.subscribe("dashboard");
  const sub = env.client.subscribe("user:2:progress");
  const twin = env.client.subscribe("user:2:progress");
  const events = record(sub);
  const ready = sub.ready();
  let ws = await connectWs(env);
  const reason = "Forbidden channel: user:2:progress belongs to another user";
  ws.receive({ type: "error", message: reason, channel: "user:2:progress", code: "forbidden" });
  assert.equal(sub.state, "failed");
  assert.equal(twin.state, "failed", "every subscription on the channel fails");
  assert.ok(sub.error instanceof PulseError);
  assert.equal(sub.error.code, ErrorCode.SUBSCRIBE_REFUSED);
  assert.equal(sub.error.reason, reason);
  assert.equal(sub.error.channel, "user:2:progress");
  assert.equal(sub.error.serverCode, "forbidden", "the server's code, when the frame has one");
  assert.deepEqual(events.named("error"), [sub.error]);
  assert.deepEqual(events.states(), ["failed"]);
  await assert.rejects(ready, (e) => e === sub.error);
  await assert.rejects(sub.ready(), (e) => e === sub.error);
  assert.deepEqual(env.client.metrics().channels, ["dashboard"]);
  assert.equal(errors.at(-1), sub.error, "the client's error event hears of it too");
  sub.unsubscribe(); // no-op on a failed one
  assert.equal(ws.frames("unsubscribe").length, 0);
  // A reconnect subscribes the others only.
  ackAll(ws, { dashboard: 1 });
  ws.serverClose(CloseCode.SERVICE_RESTART);
  await settle();
  await env.clock.advance(env.clock.pendingTimeouts()[0]);
  ws = await openWs(env);
  assert.deepEqual(ws.frames("subscribe").map((f) => f.channel), ["dashboard"]);
  assert.equal(ok.state, "subscribing");
  // Asking again is a new, explicit attempt.
  const again = env.client.subscribe("user:2:progress");
  assert.equal(again.state, "subscribing");
  assert.deepEqual(ws.frames("subscribe").at(-1), { action: "subscribe", channel: "user:2:progress" });
});

test("an error frame without a channel is a client error, no subscription fails", async () => {
  const env = setup();
  const errors = [];
  env.client.on("error", (e) => errors.push(e));
  const sub = env.client.subscribe("a");
  const ws = await connectWs(env);
  ackAll(ws);
  ws.receive({ type: "error", message: "Rate limit exceeded (max 20 messages/s): message dropped" });
  assert.equal(sub.state, "subscribed");
  assert.equal(errors[0].code, ErrorCode.SERVER_ERROR);
  assert.match(errors[0].reason, /Rate limit/);
});

test("temporarily unavailable: an error event, the subscription stays and is retried with backoff", async () => {
  const env = setup();
  const sub = env.client.subscribe("mining");
  const events = record(sub);
  const ws = await connectWs(env);
  ws.receive({ type: "error", message: "Temporarily unavailable: cannot subscribe to mining", channel: "mining" });
  assert.equal(sub.state, "subscribing");
  assert.equal(events.named("error")[0].code, ErrorCode.SUBSCRIBE_UNAVAILABLE);
  assert.equal(events.named("error")[0].temporary, true);
  assert.equal(ws.frames("subscribe").length, 1);
  await env.clock.advance(1000);
  assert.equal(ws.frames("subscribe").length, 2, "subscribed again after the backoff");
  ackAll(ws);
  assert.equal(sub.state, "subscribed");
});

test("several subscriptions on one channel share one server subscription", async () => {
  const env = setup();
  const first = env.client.subscribe("a");
  const ws = await connectWs(env);
  ackAll(ws, { a: 2 });
  const second = env.client.subscribe("a");
  const events = record(second);
  assert.equal(second.state, "subscribed", "joining a live channel: subscribed at once");
  await settle();
  assert.deepEqual(events.named("subscribed").map((e) => e.recovered), [false]);
  assert.equal(ws.frames("subscribe").length, 1, "one subscribe on the wire");
  const seen = [];
  first.on("publication", (p) => seen.push(["first", p.offset]));
  second.on("publication", (p) => seen.push(["second", p.offset]));
  ws.receive({ channel: "a", data: {}, offset: 3 });
  assert.deepEqual(seen, [["first", 3], ["second", 3]]);
  first.unsubscribe();
  assert.equal(ws.frames("unsubscribe").length, 0, "the second still listens");
  ws.receive({ channel: "a", data: {}, offset: 4 });
  assert.deepEqual(seen.at(-1), ["second", 4]);
  second.unsubscribe();
  assert.deepEqual(ws.frames("unsubscribe"), [{ action: "unsubscribe", channel: "a" }]);
  assert.deepEqual(env.client.metrics().channels, []);
});

test("close() ends every subscription; subscribe() after close throws", async () => {
  const env = setup();
  const sub = env.client.subscribe("a");
  const events = record(sub);
  const ready = sub.ready();
  await connectWs(env);
  env.client.close();
  assert.equal(sub.state, "unsubscribed");
  assert.deepEqual(events.named("unsubscribed"), [{ channel: "a", reason: "client closed" }]);
  await assert.rejects(ready, (e) => e.code === ErrorCode.CLOSED);
  assert.throws(() => env.client.subscribe("b"), (e) => e.code === ErrorCode.CLOSED);
  assert.throws(() => env.client.subscribe(""), PulseError);
});

test("personal offsets: a hole in user_offset is recovered too, with user_since", async () => {
  const env = setup();
  const sub = env.client.subscribe("dashboard");
  const seen = [];
  sub.on("publication", (p) => seen.push([p.offset, p.userOffset]));
  const ws = await connectWs(env);
  ws.receive({ type: "subscribed", channel: "dashboard", offset: 10, recovered: false, user_offset: 3, epoch: "E" });
  ws.receive({ channel: "dashboard", data: {}, offset: 11 });
  ws.receive({ channel: "dashboard", data: {}, user_offset: 4 }); // personal: the next one there
  ws.receive({ channel: "dashboard", data: {}, offset: 13 }); // shared 12 missing: a real loss
  assert.deepEqual(ws.sent.slice(-2), [
    { action: "unsubscribe", channel: "dashboard" },
    { action: "subscribe", channel: "dashboard", since: 11, user_since: 4, epoch: "E" },
  ]);
  ws.receive({ type: "unsubscribed", channel: "dashboard" });
  ws.receive({ channel: "dashboard", data: {}, offset: 12 });
  ws.receive({ channel: "dashboard", data: {}, offset: 13 });
  ws.receive({ type: "subscribed", channel: "dashboard", offset: 13, recovered: true, user_offset: 4, epoch: "E" });
  ws.receive({ channel: "dashboard", data: {}, user_offset: 6 }); // personal 5 missing
  assert.deepEqual(ws.sent.slice(-1), [
    { action: "subscribe", channel: "dashboard", since: 13, user_since: 4, epoch: "E" },
  ]);
  ws.receive({ channel: "dashboard", data: {}, user_offset: 5 }); // dropped: draining
  assert.deepEqual(seen, [[11, null], [null, 4], [12, null], [13, null]]);
  assert.equal(env.client.metrics().gaps, 2);
  // The `"user_offset": true` form: `offset` is the personal one.
  ws.receive({ type: "unsubscribed", channel: "dashboard" });
  ws.receive({ channel: "dashboard", data: {}, offset: 5, user_offset: true });
  assert.deepEqual(seen.at(-1), [null, 5]);
  assert.equal(sub.userOffset, 5);
});
