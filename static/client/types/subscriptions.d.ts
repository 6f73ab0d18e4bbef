export class Subscriptions {
    /**
     * @param {object} o
     * @param {number} o.resyncBatchMs  acks of one reconnect arriving together: one onResync
     * @param {object} o.timers
     * @param {(channel: Channel) => void} o.onGap    recover it from its last offsets
     * @param {(names: string[]) => void} o.onResync  history could not fill in: reload
     * @param {(channel: Channel) => void} o.onEmpty  its last Subscription ended: unsubscribe
     * @param {(error: import("./errors.js").PulseError) => void} o.onListenerError
     */
    constructor({ resyncBatchMs, timers, onGap, onResync, onEmpty, onListenerError }: {
        resyncBatchMs: number;
        timers: object;
        onGap: (channel: Channel) => void;
        onResync: (names: string[]) => void;
        onEmpty: (channel: Channel) => void;
        onListenerError: (error: import("./errors.js").PulseError) => void;
    });
    _t: any;
    /** @type {Map<string, Channel>} */
    channels: Map<string, Channel>;
    _pendingResync: Set<any>;
    _resyncTimer: any;
    get size(): number;
    /** @param {string} name */
    get(name: string): Channel;
    names(): string[];
    values(): MapIterator<Channel>;
    /**
     * A new Subscription on `name`; the channel is created (isNew) by the first one, which also
     * decides where it resumes from (`start`).
     * @param {string} name
     * @param {import("./channel.js").Cursor} [start]
     * @returns {{channel: Channel, sub: Subscription, isNew: boolean}}
     */
    add(name: string, start?: import("./channel.js").Cursor): {
        channel: Channel;
        sub: Subscription;
        isNew: boolean;
    };
    /**
     * A publication from any transport (or /history): deliver, drop, or report a gap.
     * @param {{channel: string, data: any, offset?: unknown, user_offset?: unknown}} frame
     */
    publication(frame: {
        channel: string;
        data: any;
        offset?: unknown;
        user_offset?: unknown;
    }): string;
    /**
     * The `subscribed` ack (or a /history answer read as one).
     * @param {string} name
     * @param {{offset?: unknown, user_offset?: unknown, recovered?: unknown, epoch?: unknown}} ack
     */
    acknowledged(name: string, ack: {
        offset?: unknown;
        user_offset?: unknown;
        recovered?: unknown;
        epoch?: unknown;
    }): void;
    /** The `unsubscribed` ack: a recovery's seam. @param {string} name */
    unsubscribed(name: string): void;
    /**
     * The server refused `name`: every Subscription on it fails, and the channel is forgotten (it
     * is not subscribed again on reconnect). Returns false for a channel we do not hold.
     * @param {string} name
     * @param {import("./errors.js").PulseError} error
     */
    refused(name: string, error: import("./errors.js").PulseError): boolean;
    /** The link went: every subscribed channel waits for its next ack. */
    linkLost(): void;
    /** client.close(): every Subscription ends. */
    closeAll(): void;
    cancel(): void;
    /** @param {Channel} channel @param {import("./subscription.js").Subscription} sub */
    _release(channel: Channel, sub: import("./subscription.js").Subscription): void;
    /** @param {Channel} channel @param {boolean} recovered */
    _ackEvent(channel: Channel, recovered: boolean): {
        channel: string;
        recovered: boolean;
        offset: number;
        userOffset: number;
        epoch: string;
    };
    /** @param {string} name */
    _resync(name: string): void;
}
import { Channel } from "./channel.js";
import { Subscription } from "./subscription.js";
