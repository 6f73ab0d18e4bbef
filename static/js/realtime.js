// The Pulse realtime client: one connection per page, channels multiplexed over it.
//
//   const client = getClient({ onResync: reloadSnapshot, poll: reloadSnapshot });
//   const off = client.subscribe("dashboard", (data, { channel, offset }) => render(data));
//   client.connect();
//   off(); // the last handler of a channel gone -> unsubscribed on the wire
//
// Transports, best first (DESIGN §12): WebSocket; Server-Sent Events when WebSockets fail
// `fallbackAfter` times in a row; polling of the REST snapshot (and /history) every 30 s when
// both fail. While on SSE the client retries WebSocket every `upgradeIntervalMs`; while polling
// it keeps trying push with backoff, then after every successful poll once it gave up.
//
// No loss across reconnects (DESIGN §9): every subscribe carries `since` (the last offset seen
// on that channel); a publication whose offset is not last+1 triggers a recovery (channel.js);
// an ack with `recovered: false` calls `onResync(channels)` so the page reloads its snapshot.
//
// Credentials (DESIGN §5): the `access_token` cookie first (a same-origin WebSocket and
// EventSource send it by themselves); with a token from `getToken`, a first frame
// {"action":"auth"} on the WebSocket; the `token` query only for EventSource, where neither fits.
// Close code 4001 calls `onAuthRequired` (or `getToken`) once per try, with backoff and at most
// `maxAuthRetries` tries: never a reconnect loop on a refused token.

import { isAuthFailure, isPromptReconnect } from "./codes.js";
import { Channel, Verdict } from "./channel.js";
import { WsTransport, wsUrl } from "./transport_ws.js";
import { SseTransport, formatCursor, sseUrl } from "./transport_sse.js";
import { Poller } from "./poller.js";

export const Mode = Object.freeze({
  IDLE: "idle",
  CONNECTING: "connecting",
  WEBSOCKET: "websocket",
  SSE: "sse",
  POLLING: "polling",
  OFFLINE: "offline",
  UNAUTHORIZED: "unauthorized",
  CLOSED: "closed",
});

export const DEFAULTS = Object.freeze({
  minDelayMs: 1000,
  maxDelayMs: 30_000,
  maxAttempts: 10, // consecutive failed reconnects before the backoff loop stops (polling goes on)
  promptDelayMs: 1000, // 1012/4008/4010: reconnect within this, at random
  pingIntervalMs: 30_000,
  pongTimeoutMs: 10_000, // no frame this long after a ping (or after opening): the link is dead
  fallbackAfter: 2, // failures of one transport in a row before trying the next
  pollIntervalMs: 30_000,
  upgradeIntervalMs: 60_000, // SSE -> WebSocket retry period
  quickUpgradeMs: 3000, // first retry when WebSocket worked earlier on this page (a restart)
  sparseWindowMs: 60_000,
  maxAuthRetries: 3,
  tokenRefreshMarginMs: 60_000,
  transports: ["websocket", "sse", "polling"],
  paths: { ws: "/ws", sse: "/sse", history: "/history", health: "/healthz" },
});

// Timers that belong to one link, cleared when it goes or is replaced.
const LINK_TIMERS = ["establish", "ping", "pong", "latency", "upgrade", "tokenRefresh"];

/** Delay before reconnect attempt `n` (0-based): 1, 2, 4 … 30 s, each jittered down to half, never under 1 s. */
export function backoffDelay(attempt, { minDelayMs, maxDelayMs }, random = Math.random) {
  const ceiling = Math.min(maxDelayMs, minDelayMs * 2 ** Math.min(attempt, 30));
  return Math.max(minDelayMs, ceiling / 2 + (random() * ceiling) / 2);
}

function defaultTimers() {
  const g = globalThis;
  return {
    setTimeout: g.setTimeout.bind(g),
    clearTimeout: g.clearTimeout.bind(g),
    setInterval: g.setInterval.bind(g),
    clearInterval: g.clearInterval.bind(g),
    now: () => Date.now(),
  };
}

export class RealtimeClient {
  /**
   * @param {object} [options] DEFAULTS plus: baseUrl, getToken, onAuthRequired, onResync, poll,
   *   onError, and for tests WebSocket, EventSource, fetch, timers, random, window.
   */
  constructor(options = {}) {
    const g = globalThis;
    const given = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
    this.options = { ...DEFAULTS, ...given, paths: { ...DEFAULTS.paths, ...given.paths } };
    this.baseUrl = options.baseUrl ?? g.location?.href ?? "http://localhost/";
    this._WebSocket = options.WebSocket ?? g.WebSocket;
    this._EventSource = options.EventSource ?? g.EventSource;
    this._fetch = options.fetch ?? (g.fetch ? g.fetch.bind(g) : null);
    this._t = options.timers ?? defaultTimers();
    this._random = options.random ?? Math.random;
    this._token = options.token ?? null;
    this.channels = new Map();
    this.mode = Mode.IDLE;
    this.current = null; // the established transport
    this.pending = null; // a transport being opened: a reconnect, or a probe beside `current`
    this.attempt = 0;
    this.failures = { websocket: 0, sse: 0 };
    const enabled = (name) => this.options.transports.includes(name);
    this.blocked = {
      websocket: !enabled("websocket") || !this._WebSocket,
      sse: !enabled("sse") || !this._EventSource,
    };
    this._canPush = !(this.blocked.websocket && this.blocked.sse);
    this._everWebSocket = false;
    this._alternate = false;
    this._authFailures = 0;
    this._gaveUp = false;
    this._closed = false;
    this._started = false;
    this._epoch = 0;
    this._timers = {};
    this._listeners = new Map();
    this._pendingResync = new Set();
    this._lastPingAt = 0;
    this._lastFrameAt = 0;
    this.retryAt = null;
    this._metrics = { sent: 0, received: 0, reconnects: 0, latency: null, gaps: 0, resyncs: 0 };
    this._poller = new Poller({
      client: this,
      fetch: this._fetch,
      enabled: enabled("polling"),
      intervalMs: this.options.pollIntervalMs,
      timers: this._t,
    });
    this._watchNetwork(options.window ?? g.window);
  }

  // -- public API --------------------------------------------------------------------------
  /** Start connecting (idempotent). Subscribe first so the first connection carries them. */
  connect() {
    if (this._started || this._closed) return this;
    this._started = true;
    this._setMode(this._canPush ? Mode.CONNECTING : Mode.POLLING);
    if (this._canPush) this._attempt();
    else this._poller.start();
    return this;
  }

  /**
   * Call `handler(data, {channel, offset})` for every publication on `channel`. Returns the
   * function that removes it; removing the last handler of a channel unsubscribes on the wire.
   */
  subscribe(channel, handler) {
    let ch = this.channels.get(channel);
    const isNew = !ch;
    if (isNew) {
      ch = new Channel(channel, { sparseWindowMs: this.options.sparseWindowMs });
      this.channels.set(channel, ch);
    }
    ch.handlers.add(handler);
    if (isNew) this._wireSubscribe(ch);
    let active = true;
    return () => {
      if (!active) return;
      active = false;
      ch.handlers.delete(handler);
      if (ch.handlers.size === 0 && this.channels.get(channel) === ch) {
        this.channels.delete(channel);
        this._wireUnsubscribe(ch);
      }
    };
  }

  /** Listen to client events: state, latency, resync, error, auth. Returns the remover. */
  on(event, fn) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(fn);
    return () => this._listeners.get(event)?.delete(fn);
  }

  /** Use `token` from now on; a live WebSocket session is extended with it at once. */
  setToken(token) {
    this._token = token;
    if (this.current?.name === "websocket" && token) this._send({ action: "auth", token });
    if (this.mode === Mode.UNAUTHORIZED) this.reconnect();
  }

  /** Try push again now, with a fresh backoff (the browser came online, the user asked). */
  reconnect() {
    if (this._closed || !this._started) return;
    this.attempt = 0;
    this._gaveUp = false;
    this._authFailures = 0;
    this._clear("reconnect");
    if (!this.current && !this.pending && this._canPush) this._attempt();
  }

  /** Stop everything: sockets, streams, timers, polling. */
  close() {
    this._closed = true;
    this._epoch += 1;
    for (const name of Object.keys(this._timers)) this._clear(name);
    this._poller.stop();
    this.pending?.close();
    this.current?.close();
    this.pending = this.current = null;
    this._setMode(Mode.CLOSED);
  }

  /** Counters for the page and for tests. */
  metrics() {
    return {
      ...this._metrics,
      transport: this.current?.name ?? (this._poller.running ? "polling" : null),
      mode: this.mode,
      attempt: this.attempt,
      channels: [...this.channels.keys()],
    };
  }

  // -- connecting --------------------------------------------------------------------------
  _chooseTransport() {
    if (!this.blocked.websocket) return "websocket";
    if (!this.blocked.sse) return "sse";
    const ws = this.options.transports.includes("websocket") && this._WebSocket;
    const sse = this.options.transports.includes("sse") && this._EventSource;
    if (ws && sse) {
      this._alternate = !this._alternate; // both failed: alternate, so either can bring push back
      return this._alternate ? "websocket" : "sse";
    }
    return ws ? "websocket" : "sse";
  }

  _attempt() {
    this._clear("reconnect");
    this.retryAt = null;
    if (this._closed || this.pending) return;
    if (this._chooseTransport() === "websocket") this._openWs();
    else this._openSse();
  }

  async _openWs() {
    const epoch = this._epoch;
    this.pending = { name: "websocket", close() {} }; // placeholder while the token resolves
    const token = await this._resolveToken();
    if (epoch !== this._epoch || this._closed) return;
    const t = new WsTransport({
      url: wsUrl(this.baseUrl, this.options.paths.ws),
      WebSocket: this._WebSocket,
      onOpen: () => {
        // First frame auth when we hold a token; otherwise the cookie already did it. The ping
        // gets the first answer, which is what makes the link count as established.
        if (token) this._sendOn(t, { action: "auth", token });
        this._ping(t);
      },
      onFrame: (frame) => this._onFrame(t, frame),
      onClose: (info) => this._onTransportClosed(t, info),
    });
    this._start(t);
  }

  async _openSse() {
    const names = [...this.channels.keys()];
    if (names.length === 0) {
      this.pending = null; // nothing to stream yet: the first subscribe opens it
      return;
    }
    const epoch = this._epoch;
    this.pending = { name: "sse", close() {} };
    const token = await this._resolveToken();
    if (epoch !== this._epoch || this._closed) return;
    const offsets = new Map();
    for (const ch of this.channels.values()) {
      const since = ch.beginSubscribe();
      if (since !== undefined) offsets.set(ch.name, since);
    }
    const url = sseUrl(this.baseUrl, [...this.channels.keys()], formatCursor(offsets), token,
      this.options.paths.sse);
    const t = new SseTransport({
      url,
      EventSource: this._EventSource,
      onOpen: () => this._established(t),
      onFrame: (frame) => this._onFrame(t, frame),
      onClose: (info) => this._onTransportClosed(t, info),
    });
    if (this.current?.name === "sse") {
      const old = this.current; // a new channel set: the new stream replaces the old one
      this.current = null;
      old.close();
    }
    this._start(t);
  }

  _start(t) {
    this.pending = t;
    this._set("establish", this._t.setTimeout(() => {
      if (this.pending === t) this._fail(t, "no answer");
    }, this.options.pongTimeoutMs));
    try {
      t.open();
    } catch {
      this._fail(t, "could not open");
    }
  }

  _established(t) {
    if (t !== this.pending) return;
    for (const name of LINK_TIMERS) this._clear(name);
    const previous = this.current;
    this.pending = null;
    this.current = t;
    previous?.close(); // moving up from SSE: the WebSocket replaces the stream
    this.attempt = 0;
    this._gaveUp = false;
    this._authFailures = 0;
    this.failures[t.name] = 0;
    this.blocked[t.name] = false;
    this.retryAt = null;
    this._poller.stop();
    if (t.name === "websocket") {
      this._everWebSocket = true;
      for (const ch of this.channels.values()) this._subscribeOn(t, ch);
      this._set("ping", this._t.setInterval(() => this._keepalive(t), this.options.pingIntervalMs));
      this._scheduleTokenRefresh();
    } else {
      this._measureHttpLatency();
      this._set("latency", this._t.setInterval(() => this._measureHttpLatency(),
        this.options.pingIntervalMs));
      this._scheduleUpgrade(this._everWebSocket ? this.options.quickUpgradeMs
        : this.options.upgradeIntervalMs);
    }
    this._setMode(t.name);
  }

  _fail(t, reason) {
    t.close();
    this._onTransportClosed(t, { code: null, reason, opened: t.opened });
  }

  _onTransportClosed(t, { code, opened }) {
    const wasCurrent = t === this.current;
    if (t === this.pending) {
      this.pending = null;
      this._clear("establish");
    } else if (wasCurrent) {
      this.current = null;
      for (const name of LINK_TIMERS) this._clear(name);
    } else {
      return; // a transport we already replaced
    }
    if (this._closed) return;
    if (!wasCurrent && this.current) {
      this._countFailure(t.name); // a probe beside a live transport failed: keep the live one
      return;
    }
    if (isAuthFailure(code)) {
      this._authRequired(); // refused credentials are no reason to try another transport
      return;
    }
    if (!wasCurrent) this._countFailure(t.name);
    if (this.blocked.websocket && this.blocked.sse) this._poller.start();
    const prompt = wasCurrent && (t.name === "sse" || isPromptReconnect(code));
    this._scheduleReconnect(prompt);
  }

  _countFailure(name) {
    this.failures[name] += 1;
    if (this.failures[name] >= this.options.fallbackAfter) this.blocked[name] = true;
  }

  _scheduleReconnect(prompt) {
    if (this._gaveUp || this._closed) return;
    if (this.attempt >= this.options.maxAttempts) {
      this._gaveUp = true; // stop hammering; polling goes on and probes push when it succeeds
      this._poller.start();
      this._setMode(this._poller.running && this._poller.ok ? Mode.POLLING : Mode.OFFLINE, true);
      return;
    }
    const delay = prompt && this.attempt === 0
      ? this._random() * this.options.promptDelayMs
      : backoffDelay(this.attempt, this.options, this._random);
    this.attempt += 1;
    this._metrics.reconnects += 1;
    this.retryAt = this._t.now() + delay;
    this._set("reconnect", this._t.setTimeout(() => this._attempt(), delay));
    this._setMode(this._poller.running && this._poller.ok ? Mode.POLLING : Mode.OFFLINE, true);
  }

  _scheduleUpgrade(delay) {
    if (this.blocked.websocket && !this._WebSocket) return;
    if (!this.options.transports.includes("websocket")) return;
    this._set("upgrade", this._t.setTimeout(() => {
      if (this.current?.name === "sse" && !this.pending) this._openWs();
      this._scheduleUpgrade(this.options.upgradeIntervalMs);
    }, delay));
  }

  /** Called by the poller after a successful poll: push may be reachable again. */
  _pollSucceeded() {
    if (this.current) return;
    if (this.mode !== Mode.UNAUTHORIZED) this._setMode(Mode.POLLING);
    if (this._gaveUp && !this.pending && this._canPush) {
      this._gaveUp = false;
      this.attempt = this.options.maxAttempts; // one probe; if it fails, wait for the next poll
      this._attempt();
    }
  }

  _pollFailed(status) {
    if (this.current) return;
    if (status === 401) {
      this._authRequired();
      return;
    }
    if (this.mode !== Mode.UNAUTHORIZED) this._setMode(Mode.OFFLINE, true);
  }

  // -- authentication ----------------------------------------------------------------------
  async _resolveToken() {
    const getToken = this.options.getToken;
    if (getToken) {
      try {
        const token = await getToken();
        if (token) this._token = token;
      } catch {
        // keep the token we had
      }
    }
    return this._token;
  }

  async _authRequired() {
    this._authFailures += 1;
    this._clear("reconnect");
    this._poller.stop();
    this._setMode(Mode.UNAUTHORIZED);
    const ask = this.options.onAuthRequired ?? this.options.getToken;
    if (!ask || this._authFailures > this.options.maxAuthRetries) {
      this._emit("auth", { ok: false, reason: "refused" });
      return; // wait for setToken() or reconnect()
    }
    const epoch = this._epoch;
    let answer = null;
    try {
      answer = await ask({ reason: "unauthorized", attempt: this._authFailures });
    } catch {
      answer = null;
    }
    if (epoch !== this._epoch || this._closed) return;
    if (typeof answer === "string" && answer) this._token = answer;
    else if (answer !== true) {
      this._emit("auth", { ok: false, reason: "no token" });
      return;
    }
    const delay = this._authFailures === 1 ? 0
      : backoffDelay(this._authFailures - 1, this.options, this._random);
    this._set("reconnect", this._t.setTimeout(() => this._attempt(), delay));
  }

  _scheduleTokenRefresh() {
    const exp = tokenExpiry(this._token);
    if (!exp || !this.options.getToken) return;
    const delay = exp * 1000 - this._t.now() - this.options.tokenRefreshMarginMs;
    this._set("tokenRefresh", this._t.setTimeout(async () => {
      const before = this._token;
      const token = await this._resolveToken();
      if (token && token !== before && this.current?.name === "websocket") {
        this._send({ action: "auth", token }); // extends the live session (DESIGN §5)
      }
      if (tokenExpiry(token) !== exp) this._scheduleTokenRefresh();
    }, Math.max(0, delay)));
  }

  // -- frames ------------------------------------------------------------------------------
  _onFrame(t, frame) {
    this._metrics.received += 1;
    this._lastFrameAt = this._t.now();
    if (t === this.pending && t.name === "websocket") this._established(t);
    if (t !== this.current) return;
    switch (frame.type) {
      case "subscribed":
        return this._handleSubscribed(frame);
      case "unsubscribed":
        return this.channels.get(frame.channel)?.drained();
      case "pong":
        return this._handlePong(frame);
      case "authenticated":
        return this._emit("auth", { ok: true, expiresAt: frame.expires_at });
      case "error":
        this.options.onError?.(frame.message);
        return this._emit("error", frame.message);
      default:
        if (typeof frame.channel === "string" && frame.data !== undefined) this._publication(frame);
    }
  }

  /** A publication from any transport (or from /history while polling). */
  _publication(frame) {
    const ch = this.channels.get(frame.channel);
    if (!ch) return;
    const verdict = ch.classify(frame.offset, this._t.now());
    if (verdict === Verdict.DELIVER) {
      ch.deliver(frame.data, { channel: frame.channel, offset: frame.offset ?? null },
        (error, name) => this._handlerError(error, name));
    } else if (verdict === Verdict.GAP) {
      this._metrics.gaps += 1;
      this._recover(ch);
    }
  }

  _handleSubscribed(frame) {
    const ch = this.channels.get(frame.channel);
    if (ch && ch.acknowledge(frame.offset, frame.recovered === true, this._t.now())) {
      this._resync(ch.name);
    }
  }

  /** A gap: subscribe again from the last offset delivered. */
  _recover(ch) {
    if (this.current?.name === "websocket") {
      ch.sinceSent = true;
      ch.beginDrain();
      this._send({ action: "unsubscribe", channel: ch.name });
      this._send({ action: "subscribe", channel: ch.name, since: ch.last });
    } else if (this.current?.name === "sse") {
      this._reopenSse();
    }
  }

  _resync(name) {
    this._pendingResync.add(name);
    if (this._timers.resync) return;
    // One reload for every channel that could not recover in the same reconnect.
    this._set("resync", this._t.setTimeout(() => {
      delete this._timers.resync;
      const names = [...this._pendingResync];
      this._pendingResync.clear();
      this._metrics.resyncs += 1;
      try {
        this.options.onResync?.(names);
      } catch (error) {
        this._handlerError(error, "onResync");
      }
      this._emit("resync", names);
    }, 0));
  }

  _handlerError(error, where) {
    this._emit("error", `handler for ${where} failed: ${error?.message ?? error}`);
    globalThis.console?.error?.(error);
  }

  // -- subscriptions on the wire -----------------------------------------------------------
  _wireSubscribe(ch) {
    const t = this.current;
    if (t?.name === "websocket") this._subscribeOn(t, ch);
    else if (t?.name === "sse") this._reopenSse();
    else if (this._started && !this.pending && !this._timers.reconnect && this._canPush
      && !this._gaveUp && this.mode !== Mode.UNAUTHORIZED) this._attempt();
  }

  _wireUnsubscribe(ch) {
    if (this.current?.name === "websocket") this._send({ action: "unsubscribe", channel: ch.name });
    else if (this.current?.name === "sse" && this.channels.size > 0) this._reopenSse();
  }

  _subscribeOn(t, ch) {
    const since = ch.beginSubscribe();
    const frame = { action: "subscribe", channel: ch.name };
    if (since !== undefined) frame.since = since;
    this._sendOn(t, frame);
  }

  _reopenSse() {
    if (this._timers.sseReopen) return; // several changes in one tick: one new stream
    this._set("sseReopen", this._t.setTimeout(() => {
      delete this._timers.sseReopen;
      if (this.current?.name === "sse" && !this.pending) this._openSse();
    }, 0));
  }

  _send(frame) {
    return this.current ? this._sendOn(this.current, frame) : false;
  }

  _sendOn(t, frame) {
    const sent = t.send(frame);
    if (sent) this._metrics.sent += 1;
    return sent;
  }

  // -- liveness and latency ----------------------------------------------------------------
  _ping(t) {
    this._lastPingAt = this._t.now();
    this._sendOn(t, { action: "ping", ts: this._lastPingAt });
  }

  _keepalive(t) {
    if (t !== this.current) return;
    this._ping(t);
    const sentAt = this._lastPingAt;
    this._set("pong", this._t.setTimeout(() => {
      if (t === this.current && this._lastFrameAt < sentAt) this._fail(t, "pong timeout");
    }, this.options.pongTimeoutMs));
  }

  _handlePong(frame) {
    if (typeof frame.ts !== "number") return;
    this._setLatency(Math.max(0, this._t.now() - frame.ts));
  }

  async _measureHttpLatency() {
    if (!this._fetch) return;
    const started = this._t.now();
    try {
      const url = new URL(this.options.paths.health, this.baseUrl).toString();
      const response = await this._fetch(url, { cache: "no-store", credentials: "same-origin" });
      if (response.ok) this._setLatency(Math.max(0, this._t.now() - started));
    } catch {
      // the stream's own error handling notices a dead server
    }
  }

  _setLatency(ms) {
    this._metrics.latency = ms;
    this._emit("latency", ms);
  }

  // -- plumbing ----------------------------------------------------------------------------
  _setMode(mode, force = false) {
    if (mode === this.mode && !force) return;
    this.mode = mode;
    if (mode !== Mode.WEBSOCKET && mode !== Mode.SSE && mode !== Mode.POLLING) {
      this._metrics.latency = null;
    }
    this._emit("state", { mode, transport: this.current?.name ?? null, retryAt: this.retryAt });
  }

  _emit(event, payload) {
    for (const fn of [...(this._listeners.get(event) ?? [])]) {
      try {
        fn(payload);
      } catch (error) {
        globalThis.console?.error?.(error);
      }
    }
  }

  _set(name, handle) {
    this._clear(name);
    this._timers[name] = handle;
  }

  _clear(name) {
    const handle = this._timers[name];
    if (handle === undefined) return;
    this._t.clearTimeout(handle);
    this._t.clearInterval(handle);
    delete this._timers[name];
  }

  _watchNetwork(win) {
    if (!win?.addEventListener) return;
    win.addEventListener("online", () => {
      if (!this.current) this.reconnect();
    });
  }
}

/** `exp` (seconds) of a JWT, or null; the page never needs to verify it, only to time a refresh. */
export function tokenExpiry(token) {
  if (typeof token !== "string") return null;
  const part = token.split(".")[1];
  if (!part) return null;
  try {
    const json = globalThis.atob(part.replace(/-/g, "+").replace(/_/g, "/"));
    const exp = JSON.parse(json).exp;
    return Number.isFinite(exp) ? exp : null;
  } catch {
    return null;
  }
}

let shared = null;

/** The page's one client (DESIGN §12: one connection per page). Options apply on first call. */
export function getClient(options) {
  if (!shared) shared = new RealtimeClient(options);
  return shared;
}
