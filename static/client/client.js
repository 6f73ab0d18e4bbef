// The Pulse realtime client: one connection, channels multiplexed over it.
//
//   import { Client } from "pulse-realtime-client";
//   const client = new Client({ baseUrl: "https://pulse.example.com/", getToken });
//   const sub = client.subscribe("dashboard");
//   sub.on("publication", ({ data, offset }) => render(data));
//   client.connect();
//   sub.unsubscribe(); // the last subscription of a channel gone -> unsubscribed on the wire
//
// Transports, best first (DESIGN §12; ladder.js): WebSocket; Server-Sent Events when WebSockets
// fail; polling of /history (and the page's REST snapshot, the `poll` option) every 30 s when
// both fail (poller.js). On SSE the client retries WebSocket every `upgradeIntervalMs`; while
// polling it keeps trying push with backoff, and once it gave up, after every successful poll.
//
// No loss across reconnects (DESIGN §9; channel.js): every subscribe carries the channel's
// cursor (`since`, `user_since`, `epoch`); a publication whose offset is not last+1 triggers a
// recovery at once; an ack with `recovered: false` calls `onResync(channels)` so the page
// reloads its snapshot. A channel the server refuses fails its subscriptions and is forgotten.
//
// Credentials (DESIGN §5; credentials.js): the `access_token` cookie first (same-origin
// WebSocket and EventSource send it by themselves); with a token (`token`, `getToken`), a first
// frame {"action":"auth"} on the WebSocket; the `token` query only for EventSource, where
// neither fits. Close code 4001 calls `onAuthRequired` (or `getToken`) once per try, with
// backoff and at most `maxAuthRetries` tries: a refused token never turns into a reconnect loop.
//
// This module is the state machine that ties those pieces together (connect, establish, close,
// route frames); it stays one class because every transition touches the same few fields.

import { isAuthFailure, isPromptReconnect } from "./codes.js";
import { Credentials } from "./credentials.js";
import { Emitter } from "./emitter.js";
import { ErrorCode, PulseError } from "./errors.js";
import { fetchHistory } from "./history.js";
import { Keepalive } from "./keepalive.js";
import { Ladder, backoffDelay } from "./ladder.js";
import { DEFAULTS, Mode, resolveImplementations, resolveOptions } from "./options.js";
import { Poller } from "./poller.js";
import { Subscriptions } from "./subscriptions.js";
import { WsTransport, wsUrl } from "./transport_ws.js";
import { SseTransport, formatCursor, sseUrl } from "./transport_sse.js";

export { DEFAULTS, Mode } from "./options.js";
export { backoffDelay } from "./ladder.js";
export { tokenExpiry } from "./credentials.js";

// `since` above any offset: /history answers with the channel's latest offset and nothing else
// (used to check whether the server accepts a channel at all).
const PROBE_SINCE = Number.MAX_SAFE_INTEGER;

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

/**
 * @typedef {object} StateEvent What a `state` listener receives.
 * @property {string} mode            a Mode
 * @property {string | null} transport "websocket", "sse" or null
 * @property {number | null} retryAt  when the next reconnect attempt is due (ms since the epoch)
 */

/**
 * @typedef {object} Metrics What metrics() returns and a `metrics` listener receives.
 * @property {number} sent        frames sent
 * @property {number} received    frames received
 * @property {number} reconnects  reconnect attempts scheduled
 * @property {number | null} latency  last round trip in ms (ping/pong, or /healthz on SSE)
 * @property {number} gaps        holes in offsets, each recovered at once
 * @property {number} resyncs     times history could not fill in (onResync)
 * @property {string | null} transport
 * @property {string} mode
 * @property {number} attempt     the current backoff attempt
 * @property {string[]} channels  the channels subscribed (failed ones are not)
 */

/**
 * @typedef {object} SubscribeOptions
 * @property {number} [since]      resume after this shared offset (replayed from history)
 * @property {number} [userSince]  resume after this personal offset (user-targeted channels)
 * @property {string} [epoch]      the epoch `since` belongs to (from a `subscribed` event)
 */

export class Client extends Emitter {
  /**
   * A client for one Pulse server. Any number may exist; each holds one connection.
   * Events: `state` (StateEvent), `metrics` (Metrics), `latency` (ms), `resync` (channels),
   * `error` (PulseError), `auth` ({ok, reason?, expiresAt?}).
   * @param {import("./options.js").ClientOptions} [options]
   * @throws {PulseError} "bad_option" for an unknown or unusable option, "no_transport" when
   *   no implementation of the transports asked for is available
   */
  constructor(options = {}) {
    super();
    const g = /** @type {any} */ (globalThis);
    const { given, options: resolved } = resolveOptions(options);
    this.options = resolved;
    const baseUrl = given.baseUrl ?? g.location?.href;
    if (!baseUrl) {
      throw new PulseError(ErrorCode.BAD_OPTION,
        'the "baseUrl" option is required outside a browser (e.g. "https://pulse.example.com/")');
    }
    /** @type {string} */
    this.baseUrl = new URL(baseUrl).toString();
    const impl = resolveImplementations(given, this.options.transports);
    this._WebSocket = impl.WebSocket;
    this._EventSource = impl.EventSource;
    this._fetch = impl.fetch;
    this._t = given.timers ?? defaultTimers();
    this._random = given.random ?? Math.random;
    this.channels = new Subscriptions({
      resyncBatchMs: this.options.resyncBatchMs, timers: this._t,
      onGap: (channel) => this._recover(channel),
      onResync: (names) => this._resync(names),
      onEmpty: (channel) => this._wireUnsubscribe(channel),
      onListenerError: (error) => this._listenerError(error),
    });
    /** @type {string} a Mode */
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
      healthUrl: this._url(this.options.paths.health),
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
    this._life = 0; // bumped by close(): async continuations of an older life stop there
    this._timers = {};
    this._lastFrameAt = 0;
    this._metrics = { sent: 0, received: 0, reconnects: 0, latency: null, gaps: 0, resyncs: 0 };
    this._watchNetwork(given.window ?? g.window);
  }

  // -- public API --------------------------------------------------------------------------
  /**
   * Listen to the client's events; returns the function that removes the listener.
   * @overload
   * @param {"state"} event
   * @param {(state: StateEvent) => void} listener
   * @returns {() => void}
   */
  /**
   * @overload
   * @param {"metrics"} event
   * @param {(metrics: Metrics) => void} listener
   * @returns {() => void}
   */
  /**
   * @overload
   * @param {"error"} event
   * @param {(error: PulseError) => void} listener
   * @returns {() => void}
   */
  /**
   * @overload
   * @param {"resync"} event
   * @param {(channels: string[]) => void} listener
   * @returns {() => void}
   */
  /**
   * @overload
   * @param {"latency"} event
   * @param {(ms: number) => void} listener
   * @returns {() => void}
   */
  /**
   * @overload
   * @param {"auth"} event
   * @param {(event: {ok: boolean, reason?: string, expiresAt?: number}) => void} listener
   * @returns {() => void}
   */
  /**
   * @param {string} event
   * @param {(payload: any) => void} listener
   * @returns {() => void}
   */
  on(event, listener) {
    return super.on(event, listener);
  }

  /** The connection's mode (a Mode): the same as the last `state` event's. */
  get state() {
    return this.mode;
  }

  /**
   * Start connecting (idempotent). Subscriptions made before go out with the first connection.
   * @returns {this}
   */
  connect() {
    if (this._started || this._closed) return this;
    this._started = true;
    this._setMode(this.ladder.canPush ? Mode.CONNECTING : Mode.POLLING);
    if (this.ladder.canPush) this._attempt();
    else this.poller.start();
    return this;
  }

  /**
   * Subscribe to `channel`. Every call returns its own Subscription; those on one channel share
   * one server subscription (the first one decides `since`; later ones join the live stream).
   * `handler`, if given, is a shorthand for sub.on("publication", (p) => handler(p.data, p)).
   * @param {string} channel
   * @param {((data: any, publication: import("./subscription.js").Publication) => void) | SubscribeOptions} [handlerOrOptions]
   * @param {SubscribeOptions} [options]
   * @returns {import("./subscription.js").Subscription}
   * @throws {PulseError} "closed" after close(), "bad_option" for a bad channel or option
   */
  subscribe(channel, handlerOrOptions, options) {
    const handler = typeof handlerOrOptions === "function" ? handlerOrOptions : null;
    const opts = (handler ? options : handlerOrOptions) ?? {};
    if (this._closed) throw new PulseError(ErrorCode.CLOSED, `cannot subscribe to ${channel}: the client is closed`, { channel });
    if (typeof channel !== "string" || !channel) {
      throw new PulseError(ErrorCode.BAD_OPTION, "subscribe() needs a channel name (a non-empty string)");
    }
    for (const [name, value] of Object.entries(opts)) {
      const ok = name === "epoch" ? typeof value === "string"
        : (name === "since" || name === "userSince") && Number.isInteger(value) && value >= 0;
      if (!ok && value !== undefined) {
        throw new PulseError(ErrorCode.BAD_OPTION, `subscribe(): bad option ${name}=${JSON.stringify(value)}`, { channel });
      }
    }
    const { channel: ch, sub, isNew } = this.channels.add(channel,
      { since: opts.since, user_since: opts.userSince, epoch: opts.epoch });
    if (handler) sub.on("publication", (p) => handler(p.data, p));
    if (isNew) {
      this._wireSubscribe(ch);
      this._metricsChanged();
    }
    return sub;
  }

  /**
   * What `channel` published after `since` (GET /history), oldest first, at most `limit`.
   * @param {string} channel
   * @param {{since?: number, userSince?: number, epoch?: string, limit?: number}} [options]
   * @returns {Promise<import("./history.js").HistoryPage>}
   * @throws {PulseError} "http" with `status` 400 (invalid channel), 401, 403 (forbidden) …
   */
  async history(channel, { since = 0, userSince, epoch, limit } = {}) {
    if (!this._fetch) throw new PulseError(ErrorCode.NO_TRANSPORT, "history() needs a fetch implementation: pass { fetch }");
    /** @type {import("./channel.js").Cursor} */
    const cursor = { since };
    if (userSince !== undefined) cursor.user_since = userSince;
    if (epoch !== undefined) cursor.epoch = epoch;
    return fetchHistory({
      fetch: this._fetch, url: this._url(this.options.paths.history), channel, cursor, limit,
      token: await this.credentials.resolve(), credentials: this.options.credentials,
    });
  }

  /** Use `token` from now on; a live WebSocket session is extended with it at once. @param {string} token */
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

  /** Stop everything: sockets, streams, timers, polling; every Subscription ends. */
  close() {
    if (this._closed) return;
    this._closed = true;
    this._life += 1;
    for (const name of Object.keys(this._timers)) this._clear(name);
    this.keepalive.stop();
    this.credentials.cancel();
    this.channels.cancel();
    this.poller.stop();
    this.pending?.close();
    this.current?.close();
    this.pending = this.current = null;
    this.channels.closeAll();
    this._setMode(Mode.CLOSED);
  }

  /** Counters for indicators and tests. @returns {Metrics} */
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
    const life = this._life;
    this.pending = { name: "websocket", close() {} }; // placeholder while the token resolves
    const token = await this.credentials.resolve();
    if (life !== this._life) return;
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
    const life = this._life;
    this.pending = { name: "sse", close() {} };
    const token = await this.credentials.resolve();
    if (life !== this._life) return;
    const cursors = new Map();
    for (const ch of this.channels.values()) cursors.set(ch.name, ch.beginSubscribe());
    const t = new SseTransport({
      url: sseUrl(this.baseUrl, this.channels.names(), formatCursor(cursors), token,
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

  _onTransportClosed(t, { code, opened }) {
    const wasCurrent = t === this.current;
    if (t === this.pending) {
      this.pending = null;
      this._clear("establish");
    } else if (wasCurrent) {
      this.current = null;
      this._clearLink();
      this.channels.linkLost();
    } else {
      return; // a transport we already replaced
    }
    if (this._closed) return;
    // A stream refused before it opened may be one refused channel (SSE answers 400/403 for
    // the whole set, and EventSource hides the status): ask /history which one.
    if (t.name === "sse" && !opened) this._probeChannels();
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
    this._metricsChanged();
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
    const life = this._life;
    let answer = null;
    try {
      answer = await ask({ reason: "unauthorized", attempt: this._authFailures });
    } catch {
      answer = null;
    }
    if (life !== this._life) return;
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
        this.channels.acknowledged(frame.channel, frame);
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
        this._onErrorFrame(frame);
        break;
      default:
        if (typeof frame.channel === "string" && frame.data !== undefined) {
          this.channels.publication(frame);
        }
    }
  }

  /**
   * An error frame. One that names a channel answers its subscribe: "Temporarily unavailable"
   * (the server's broker failed) is retried with backoff; anything else (invalid, forbidden, a
   * limit) is the server's final word and fails the channel's subscriptions.
   */
  _onErrorFrame(frame) {
    const message = typeof frame.message === "string" ? frame.message : "error";
    const name = frame.channel;
    const ch = typeof name === "string" ? this.channels.get(name) : undefined;
    if (!ch) {
      this._reportError(new PulseError(ErrorCode.SERVER_ERROR, `server error: ${message}`,
        { reason: message, channel: typeof name === "string" ? name : undefined }));
      return;
    }
    if (/^temporarily unavailable/i.test(message)) {
      const error = new PulseError(ErrorCode.SUBSCRIBE_UNAVAILABLE,
        `cannot subscribe to ${name} now (${message}): retrying`, { channel: name, reason: message, temporary: true });
      for (const sub of ch.subs) sub._error(error);
      this._retrySubscribe(ch);
      return;
    }
    this._refuse(name, message, frame.code);
  }

  /**
   * The server refused `name`: its subscriptions fail with the reason, the channel leaves
   * metrics().channels and is not subscribed again on reconnect.
   * @param {string} name
   * @param {string} reason
   * @param {unknown} [code]  the server's code for it, when it sends one
   */
  _refuse(name, reason, code) {
    const serverCode = typeof code === "string" || typeof code === "number" ? code : undefined;
    const error = new PulseError(ErrorCode.SUBSCRIBE_REFUSED, `subscription to ${name} refused: ${reason}`,
      { channel: name, reason, serverCode });
    this._clear(`retry:${name}`);
    if (!this.channels.refused(name, error)) return;
    this._reportError(error);
    if (this.current?.name === "sse") this._reopenSse();
    this._metricsChanged();
  }

  /** Subscribe `ch` again after a temporary refusal, with backoff. */
  _retrySubscribe(ch) {
    const delay = backoffDelay(ch.retries, this.options, this._random);
    ch.retries += 1;
    this._set(`retry:${ch.name}`, this._t.setTimeout(() => {
      delete this._timers[`retry:${ch.name}`];
      if (this.channels.get(ch.name) === ch && this.current?.name === "websocket") {
        this._subscribeOn(this.current, ch);
      }
    }, delay));
  }

  /** After an SSE stream failed to open: fail the channels /history says the server refuses. */
  async _probeChannels() {
    if (!this._fetch) return;
    const life = this._life;
    for (const ch of [...this.channels.values()]) {
      try {
        await fetchHistory({
          fetch: this._fetch, url: this._url(this.options.paths.history), channel: ch.name,
          cursor: { since: PROBE_SINCE }, token: this.credentials.token,
          credentials: this.options.credentials,
        });
      } catch (error) {
        const { status, reason, message } = /** @type {any} */ (error);
        if (life !== this._life) return;
        if (status === 400 || status === 403) this._refuse(ch.name, reason ?? message);
        else if (status !== 401) return; // the server is unreachable: nothing to learn
      }
    }
  }

  /** A gap: subscribe again from the last offsets delivered, at once. */
  _recover(ch) {
    this._metrics.gaps += 1;
    if (this.current?.name === "websocket") {
      const cursor = ch.beginRecovery();
      this._send({ action: "unsubscribe", channel: ch.name });
      this._send({ action: "subscribe", channel: ch.name, ...cursor });
    } else if (this.current?.name === "sse") {
      this._reopenSse();
    }
    this._metricsChanged();
  }

  /** History could not fill in `names`: the page reloads its snapshot. */
  _resync(names) {
    this._metrics.resyncs += 1;
    try {
      this.options.onResync?.(names);
    } catch (error) {
      this._listenerError(new PulseError(ErrorCode.HANDLER, `onResync threw: ${error?.message ?? error}`, { cause: error }));
    }
    this._emit("resync", names);
    this._metricsChanged();
  }

  /** A listener or handler threw: reported, and the others ran anyway. */
  _listenerError(error) {
    globalThis.console?.error?.(error.cause ?? error);
    this._reportError(error);
  }

  _reportError(error) {
    try {
      this.options.onError?.(error);
    } catch (e) {
      globalThis.console?.error?.(e);
    }
    this._emit("error", error);
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
    this._clear(`retry:${ch.name}`);
    if (this.current?.name === "websocket") this._send({ action: "unsubscribe", channel: ch.name });
    else if (this.current?.name === "sse" && this.channels.size > 0) this._reopenSse();
    this._metricsChanged();
  }

  _subscribeOn(t, ch) {
    this._sendOn(t, { action: "subscribe", channel: ch.name, ...ch.beginSubscribe() });
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
  /** @param {string} path */
  _url(path) {
    return new URL(path, this.baseUrl).toString();
  }

  _setLatency(ms) {
    this._metrics.latency = ms;
    this._emit("latency", ms);
    this._metricsChanged();
  }

  _setMode(mode, force = false) {
    if (mode === this.mode && !force) return;
    this.mode = mode;
    if (mode !== Mode.WEBSOCKET && mode !== Mode.SSE && mode !== Mode.POLLING) {
      this._metrics.latency = null;
    }
    this._emit("state", { mode, transport: this.current?.name ?? null, retryAt: this.retryAt });
    this._metricsChanged();
  }

  /** `metrics` listeners hear of every change but the frame counters (read those on demand). */
  _metricsChanged() {
    if (this.listenerCount("metrics") > 0) this._emit("metrics", this.metrics());
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

/** The name 0.0 pages used; the same class. */
export const RealtimeClient = Client;

let shared = null;
let sharedOptions = null;

/**
 * The shared client of a page (DESIGN §12: one connection per page): created by the first
 * call, with its options; later calls return it. A later call with different options throws
 * (a PulseError "client_exists"), rather than ignoring them: use `new Client(options)` for a
 * second client. After the shared client was closed, the next call creates a new one.
 * @param {import("./options.js").ClientOptions} [options]
 * @returns {Client}
 */
export function getClient(options) {
  if (!shared || shared.mode === Mode.CLOSED) {
    shared = new Client(options);
    sharedOptions = options ?? {};
    return shared;
  }
  if (options !== undefined && !sameOptions(options, sharedOptions)) {
    throw new PulseError(ErrorCode.CLIENT_EXISTS,
      "getClient() already created the shared client with other options; "
      + "call getClient() without options to get it, or new Client(options) for another client");
  }
  return shared;
}

function sameOptions(a, b) {
  const keys = (o) => Object.keys(o).filter((k) => o[k] !== undefined);
  const ka = keys(a);
  if (ka.length !== keys(b).length) return false;
  return ka.every((k) => a[k] === b[k]
    || (k === "paths" || k === "transports") && JSON.stringify(a[k]) === JSON.stringify(b[k]));
}
