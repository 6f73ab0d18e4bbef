export class Poller {
    /**
     * @param {object} o
     * @param {any} o.client  the Client (channels, options, publication routing)
     * @param {Function|null} o.fetch
     * @param {boolean} o.enabled "polling" is among the client's transports
     * @param {number} o.intervalMs
     * @param {object} o.timers   setInterval/clearInterval/now
     */
    constructor({ client, fetch, enabled, intervalMs, timers }: {
        client: any;
        fetch: Function | null;
        enabled: boolean;
        intervalMs: number;
        timers: object;
    });
    _client: any;
    _fetch: Function;
    _enabled: boolean;
    _intervalMs: number;
    _t: any;
    _handle: any;
    _epoch: number;
    _busy: boolean;
    running: boolean;
    ok: boolean;
    tried: boolean;
    polls: number;
    start(): void;
    stop(): void;
    /** One round: each channel's history, then the page's snapshot reload. */
    poll(): Promise<void>;
    /**
     * The body of /history for `ch`, or null for a channel the server refuses (400/403: the
     * subscription fails, as a refused subscribe does); throws on anything else.
     * @param {import("./channel.js").Channel} ch
     */
    _history(ch: import("./channel.js").Channel): Promise<import("./history.js").HistoryPage>;
}
