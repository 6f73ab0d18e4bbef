// The client's options: defaults, checks (an unknown or unusable option fails at once, naming
// itself) and the transport implementations, from the options or the platform.

import { ErrorCode, PulseError } from "./errors.js";

/** The connection's modes, as `client.state` and the `state` event report them. */
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
  resyncBatchMs: 50, // acks of one reconnect arriving together: one snapshot reload
  maxAuthRetries: 3,
  tokenRefreshMarginMs: 60_000,
  credentials: "same-origin", // fetch's credentials mode for /history and /healthz
  transports: Object.freeze(["websocket", "sse", "polling"]),
  paths: Object.freeze({ ws: "/ws", sse: "/sse", history: "/history", health: "/healthz" }),
});

/**
 * @typedef {object} ClientOptions
 * @property {string} [baseUrl]  the Pulse server, e.g. "https://pulse.example.com/"; in a
 *   browser the page's own address by default, required in Node
 * @property {string | null} [token]  a JWT: first-frame auth on the WebSocket, the query on
 *   EventSource, `Authorization: Bearer` on fetch; without one the `access_token` cookie works
 * @property {() => (string | null | Promise<string | null>)} [getToken]  asked before every
 *   connection and shortly before the token expires
 * @property {(info: {reason: string, attempt: number}) => (string | boolean | null | Promise<string | boolean | null>)} [onAuthRequired]
 *   the server closed with 4001: a fresh token, true (retry with the cookie) or null (wait)
 * @property {(channels: string[]) => void} [onResync]  history could not fill a gap: reload
 *   your snapshot for these channels (also the `resync` event)
 * @property {() => (void | Promise<void>)} [poll]  while polling, called after each round of
 *   /history (reload your REST snapshot here)
 * @property {(error: import("./errors.js").PulseError) => void} [onError]  also the `error` event
 * @property {Array<"websocket" | "sse" | "polling">} [transports]  the rungs to use, best first
 * @property {any} [WebSocket]    a WebSocket implementation (Node: the `ws` package)
 * @property {any} [EventSource]  an EventSource implementation
 * @property {any} [fetch]        a fetch implementation
 * @property {string} [credentials]  fetch's credentials mode ("same-origin"; "include" for a
 *   cookie across origins)
 * @property {Partial<typeof DEFAULTS.paths>} [paths]
 * @property {number} [minDelayMs]
 * @property {number} [maxDelayMs]
 * @property {number} [maxAttempts]
 * @property {number} [promptDelayMs]
 * @property {number} [pingIntervalMs]
 * @property {number} [pongTimeoutMs]
 * @property {number} [fallbackAfter]
 * @property {number} [pollIntervalMs]
 * @property {number} [upgradeIntervalMs]
 * @property {number} [quickUpgradeMs]
 * @property {number} [resyncBatchMs]
 * @property {number} [maxAuthRetries]
 * @property {number} [tokenRefreshMarginMs]
 * @property {any} [timers]  for tests: setTimeout/clearTimeout/setInterval/clearInterval/now
 * @property {() => number} [random]  for tests
 * @property {any} [window]  for tests: where the `online` event comes from
 */

const CALLBACKS = ["getToken", "onAuthRequired", "onResync", "poll", "onError"];
const OTHERS = ["baseUrl", "token", "WebSocket", "EventSource", "fetch", "timers", "random", "window"];
const KNOWN = new Set([...Object.keys(DEFAULTS), ...CALLBACKS, ...OTHERS]);
const TRANSPORTS = ["websocket", "sse", "polling"];

/**
 * The options with defaults filled in; throws a PulseError ("bad_option") for an unknown name
 * or an unusable value. Options given as undefined count as not given.
 * @param {ClientOptions} options
 */
export function resolveOptions(options) {
  if (options === null || typeof options !== "object") {
    throw new PulseError(ErrorCode.BAD_OPTION, "Client options must be an object");
  }
  const given = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
  for (const name of Object.keys(given)) {
    if (!KNOWN.has(name)) throw new PulseError(ErrorCode.BAD_OPTION, `unknown Client option "${name}"`);
  }
  for (const name of CALLBACKS) {
    if (given[name] !== undefined && typeof given[name] !== "function") {
      throw new PulseError(ErrorCode.BAD_OPTION, `Client option "${name}" must be a function`);
    }
  }
  const transports = given.transports ?? DEFAULTS.transports;
  if (!Array.isArray(transports) || transports.length === 0
    || transports.some((t) => !TRANSPORTS.includes(t))) {
    throw new PulseError(ErrorCode.BAD_OPTION,
      `Client option "transports" must list some of ${TRANSPORTS.join(", ")}`);
  }
  return {
    given,
    options: { ...DEFAULTS, ...given, transports: [...transports], paths: { ...DEFAULTS.paths, ...given.paths } },
  };
}

/**
 * The WebSocket/EventSource/fetch to use. Throws a PulseError ("no_transport") when a transport
 * named in `transports` has no implementation, or, with the default transports, when neither
 * push transport has one (say Node 20 without a WebSocket): a client that would only poll
 * must be asked for explicitly.
 * @param {Record<string, any>} given
 * @param {string[]} transports
 */
export function resolveImplementations(given, transports) {
  const g = /** @type {any} */ (globalThis);
  // An implementation given as null means "none", even where the platform has one.
  const pick = (name, platform) => (name in given ? given[name] : platform) ?? null;
  const impl = {
    WebSocket: pick("WebSocket", g.WebSocket),
    EventSource: pick("EventSource", g.EventSource),
    fetch: pick("fetch", g.fetch ? g.fetch.bind(g) : null),
  };
  const needs = { websocket: "WebSocket", sse: "EventSource", polling: "fetch" };
  const hint = "in Node, pass { WebSocket } (e.g. from the `ws` package), { EventSource } or { fetch }";
  if (given.transports) {
    for (const t of transports) {
      const name = needs[/** @type {keyof typeof needs} */ (t)];
      if (!impl[/** @type {keyof typeof impl} */ (name)]) {
        throw new PulseError(ErrorCode.NO_TRANSPORT,
          `transport "${t}" needs a ${name} implementation and none is available: ${hint}`);
      }
    }
  } else if (!impl.WebSocket && !impl.EventSource) {
    throw new PulseError(ErrorCode.NO_TRANSPORT,
      `no WebSocket or EventSource implementation is available, so the client could not push: ${hint}; `
      + `or ask for polling only with transports: ["polling"]`);
  }
  return impl;
}
