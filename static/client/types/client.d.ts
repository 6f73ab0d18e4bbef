/**
 * The shared client of a page (DESIGN §12: one connection per page): created by the first
 * call, with its options; later calls return it. A later call with different options throws
 * (a PulseError "client_exists"), rather than ignoring them: use `new Client(options)` for a
 * second client. After the shared client was closed, the next call creates a new one.
 * @param {import("./options.js").ClientOptions} [options]
 * @returns {Client}
 */
export function getClient(options?: import("./options.js").ClientOptions): Client;
export { backoffDelay } from "./ladder.js";
export { tokenExpiry } from "./credentials.js";
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
    constructor(options?: import("./options.js").ClientOptions);
    options: {
        transports: any[];
        paths: any;
        minDelayMs: 1000;
        maxDelayMs: 30000;
        maxAttempts: 10;
        promptDelayMs: 1000;
        pingIntervalMs: 30000;
        pongTimeoutMs: 10000;
        fallbackAfter: 2;
        pollIntervalMs: 30000;
        upgradeIntervalMs: 60000;
        quickUpgradeMs: 3000;
        resyncBatchMs: 50;
        maxAuthRetries: 3;
        tokenRefreshMarginMs: 60000;
        credentials: "same-origin";
    };
    /** @type {string} */
    baseUrl: string;
    _WebSocket: any;
    _EventSource: any;
    _fetch: any;
    _t: any;
    _random: any;
    channels: Subscriptions;
    /** @type {string} a Mode */
    mode: string;
    current: any;
    pending: any;
    retryAt: any;
    ladder: Ladder;
    credentials: Credentials;
    keepalive: Keepalive;
    poller: Poller;
    _everWebSocket: boolean;
    _everConnected: boolean;
    _authFailures: number;
    _closed: boolean;
    _started: boolean;
    _life: number;
    _timers: {};
    _lastFrameAt: number;
    _metrics: {
        sent: number;
        received: number;
        reconnects: number;
        latency: any;
        gaps: number;
        resyncs: number;
    };
    /**
     * Listen to the client's events; returns the function that removes the listener.
     * @overload
     * @param {"state"} event
     * @param {(state: StateEvent) => void} listener
     * @returns {() => void}
     */
    on(event: "state", listener: (state: StateEvent) => void): () => void;
    /**
     * @overload
     * @param {"metrics"} event
     * @param {(metrics: Metrics) => void} listener
     * @returns {() => void}
     */
    on(event: "metrics", listener: (metrics: Metrics) => void): () => void;
    /**
     * @overload
     * @param {"error"} event
     * @param {(error: PulseError) => void} listener
     * @returns {() => void}
     */
    on(event: "error", listener: (error: PulseError) => void): () => void;
    /**
     * @overload
     * @param {"resync"} event
     * @param {(channels: string[]) => void} listener
     * @returns {() => void}
     */
    on(event: "resync", listener: (channels: string[]) => void): () => void;
    /**
     * @overload
     * @param {"latency"} event
     * @param {(ms: number) => void} listener
     * @returns {() => void}
     */
    on(event: "latency", listener: (ms: number) => void): () => void;
    /**
     * @overload
     * @param {"auth"} event
     * @param {(event: {ok: boolean, reason?: string, expiresAt?: number}) => void} listener
     * @returns {() => void}
     */
    on(event: "auth", listener: (event: {
        ok: boolean;
        reason?: string;
        expiresAt?: number;
    }) => void): () => void;
    /** The connection's mode (a Mode): the same as the last `state` event's. */
    get state(): string;
    /**
     * Start connecting (idempotent). Subscriptions made before go out with the first connection.
     * @returns {this}
     */
    connect(): this;
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
    subscribe(channel: string, handlerOrOptions?: ((data: any, publication: import("./subscription.js").Publication) => void) | SubscribeOptions, options?: SubscribeOptions): import("./subscription.js").Subscription;
    /**
     * What `channel` published after `since` (GET /history), oldest first, at most `limit`.
     * @param {string} channel
     * @param {{since?: number, userSince?: number, epoch?: string, limit?: number}} [options]
     * @returns {Promise<import("./history.js").HistoryPage>}
     * @throws {PulseError} "http" with `status` 400 (invalid channel), 401, 403 (forbidden) …
     */
    history(channel: string, { since, userSince, epoch, limit }?: {
        since?: number;
        userSince?: number;
        epoch?: string;
        limit?: number;
    }): Promise<import("./history.js").HistoryPage>;
    /** Use `token` from now on; a live WebSocket session is extended with it at once. @param {string} token */
    setToken(token: string): void;
    /** Try push again now, with a fresh backoff (the browser came online, the user asked). */
    reconnect(): void;
    /** Stop everything: sockets, streams, timers, polling; every Subscription ends. */
    close(): void;
    /** Counters for indicators and tests. @returns {Metrics} */
    metrics(): Metrics;
    _attempt(): void;
    _openWs(): Promise<void>;
    _openSse(): Promise<void>;
    _start(t: any): void;
    _established(t: any): void;
    _fail(t: any, reason: any): void;
    _onTransportClosed(t: any, { code, opened }: {
        code: any;
        opened: any;
    }): void;
    _scheduleReconnect(prompt: any): void;
    /** Not connected: polling if polls get through, offline if they fail or once we were up. */
    _downMode(): "connecting" | "polling" | "offline";
    _scheduleUpgrade(delay: any): void;
    /** The timers of the link that just went or was replaced. */
    _clearLink(): void;
    /** Called by the poller after a successful poll: push may be reachable again. */
    _pollSucceeded(): void;
    _pollFailed(status: any): void;
    _authRequired(): Promise<void>;
    _onFrame(t: any, frame: any): void;
    /**
     * An error frame. One that names a channel answers its subscribe: "Temporarily unavailable"
     * (the server's broker failed) is retried with backoff; anything else (invalid, forbidden, a
     * limit) is the server's final word and fails the channel's subscriptions.
     */
    _onErrorFrame(frame: any): void;
    /**
     * The server refused `name`: its subscriptions fail with the reason, the channel leaves
     * metrics().channels and is not subscribed again on reconnect.
     * @param {string} name
     * @param {string} reason
     * @param {unknown} [code]  the server's code for it, when it sends one
     */
    _refuse(name: string, reason: string, code?: unknown): void;
    /** Subscribe `ch` again after a temporary refusal, with backoff. */
    _retrySubscribe(ch: any): void;
    /** After an SSE stream failed to open: fail the channels /history says the server refuses. */
    _probeChannels(): Promise<void>;
    /** A gap: subscribe again from the last offsets delivered, at once. */
    _recover(ch: any): void;
    /** History could not fill in `names`: the page reloads its snapshot. */
    _resync(names: any): void;
    /** A listener or handler threw: reported, and the others ran anyway. */
    _listenerError(error: any): void;
    _reportError(error: any): void;
    _wireSubscribe(ch: any): void;
    _wireUnsubscribe(ch: any): void;
    _subscribeOn(t: any, ch: any): void;
    _reopenSse(): void;
    _send(frame: any): any;
    _sendOn(t: any, frame: any): any;
    _ping(t: any): any;
    /** @param {string} path */
    _url(path: string): string;
    _setLatency(ms: any): void;
    _setMode(mode: any, force?: boolean): void;
    /** `metrics` listeners hear of every change but the frame counters (read those on demand). */
    _metricsChanged(): void;
    _set(name: any, handle: any): void;
    _clear(name: any): void;
    _watchNetwork(win: any): void;
}
/** The name 0.0 pages used; the same class. */
export const RealtimeClient: typeof Client;
/**
 * What a `state` listener receives.
 */
export type StateEvent = {
    /**
     * a Mode
     */
    mode: string;
    /**
     * "websocket", "sse" or null
     */
    transport: string | null;
    /**
     * when the next reconnect attempt is due (ms since the epoch)
     */
    retryAt: number | null;
};
/**
 * What metrics() returns and a `metrics` listener receives.
 */
export type Metrics = {
    /**
     * frames sent
     */
    sent: number;
    /**
     * frames received
     */
    received: number;
    /**
     * reconnect attempts scheduled
     */
    reconnects: number;
    /**
     * last round trip in ms (ping/pong, or /healthz on SSE)
     */
    latency: number | null;
    /**
     * holes in offsets, each recovered at once
     */
    gaps: number;
    /**
     * times history could not fill in (onResync)
     */
    resyncs: number;
    transport: string | null;
    mode: string;
    /**
     * the current backoff attempt
     */
    attempt: number;
    /**
     * the channels subscribed (failed ones are not)
     */
    channels: string[];
};
export type SubscribeOptions = {
    /**
     * resume after this shared offset (replayed from history)
     */
    since?: number;
    /**
     * resume after this personal offset (user-targeted channels)
     */
    userSince?: number;
    /**
     * the epoch `since` belongs to (from a `subscribed` event)
     */
    epoch?: string;
};
import { Emitter } from "./emitter.js";
import { Subscriptions } from "./subscriptions.js";
import { Ladder } from "./ladder.js";
import { Credentials } from "./credentials.js";
import { Keepalive } from "./keepalive.js";
import { Poller } from "./poller.js";
import { PulseError } from "./errors.js";
export { DEFAULTS, Mode } from "./options.js";
