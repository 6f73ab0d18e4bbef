// A client wired to fakes, and the few steps most tests share.

import { RealtimeClient } from "../client.js";
import {
  FakeClock, fakeEventSourceClass, fakeFetch, fakeWebSocketClass, settle,
} from "./fakes.mjs";

export const BASE = "http://pulse.test/";

export function setup(options = {}) {
  const clock = new FakeClock();
  const WS = fakeWebSocketClass();
  const ES = fakeEventSourceClass();
  const fetch = options.fetch ?? fakeFetch(() => ({ status: 200, body: { status: "ok" } }));
  const resyncs = [];
  const polls = [];
  const client = new RealtimeClient({
    baseUrl: BASE,
    WebSocket: WS,
    EventSource: ES,
    fetch,
    timers: clock,
    random: () => 0.5,
    onResync: (names) => resyncs.push(names),
    poll: () => { polls.push(clock.now()); },
    ...options,
  });
  const states = [];
  client.on("state", (s) => states.push(s.mode));
  return { clock, WS, ES, fetch, client, resyncs, polls, states };
}

/** Connect and let the WebSocket through: open, answer the ping. */
export async function connectWs(env) {
  env.client.connect();
  await settle();
  return openWs(env);
}

/** Open the latest socket and answer its ping (the link counts as established). */
export async function openWs(env) {
  const ws = env.WS.last;
  ws.open();
  ws.pong();
  await settle();
  return ws;
}

/** Acknowledge every subscribe frame on `ws` with `offsets[channel]` (default 0). */
export function ackAll(ws, offsets = {}, recovered = true) {
  for (const frame of ws.frames("subscribe")) {
    ws.receive({
      type: "subscribed", channel: frame.channel, offset: offsets[frame.channel] ?? 0,
      recovered: frame.since === undefined ? false : recovered,
    });
  }
}

/** Records what a shorthand handler received: data, {channel, offset}, the publication. */
export function recorder() {
  const calls = [];
  const handler = (data, publication) => calls.push({
    data, meta: { channel: publication.channel, offset: publication.offset }, publication,
  });
  handler.calls = calls;
  handler.offsets = () => calls.map((c) => c.meta.offset);
  handler.userOffsets = () => calls.map((c) => c.publication.userOffset);
  return handler;
}

/** Advance `ms`, answering every keepalive ping on `ws` so the link stays up. */
export async function advanceAlive(env, ws, ms) {
  const end = env.clock.now() + ms;
  while (env.clock.now() < end) {
    await env.clock.advance(Math.min(1000, end - env.clock.now()));
    const pings = ws.frames("ping").length;
    if (pings !== ws.answered) {
      ws.answered = pings;
      ws.pong();
    }
  }
}
