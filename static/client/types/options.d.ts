/**
 * The options with defaults filled in; throws a PulseError ("bad_option") for an unknown name
 * or an unusable value. Options given as undefined count as not given.
 * @param {ClientOptions} options
 */
export function resolveOptions(options: ClientOptions): {
    given: {
        [k: string]: any;
    };
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
};
/**
 * The WebSocket/EventSource/fetch to use. Throws a PulseError ("no_transport") when a transport
 * named in `transports` has no implementation, or, with the default transports, when neither
 * push transport has one (say Node 20 without a WebSocket): a client that would only poll
 * must be asked for explicitly.
 * @param {Record<string, any>} given
 * @param {string[]} transports
 */
export function resolveImplementations(given: Record<string, any>, transports: string[]): {
    WebSocket: any;
    EventSource: any;
    fetch: any;
};
/** The connection's modes, as `client.state` and the `state` event report them. */
export const Mode: Readonly<{
    IDLE: "idle";
    CONNECTING: "connecting";
    WEBSOCKET: "websocket";
    SSE: "sse";
    POLLING: "polling";
    OFFLINE: "offline";
    UNAUTHORIZED: "unauthorized";
    CLOSED: "closed";
}>;
export const DEFAULTS: Readonly<{
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
    transports: readonly string[];
    paths: Readonly<{
        ws: "/ws";
        sse: "/sse";
        history: "/history";
        health: "/healthz";
    }>;
}>;
export type ClientOptions = {
    /**
     * the Pulse server, e.g. "https://pulse.example.com/"; in a
     * browser the page's own address by default, required in Node
     */
    baseUrl?: string;
    /**
     * a JWT: first-frame auth on the WebSocket, the query on
     * EventSource, `Authorization: Bearer` on fetch; without one the `access_token` cookie works
     */
    token?: string | null;
    /**
     * asked before every
     * connection and shortly before the token expires
     */
    getToken?: () => (string | null | Promise<string | null>);
    /**
     * the server closed with 4001: a fresh token, true (retry with the cookie) or null (wait)
     */
    onAuthRequired?: (info: {
        reason: string;
        attempt: number;
    }) => (string | boolean | null | Promise<string | boolean | null>);
    /**
     * history could not fill a gap: reload
     * your snapshot for these channels (also the `resync` event)
     */
    onResync?: (channels: string[]) => void;
    /**
     * while polling, called after each round of
     * /history (reload your REST snapshot here)
     */
    poll?: () => (void | Promise<void>);
    /**
     * also the `error` event
     */
    onError?: (error: import("./errors.js").PulseError) => void;
    /**
     * the rungs to use, best first
     */
    transports?: Array<"websocket" | "sse" | "polling">;
    /**
     * a WebSocket implementation (Node: the `ws` package)
     */
    WebSocket?: any;
    /**
     * an EventSource implementation
     */
    EventSource?: any;
    /**
     * a fetch implementation
     */
    fetch?: any;
    /**
     * fetch's credentials mode ("same-origin"; "include" for a
     * cookie across origins)
     */
    credentials?: string;
    paths?: Partial<typeof DEFAULTS.paths>;
    minDelayMs?: number;
    maxDelayMs?: number;
    maxAttempts?: number;
    promptDelayMs?: number;
    pingIntervalMs?: number;
    pongTimeoutMs?: number;
    fallbackAfter?: number;
    pollIntervalMs?: number;
    upgradeIntervalMs?: number;
    quickUpgradeMs?: number;
    resyncBatchMs?: number;
    maxAuthRetries?: number;
    tokenRefreshMarginMs?: number;
    /**
     * for tests: setTimeout/clearTimeout/setInterval/clearInterval/now
     */
    timers?: any;
    /**
     * for tests
     */
    random?: () => number;
    /**
     * for tests: where the `online` event comes from
     */
    window?: any;
};
