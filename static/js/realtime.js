// The Pulse realtime client: one connection per page, channels multiplexed over it.
//
//   const client = getClient({ onResync: reloadSnapshot, poll: reloadSnapshot });
//   const off = client.subscribe("dashboard", (data, { channel, offset }) => render(data));
//   client.connect();
//   off(); // the last handler of a channel gone -> unsubscribed on the wire
//
// Transports, best first (DESIGN §12; ladder.js): WebSocket; Server-Sent Events when WebSockets
// fail; polling of the REST snapshot and /history every 30 s when both fail (poller.js). On SSE
// the client retries WebSocket every `upgradeIntervalMs`; while polling it keeps trying push
// with backoff, and once it gave up, after every successful poll.
//
// No loss across reconnects (DESIGN §9; channel.js): every subscribe carries `since`, the last
// offset seen on the channel; a publication whose offset is not last+1 triggers a recovery; an
// ack with `recovered: false` calls `onResync(channels)` so the page reloads its snapshot.
//
// Credentials (DESIGN §5; credentials.js): the `access_token` cookie first (same-origin
// WebSocket and EventSource send it by themselves); with a token from `getToken`, a first frame
// {"action":"auth"} on the WebSocket; the `token` query only for EventSource, where neither
// fits. Close code 4001 calls `onAuthRequired` (or `getToken`) once per try, with backoff and
// at most `maxAuthRetries` tries: a refused token never turns into a reconnect loop.
//
// This module is the state machine that ties those pieces together (connect, establish, close,
// route frames); it stays one class because every transition touches the same few fields.

import { isAuthFailure, isPromptReconnect } from "./codes.js";
import { Credentials } from "./credentials.js";
import { Keepalive } from "./keepalive.js";
import { Ladder, backoffDelay } from "./ladder.js";
import { Poller } from "./poller.js";
import { Subscriptions } from "./subscriptions.js";
import { WsTransport, wsUrl } from "./transport_ws.js";
import { SseTransport, formatCursor, sseUrl } from "./transport_sse.js";

export { backoffDelay } from "./ladder.js";
export { tokenExpiry } from "./credentials.js";

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
  resyncBatchMs: 50, // acks of one reconnect arriving together: one snapshot reload
  maxAuthRetries: 3,
  tokenRefreshMarginMs: 60_000,
  transports: ["websocket", "sse", "polling"],
  paths: { ws: "/ws", sse: "/sse", history: "/history", health: "/healthz" },
});

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
   * @param {object} [options] DEFAULTS plus: baseUrl, token, getToken, onAuthRequired, onResync,
   *   poll, onError, and for tests WebSocket, EventSource, fetch, timers, random, window.
   */
  constructor(options = {}) {
    const g = globalThis;
    const given = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
    this.options = { ...DEFAULTS, ...given, paths: { ...DEFAULTS.paths, ...given.paths } };
    this.baseUrl = given.baseUrl ?? g.location?.href ?? "http://localhost/";
    this._WebSocket = given.WebSocket ?? g.WebSocket;
    this._EventSource = given.EventSource ?? g.EventSource;
    this._fetch = given.fetch ?? (g.fetch ? g.fetch.bind(g) : null);
    this._t = given.timers ?? defaultTimers();
    this._random = given.random ?? Math.random;
    this.channels = new Subscriptions({
      sparseWindowMs: this.options.sparseWindowMs, resyncBatchMs: this.options.resyncBatchMs,
      timers: this._t,
      onGap: (channel) => this._recover(channel),
      onResync: (names) => this._resync(names),
      onHandlerError: (error, where) => this._handlerError(error, where),
    });
    this.mode = Mode.IDLE;
    this.current = null; // the established transport
    this.pending = null; // a transport being opened: a reconnect, or a probe beside `current`
    this.retryAt = null;
    this.ladder = new Ladder(this.options,
      { websocket: this._WebSocket, sse: this._EventSource }, this._random);
    this.credentials = new Credentials({
      token: given.token, getToken: given.getToken, timers: this._t,
      marginMs: this.options.tokenRefreshMarginMs,
    });
    this.keepalive = new Keepalive({
      timers: this._t, intervalMs: this.options.pingIntervalMs,
      timeoutMs: this.options.pongTimeoutMs, fetch: this._fetch,
      healthUrl: new URL(this.options.paths.health, this.baseUrl).toString(),
      onLatency: (ms) => this._setLatency(ms),
    });
    this.poller = new Poller({
      client: this, fetch: this._fetch, enabled: this.options.transports.includes("polling"),
      intervalMs: this.options.pollIntervalMs, timers: this._t,
    });
    this._everWebSocket = false;
    this._everConnected = false;
    this._authFailures = 0;
    this._closed = false;
    this._started = false;
    this._epoch = 0; // bumped by close(): async continuations of an older life stop there
    this._timers = {};
    this._listeners = new Map();
    this._lastFrameAt = 0;
    this._metrics = { sent: 0, received: 0, reconnects: 0, latency: null, gaps: 0, resyncs: 0 };
    this._watchNetwork(given.window ?? g.window);
  }

  // -- public API --------------------------------------------------------------------------
  /** Start connecting (idempotent). Subscribe first so the first connection carries them. */
  connect() {
    if (this._started || this._closed) return this;
    this._started = true;
    this._setMode(this.ladder.canPush ? Mode.CONNECTING : Mode.POLLING);
    if (this.ladder.canPush) this._attempt();
    else this.poller.start();
    return this;
  }

  /**
   * Call `handler(data, {channel, offset})` for every publication on `channel`. Returns the
   * function that removes it; removing the last handler of a channel unsubscribes on the wire.
   */
  subscribe(channel, handler) {
    const { channel: ch, isNew, remove } = this.channels.add(channel, handler);
    if (isNew) this._wireSubscribe(ch);
    return () => {
      if (remove()) this._wireUnsubscribe(ch);
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
    this.credentials.token = token;
    if (this.current?.name === "websocket" && token) this._send({ action: "auth", token });
    if (this.mode === Mode.UNAUTHORIZED) this.reconnect();
  }

  /** Try push again now, with a fresh backoff (the browser came online, the user asked). */
  reconnect() {
    if (this._closed || !this._started) return;
    this.ladder.reset();
    this._authFailures = 0;
    this._clear("reconnect");
    if (!this.current && !this.pending && this.ladder.canPush) this._attempt();
  }

  /** Stop everything: sockets, streams, timers, polling. */
  close() {
    this._closed = true;
    this._epoch += 1;
    for (const name of Object.keys(this._timers)) this._clear(name);
    this.keepalive.stop();
    this.credentials.cancel();
    this.channels.cancel();
    this.poller.stop();
    this.pending?.close();
    this.current?.close();
    this.pending = this.current = null;
    this._setMode(Mode.CLOSED);
  }

  /** Counters for the page and for tests. */
  metrics() {
    return {
      ...this._metrics,
      transport: this.current?.name ?? (this.poller.running ? "polling" : null),
      mode: this.mode,
      attempt: this.ladder.attempt,
      channels: this.channels.names(),
    };
  }

  // -- connecting --------------------------------------------------------------------------
  _attempt() {
    this._clear("reconnect");
    this.retryAt = null;
    if (this._closed || this.pending) return;
    if (this.ladder.choose() === "websocket") this._openWs();
    else this._openSse();
  }

  async _openWs() {
    const epoch = this._epoch;
    this.pending = { name: "websocket", close() {} }; // placeholder while the token resolves
    const token = await this.credentials.resolve();
    if (epoch !== this._epoch) return;
    const t = new WsTransport({
      url: wsUrl(this.baseUrl, this.options.paths.ws),
      WebSocket: this._WebSocket,
      onOpen: () => {
        // First-frame auth when we hold a token; otherwise the cookie already did it. The
        // ping's answer is what makes the link count as established.
        if (token) this._sendOn(t, { action: "auth", token });
        this._ping(t);
      },
      onFrame: (frame) => this._onFrame(t, frame),
      onClose: (info) => this._onTransportClosed(t, info),
    });
    this._start(t);
  }

  async _openSse() {
    if (this.channels.size === 0) {
      this.pending = null; // nothing to stream yet: the first subscribe opens it
      return;
    }
    const epoch = this._epoch;
    this.pending = { name: "sse", close() {} };
    const token = await this.credentials.resolve();
    if (epoch !== this._epoch) return;
    const offsets = new Map();
    for (const ch of this.channels.values()) {
      const since = ch.beginSubscribe();
      if (since !== undefined) offsets.set(ch.name, since);
    }
    const t = new SseTransport({
      url: sseUrl(this.baseUrl, this.channels.names(), formatCursor(offsets), token,
        this.options.paths.sse),
      EventSource: this._EventSource,
      onOpen: () => this._established(t),
      onFrame: (frame) => this._onFrame(t, frame),
      onClose: (info) => this._onTransportClosed(t, info),
    });
    if (this.current?.name === "sse") {
      const old = this.current; // a new channel set or a gap: the new stream replaces it
      this.current = null;
      this._clearLink();
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
    this._clear("establish");
    this._clearLink();
    const previous = this.current;
    this.pending = null;
    this.current = t;
    previous?.close(); // moving up from SSE: the WebSocket replaces the stream
    this.ladder.succeeded(t.name);
    this._everConnected = true;
    this._authFailures = 0;
    this.retryAt = null;
    this.poller.stop();
    if (t.name === "websocket") {
      this._everWebSocket = true;
      for (const ch of this.channels.values()) this._subscribeOn(t, ch);
      this.keepalive.watchSocket({
        ping: () => this._ping(t),
        lastFrameAt: () => this._lastFrameAt,
        dead: () => t === this.current && this._fail(t, "pong timeout"),
      });
      this.credentials.scheduleRefresh((token) => {
        if (this.current === t) this._send({ action: "auth", token }); // extends the session
      });
    } else {
      this.keepalive.watchHttp();
      this._scheduleUpgrade(this._everWebSocket ? this.options.quickUpgradeMs
        : this.options.upgradeIntervalMs);
    }
    this._setMode(t.name);
  }

  _fail(t, reason) {
    t.close();
    this._onTransportClosed(t, { code: null, reason, opened: t.opened });
  }

  _onTransportClosed(t, { code }) {
    const wasCurrent = t === this.current;
    if (t === this.pending) {
      this.pending = null;
      this._clear("establish");
    } else if (wasCurrent) {
      this.current = null;
      this._clearLink();
    } else {
      return; // a transport we already replaced
    }
    if (this._closed) return;
    if (!wasCurrent && this.current) {
      this.ladder.failed(t.name); // a probe beside a live transport failed: keep the live one
      return;
    }
    if (isAuthFailure(code)) {
      this._authRequired(); // refused credentials are no reason to try another transport
      return;
    }
    if (!wasCurrent) this.ladder.failed(t.name);
    if (this.ladder.pushDown) this.poller.start();
    this._scheduleReconnect(wasCurrent && (t.name === "sse" || isPromptReconnect(code)));
  }

  _scheduleReconnect(prompt) {
    if (this._closed) return;
    const delay = this.ladder.next(prompt);
    if (delay === null) {
      this.poller.start(); // stop hammering; polling goes on and probes push when it succeeds
    } else {
      this._metrics.reconnects += 1;
      this.retryAt = this._t.now() + delay;
      this._set("reconnect", this._t.setTimeout(() => this._attempt(), delay));
    }
    this._setMode(this._downMode(), true);
  }

  /** Not connected: polling if polls get through, offline if they fail or once we were up. */
  _downMode() {
    if (this.poller.running && this.poller.ok) return Mode.POLLING;
    const failed = this.poller.running && this.poller.tried;
    return failed || this._everConnected || this.ladder.gaveUp ? Mode.OFFLINE : Mode.CONNECTING;
  }

  _scheduleUpgrade(delay) {
    if (!this.ladder.has.websocket) return;
    this._set("upgrade", this._t.setTimeout(() => {
      if (this.current?.name === "sse" && !this.pending) this._openWs();
      this._scheduleUpgrade(this.options.upgradeIntervalMs);
    }, delay));
  }

  /** The timers of the link that just went or was replaced. */
  _clearLink() {
    this._clear("upgrade");
    this.keepalive.stop();
    this.credentials.cancel();
  }

  /** Called by the poller after a successful poll: push may be reachable again. */
  _pollSucceeded() {
    if (this.current) return;
    if (this.mode !== Mode.UNAUTHORIZED) this._setMode(Mode.POLLING);
    if (this.ladder.gaveUp && !this.pending && this.ladder.canPush) {
      this.ladder.probe(); // one attempt; if it fails, wait for the next poll
      this._attempt();
    }
  }

  _pollFailed(status) {
    if (this.current) return;
    if (status === 401) this._authRequired();
    else if (this.mode !== Mode.UNAUTHORIZED) this._setMode(this._downMode(), true);
  }

  // -- authentication ----------------------------------------------------------------------
  async _authRequired() {
    this._authFailures += 1;
    this._clear("reconnect");
    this.poller.stop();
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
    if (epoch !== this._epoch) return;
    if (typeof answer === "string" && answer) {
      this.credentials.token = answer;
    } else if (answer !== true) {
      this._emit("auth", { ok: false, reason: "no token" });
      return;
    }
    const delay = this._authFailures === 1 ? 0
      : backoffDelay(this._authFailures - 1, this.options, this._random);
    this._set("reconnect", this._t.setTimeout(() => this._attempt(), delay));
  }

  // -- frames ------------------------------------------------------------------------------
  _onFrame(t, frame) {
    this._metrics.received += 1;
    this._lastFrameAt = this._t.now();
    if (t === this.pending && t.name === "websocket") this._established(t);
    if (t !== this.current) return;
    switch (frame.type) {
      case "subscribed":
        this.channels.acknowledged(frame.channel, frame.offset, frame.recovered, this._t.now());
        break;
      case "unsubscribed":
        this.channels.unsubscribed(frame.channel);
        break;
      case "pong":
        this.keepalive.pong(frame.ts);
        break;
      case "authenticated":
        this._emit("auth", { ok: true, expiresAt: frame.expires_at });
        break;
      case "error":
        this.options.onError?.(frame.message);
        this._emit("error", frame.message);
        break;
      default:
        if (typeof frame.channel === "string" && frame.data !== undefined) {
          this.channels.publication(frame, this._t.now());
        }
    }
  }

  /** A gap: subscribe again from the last offset delivered. */
  _recover(ch) {
    this._metrics.gaps += 1;
    if (this.current?.name === "websocket") {
      const since = ch.beginRecovery();
      this._send({ action: "unsubscribe", channel: ch.name });
      this._send({ action: "subscribe", channel: ch.name, since });
    } else if (this.current?.name === "sse") {
      this._reopenSse();
    }
  }

  /** History could not fill in `names`: the page reloads its snapshot. */
  _resync(names) {
    this._metrics.resyncs += 1;
    this.options.onResync?.(names);
    this._emit("resync", names);
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
    else if (this._started && !this.pending && !this._timers.reconnect && this.ladder.canPush
      && !this.ladder.gaveUp && this.mode !== Mode.UNAUTHORIZED) this._attempt();
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

  _ping(t) {
    const ts = this._t.now();
    this._sendOn(t, { action: "ping", ts });
    return ts;
  }

  // -- plumbing ----------------------------------------------------------------------------
  _setLatency(ms) {
    this._metrics.latency = ms;
    this._emit("latency", ms);
  }

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
    delete this._timers[name];
  }

  _watchNetwork(win) {
    if (!win?.addEventListener) return;
    win.addEventListener("online", () => {
      if (!this.current) this.reconnect();
    });
  }
}

let shared = null;

/** The page's one client (DESIGN §12: one connection per page). Options apply on first call. */
export function getClient(options) {
  if (!shared) shared = new RealtimeClient(options);
  return shared;
}
