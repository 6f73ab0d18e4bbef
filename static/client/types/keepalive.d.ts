export class Keepalive {
    /**
     * @param {object} o
     * @param {object} o.timers      setTimeout/clearTimeout/setInterval/clearInterval/now
     * @param {number} o.intervalMs
     * @param {number} o.timeoutMs
     * @param {Function|null} o.fetch
     * @param {string} o.healthUrl
     * @param {Function} o.onLatency (ms) => void
     */
    constructor({ timers, intervalMs, timeoutMs, fetch, healthUrl, onLatency }: {
        timers: object;
        intervalMs: number;
        timeoutMs: number;
        fetch: Function | null;
        healthUrl: string;
        onLatency: Function;
    });
    _t: any;
    _fetch: Function;
    _interval: any;
    _deadline: any;
    /**
     * Ping a socket: `ping()` sends one and returns its ts; `lastFrameAt()` is when anything last
     * arrived; `dead()` is called when nothing answered in time.
     */
    watchSocket({ ping, lastFrameAt, dead }: {
        ping: any;
        lastFrameAt: any;
        dead: any;
    }): void;
    /** Time GET /healthz now and every interval (for SSE). */
    watchHttp(): void;
    stop(): void;
    /** A pong echoing `ts` (ms since the epoch, as sent) arrived now. */
    pong(ts: any): void;
    measureHttp(): Promise<void>;
}
