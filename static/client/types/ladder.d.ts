/** Delay before reconnect attempt `n` (0-based): 1, 2, 4 … 30 s, jittered down to half, never under 1 s. */
export function backoffDelay(attempt: any, { minDelayMs, maxDelayMs }: {
    minDelayMs: any;
    maxDelayMs: any;
}, random?: () => number): number;
export class Ladder {
    /**
     * @param {object} options   the client's options (transports, fallbackAfter, maxAttempts,
     *                           minDelayMs, maxDelayMs, promptDelayMs)
     * @param {object} available {websocket: bool, sse: bool}: the constructors exist
     * @param {Function} random
     */
    constructor(options: object, available: object, random?: Function);
    options: any;
    _random: Function;
    has: {
        websocket: boolean;
        sse: boolean;
    };
    failures: {
        websocket: number;
        sse: number;
    };
    blocked: {
        websocket: boolean;
        sse: boolean;
    };
    attempt: number;
    gaveUp: boolean;
    _alternate: boolean;
    /** Some push transport exists at all (else the client only polls). */
    get canPush(): boolean;
    /** Both push transports failed: time to poll. */
    get pushDown(): boolean;
    /** The transport for the next attempt. */
    choose(): "websocket" | "sse";
    /** An attempt on `name` failed before the server answered. */
    failed(name: any): void;
    /** `name` is established: it is usable again and the backoff starts over. */
    succeeded(name: any): void;
    reset(): void;
    /**
     * Milliseconds until the next attempt, or null once `maxAttempts` are used up. `prompt`
     * (the server asked us back: 1012, 4008, 4010, an SSE stream that ended) makes the first
     * retry come within `promptDelayMs`, at random.
     */
    next(prompt: any): number;
    /** One more attempt after giving up; if it fails too, the client has given up again. */
    probe(): void;
}
