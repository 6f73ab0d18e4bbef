// URLs and the SSE resume cursor: `<channel>:<offset>[/<user_offset>][@<epoch>]`.

import { test } from "node:test";
import assert from "node:assert/strict";

import { formatCursor, parseCursor, sseUrl } from "../transport_sse.js";
import { wsUrl } from "../transport_ws.js";
import { ackAll, connectWs, recorder, setup } from "./helpers.mjs";
import { settle } from "./fakes.mjs";

test("URLs: ws(s) from the page's scheme; the SSE cursor round-trips", () => {
  assert.equal(wsUrl("http://h:8400/x?y=1"), "ws://h:8400/ws");
  assert.equal(wsUrl("https://h/"), "wss://h/ws");
  const cursor = formatCursor(new Map([["dashboard", 12], ["leaderboard:hashrate", 3], ["x", null]]));
  assert.equal(cursor, "dashboard:12,leaderboard:hashrate:3");
  assert.deepEqual([...parseCursor(cursor)], [["dashboard", { since: 12 }], ["leaderboard:hashrate", { since: 3 }]]);
  const url = new URL(sseUrl("http://h/", ["a", "b"], cursor));
  assert.equal(url.searchParams.get("channels"), "a,b");
  assert.equal(url.searchParams.get("last_event_id"), cursor);
  assert.equal(url.searchParams.get("token"), null);
});

test("the cursor carries the personal offset and the epoch only when known", () => {
  const cursors = new Map([
    ["dashboard", { since: 7, user_since: 3, epoch: "e1" }],
    ["mining", { since: 2, epoch: "e9" }],
    ["user:1:achievements", { since: 4, user_since: 0 }],
    ["competition", {}],
  ]);
  const text = formatCursor(cursors);
  assert.equal(text, "dashboard:7/3@e1,mining:2@e9,user:1:achievements:4/0");
  assert.deepEqual(Object.fromEntries(parseCursor(text)), {
    dashboard: { since: 7, user_since: 3, epoch: "e1" },
    mining: { since: 2, epoch: "e9" },
    "user:1:achievements": { since: 4, user_since: 0 },
  });
  assert.deepEqual([...parseCursor("a:x,b:1/y,:3,c:5/6/7,d:9")], [["d", { since: 9 }]]);
});

test("on SSE the stream is reopened with both offsets and the epoch of each channel", async () => {
  const env = setup({ transports: ["sse", "polling"] });
  const a = recorder();
  env.client.subscribe("dashboard", a);
  env.client.connect();
  await settle();
  let es = env.ES.last;
  assert.equal(es.cursor, null, "nothing known yet: no cursor");
  es.open();
  es.message({ type: "subscribed", channel: "dashboard", offset: 4, recovered: false, epoch: "E", user_offset: 1 });
  es.message({ channel: "dashboard", data: {}, offset: 5 });
  es.message({ channel: "dashboard", data: {}, user_offset: 2 });
  es.message({ channel: "dashboard", data: {}, user_offset: 4 }); // personal 3 went missing
  await env.clock.advance(0);
  es = env.ES.last;
  assert.equal(env.ES.instances.length, 2);
  assert.equal(es.cursor, "dashboard:5/2@E");
  assert.deepEqual(a.offsets(), [5, null]);
  assert.deepEqual(a.userOffsets(), [null, 2]);
});

test("WebSocket resubscribes send since, user_since and epoch", async () => {
  const env = setup();
  env.client.subscribe("dashboard", () => {});
  let ws = await connectWs(env);
  ws.receive({ type: "subscribed", channel: "dashboard", offset: 10, recovered: false, epoch: "ep-1", user_offset: 0 });
  ws.receive({ channel: "dashboard", data: {}, user_offset: 1 });
  ws.serverClose(1012);
  await settle();
  await env.clock.advance(env.clock.pendingTimeouts()[0]);
  ws = env.WS.last;
  ws.open();
  ws.pong();
  await settle();
  assert.deepEqual(ws.frames("subscribe"), [
    { action: "subscribe", channel: "dashboard", since: 10, user_since: 1, epoch: "ep-1" },
  ]);
  ackAll(ws, { dashboard: 10 });
});
