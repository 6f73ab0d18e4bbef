export const SubscriptionState: Readonly<{
    SUBSCRIBING: "subscribing";
    SUBSCRIBED: "subscribed";
    UNSUBSCRIBED: "unsubscribed";
    FAILED: "failed";
}>;
/**
 * @typedef {object} Publication What a `publication` listener receives.
 * @property {string} channel
 * @property {any} data              the event: `data.type` names it
 * @property {number | null} offset  its shared offset, null for best-effort frames
 * @property {number | null} userOffset its personal offset on a user-targeted channel, or null
 */
/**
 * @typedef {object} SubscribedEvent What a `subscribed` listener receives.
 * @property {string} channel
 * @property {boolean} recovered  true when a resubscribe replayed everything missed; false on a
 *   first subscribe or when history no longer reached back (reload your snapshot)
 * @property {boolean} resubscribed  it was subscribed before (a reconnect or a gap recovery)
 * @property {number | null} offset
 * @property {number | null} userOffset
 * @property {string | null} epoch
 */
/**
 * @typedef {object} UnsubscribedEvent
 * @property {string} channel
 * @property {string} reason  "unsubscribe" (the caller) or "client closed"
 */
/**
 * @typedef {object} StateChange
 * @property {string} state     the new SubscriptionState
 * @property {string} previous  the one before
 */
export class Subscription extends Emitter {
    /**
     * Made by Client.subscribe(); not meant to be constructed directly.
     * @param {import("./channel.js").Channel} channel the shared server subscription
     * @param {object} hooks
     * @param {(sub: Subscription) => void} hooks.release  called once when this one ends
     * @param {(error: PulseError) => void} hooks.listenerError  a listener threw
     */
    constructor(channel: import("./channel.js").Channel, { release, listenerError }: {
        release: (sub: Subscription) => void;
        listenerError: (error: PulseError) => void;
    });
    /** @type {string} */
    channel: string;
    /** @type {string} a SubscriptionState */
    state: string;
    /** @type {PulseError | null} why it failed (state "failed") */
    error: PulseError | null;
    _shared: import("./channel.js").Channel;
    _release: (sub: Subscription) => void;
    _listenerError: (error: PulseError) => void;
    _everSubscribed: boolean;
    /** The last shared offset delivered on this channel, or null. @returns {number | null} */
    get offset(): number | null;
    /** The last personal offset delivered on this channel, or null. @returns {number | null} */
    get userOffset(): number | null;
    /** The epoch of the last ack, or null. @returns {string | null} */
    get epoch(): string | null;
    /** @returns {boolean} subscribing or subscribed */
    get active(): boolean;
    /**
     * Listen to this subscription's events; returns the function that removes the listener.
     * @overload
     * @param {"publication"} event
     * @param {(publication: Publication) => void} listener
     * @returns {() => void}
     */
    on(event: "publication", listener: (publication: Publication) => void): () => void;
    /**
     * @overload
     * @param {"subscribed"} event
     * @param {(event: SubscribedEvent) => void} listener
     * @returns {() => void}
     */
    on(event: "subscribed", listener: (event: SubscribedEvent) => void): () => void;
    /**
     * @overload
     * @param {"error"} event
     * @param {(error: PulseError) => void} listener
     * @returns {() => void}
     */
    on(event: "error", listener: (error: PulseError) => void): () => void;
    /**
     * @overload
     * @param {"unsubscribed"} event
     * @param {(event: UnsubscribedEvent) => void} listener
     * @returns {() => void}
     */
    on(event: "unsubscribed", listener: (event: UnsubscribedEvent) => void): () => void;
    /**
     * @overload
     * @param {"state"} event
     * @param {(event: StateChange) => void} listener
     * @returns {() => void}
     */
    on(event: "state", listener: (event: StateChange) => void): () => void;
    /**
     * Resolves once subscribed (at once if it is); rejects with the PulseError if it fails or
     * ends first.
     * @returns {Promise<Subscription>}
     */
    ready(): Promise<Subscription>;
    /**
     * End this subscription (idempotent). The server subscription ends with the last one on the
     * channel.
     */
    unsubscribe(): void;
    /** @param {any} ctx @internal */
    _publication(ctx: any): void;
    /** @param {Omit<SubscribedEvent, "resubscribed">} ack @internal */
    _subscribed(ack: Omit<SubscribedEvent, "resubscribed">): void;
    /** The link went: subscribed again on the next one. @internal */
    _subscribing(): void;
    /** @param {PulseError} error @internal */
    _failed(error: PulseError): void;
    /** A temporary error: the client retries by itself. @param {PulseError} error @internal */
    _error(error: PulseError): void;
    /** @param {string} state @param {string} reason @internal */
    _end(state: string, reason: string): void;
    /** @param {string} state */
    _setState(state: string): void;
    _endError(): PulseError;
}
/**
 * What a `publication` listener receives.
 */
export type Publication = {
    channel: string;
    /**
     * the event: `data.type` names it
     */
    data: any;
    /**
     * its shared offset, null for best-effort frames
     */
    offset: number | null;
    /**
     * its personal offset on a user-targeted channel, or null
     */
    userOffset: number | null;
};
/**
 * What a `subscribed` listener receives.
 */
export type SubscribedEvent = {
    channel: string;
    /**
     * true when a resubscribe replayed everything missed; false on a
     * first subscribe or when history no longer reached back (reload your snapshot)
     */
    recovered: boolean;
    /**
     * it was subscribed before (a reconnect or a gap recovery)
     */
    resubscribed: boolean;
    offset: number | null;
    userOffset: number | null;
    epoch: string | null;
};
export type UnsubscribedEvent = {
    channel: string;
    /**
     * "unsubscribe" (the caller) or "client closed"
     */
    reason: string;
};
export type StateChange = {
    /**
     * the new SubscriptionState
     */
    state: string;
    /**
     * the one before
     */
    previous: string;
};
import { Emitter } from "./emitter.js";
import { PulseError } from "./errors.js";
