/**
 * @typedef {object} Cursor Where a channel's stream stands, as sent with a (re)subscribe.
 * @property {number} [since]       last shared offset delivered
 * @property {number} [user_since]  last personal offset delivered
 * @property {string} [epoch]       the epoch of the last ack
 */
/**
 * The personal offset a publication frame carries, or null.
 * @param {{offset?: unknown, user_offset?: unknown}} frame
 * @returns {number | null}
 */
export function personalOffset(frame: {
    offset?: unknown;
    user_offset?: unknown;
}): number | null;
export const Phase: Readonly<{
    REPLAYING: "replaying";
    LIVE: "live";
    DRAINING: "draining";
}>;
export const Verdict: Readonly<{
    DELIVER: "deliver";
    DROP: "drop";
    GAP: "gap";
}>;
export class Channel {
    /**
     * @param {string} name
     * @param {Cursor} [start] where to resume from on the first subscribe
     */
    constructor(name: string, start?: Cursor);
    name: string;
    /** @type {Set<import("./subscription.js").Subscription>} the handles sharing it */
    subs: Set<import("./subscription.js").Subscription>;
    /** @type {number | null} last shared offset delivered (or acknowledged) */
    last: number | null;
    /** @type {number | null} last personal offset delivered (or acknowledged) */
    userLast: number | null;
    /** @type {string | null} */
    epoch: string | null;
    phase: "replaying";
    acked: boolean;
    sinceSent: boolean;
    retries: number;
    /** @returns {Cursor} what to send with a subscribe: only the parts known */
    cursor(): Cursor;
    /** A subscribe (or an SSE stream) is going out. @returns {Cursor} */
    beginSubscribe(): Cursor;
    /**
     * Recover a gap on a socket that keeps delivering (the client sends unsubscribe, then
     * subscribe with the cursor returned): drop what arrives until the server's `unsubscribed`.
     * @returns {Cursor}
     */
    beginRecovery(): Cursor;
    /** The server's `unsubscribed` for a recovery: from here on comes the replay. */
    drained(): void;
    /**
     * What to do with a publication frame.
     * @param {{offset?: unknown, user_offset?: unknown}} frame
     * @returns {string} a Verdict
     */
    classify(frame: {
        offset?: unknown;
        user_offset?: unknown;
    }): string;
    /** @param {"last" | "userLast"} field @param {number} offset */
    _step(field: "last" | "userLast", offset: number): "deliver" | "drop" | "gap";
    /**
     * The `subscribed` ack: the channel is live from its offsets. Returns true when the client
     * asked to recover and the history no longer reached back: the page must reload its snapshot.
     * @param {{offset?: unknown, user_offset?: unknown, recovered?: unknown, epoch?: unknown}} ack
     * @returns {boolean}
     */
    acknowledge(ack: {
        offset?: unknown;
        user_offset?: unknown;
        recovered?: unknown;
        epoch?: unknown;
    }): boolean;
}
/**
 * Where a channel's stream stands, as sent with a (re)subscribe.
 */
export type Cursor = {
    /**
     * last shared offset delivered
     */
    since?: number;
    /**
     * last personal offset delivered
     */
    user_since?: number;
    /**
     * the epoch of the last ack
     */
    epoch?: string;
};
