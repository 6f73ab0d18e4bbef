// Test doubles for the realtime client: a manual clock, WebSocket, EventSource and fetch.
// Nothing here touches the network or real timers.

import { setImmediate as tick } from "node:timers/promises";

/** Timers that only move when the test says so. */
export class FakeClock {
  constructor(start = 1_700_000_000_000) {
    this.time = start;
    this._seq = 0;
    this._timers = new Map();
    this.now = () => this.time;
    this.setTimeout = (fn, ms = 0) => this._add(fn, ms, null);
    this.setInterval = (fn, ms = 0) => this._add(fn, ms, Math.max(1, ms));
    this.clearTimeout = (id) => this._timers.delete(id);
    this.clearInterval = (id) => this._timers.delete(id);
  }

  _add(fn, ms, interval) {
    const id = ++this._seq;
    this._timers.set(id, { at: this.time + Math.max(0, ms), fn, interval, seq: id });
    return id;
  }

  /** Pending timeouts (not intervals) as delays from now, soonest first. */
  pendingTimeouts() {
    return [...this._timers.values()].filter((t) => t.interval === null)
      .map((t) => t.at - this.time).sort((a, b) => a - b);
  }

  /** Run every timer due within `ms`, in order, letting promises settle in between. */
  async advance(ms) {
    const end = this.time + ms;
    await settle();
    for (;;) {
      let next = null;
      for (const [id, timer] of this._timers) {
        if (timer.at <= end && (!next || timer.at < next[1].at
          || (timer.at === next[1].at && timer.seq < next[1].seq))) next = [id, timer];
      }
      if (!next) break;
      const [id, timer] = next;
      this.time = Math.max(this.time, timer.at);
      if (timer.interval) timer.at += timer.interval;
      else this._timers.delete(id);
      timer.fn();
      await settle();
    }
    this.time = end;
    await settle();
  }
}

/** Let pending promise chains (async handlers, fake fetch) run to completion. */
export async function settle(rounds = 5) {
  for (let i = 0; i < rounds; i += 1) await tick();
}

/** A WebSocket class whose instances the test drives from the server's side. */
export function fakeWebSocketClass() {
  class FakeWebSocket {
    static instances = [];

    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.sent = [];
      this.closedWith = null;
      this.onopen = this.onmessage = this.onerror = this.onclose = null;
      FakeWebSocket.instances.push(this);
    }

    static get last() {
      return FakeWebSocket.instances.at(-1);
    }

    send(data) {
      if (this.readyState !== 1) throw new Error("not open");
      this.sent.push(JSON.parse(data));
    }

    close(code = 1000, reason = "") {
      this.closedWith = { code, reason };
      this.readyState = 3;
    }

    // -- the server's side ----------------------------------------------------------------
    open() {
      this.readyState = 1;
      this.onopen?.({});
    }

    receive(frame) {
      this.onmessage?.({ data: JSON.stringify(frame) });
    }

    serverClose(code, reason = "") {
      this.readyState = 3;
      this.onclose?.({ code, reason });
    }

    /** The connection never got through (refused, proxy, server down). */
    refuse() {
      this.readyState = 3;
      this.onerror?.({});
      this.onclose?.({ code: 1006, reason: "" });
    }

    /** Answer the client's last ping, as the server does (ts echoed). */
    pong() {
      const ping = [...this.sent].reverse().find((f) => f.action === "ping");
      this.receive({ type: "pong", ts: ping?.ts });
    }

    frames(action) {
      return this.sent.filter((f) => f.action === action);
    }
  }
  return FakeWebSocket;
}

/** An EventSource class whose instances the test drives from the server's side. */
export function fakeEventSourceClass() {
  class FakeEventSource {
    static instances = [];

    constructor(url) {
      this.url = new URL(url);
      this.readyState = 0;
      this.closed = false;
      this.onopen = this.onmessage = this.onerror = null;
      FakeEventSource.instances.push(this);
    }

    static get last() {
      return FakeEventSource.instances.at(-1);
    }

    get channels() {
      return this.url.searchParams.get("channels");
    }

    get cursor() {
      return this.url.searchParams.get("last_event_id");
    }

    close() {
      this.closed = true;
      this.readyState = 2;
    }

    open() {
      this.readyState = 1;
      this.onopen?.({});
    }

    message(frame, id = "") {
      this.onmessage?.({ data: JSON.stringify(frame), lastEventId: id });
    }

    error() {
      this.onerror?.({});
    }
  }
  return FakeEventSource;
}

/**
 * fetch that answers from `route(url, init)` -> {status, body} | throws (network error).
 * Every call is recorded in `fetch.calls`.
 */
export function fakeFetch(route) {
  const fetch = async (url, init = {}) => {
    const parsed = new URL(url);
    fetch.calls.push({ url: parsed, init });
    const answer = await route(parsed, init);
    const status = answer.status ?? 200;
    return {
      status,
      ok: status >= 200 && status < 300,
      json: async () => answer.body,
    };
  };
  fetch.calls = [];
  return fetch;
}

/** A JWT-shaped token (unsigned: the client only reads `exp`). */
export function fakeJwt(claims) {
  const b64 = (obj) => Buffer.from(JSON.stringify(obj)).toString("base64url");
  return `${b64({ alg: "HS256", typ: "JWT" })}.${b64(claims)}.sig`;
}
