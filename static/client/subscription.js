// A Subscription: what client.subscribe() returns, one per call. Several on the same channel
// share one server subscription (channel.js); each has its own listeners and can end on its own.
//
//   const sub = client.subscribe("dashboard");
//   sub.on("publication", ({ data, offset }) => render(data));
//   sub.on("subscribed", ({ recovered }) => { if (!recovered) reload(); });
//   sub.on("error", (error) => console.warn(error.reason));
//   sub.unsubscribe();
//
// States (SubscriptionState):
//   subscribing   waiting for the server's ack (first time, or again after a reconnect);
//   subscribed    the ack arrived: publications flow;
//   unsubscribed  ended by unsubscribe() or client.close(): terminal;
//   failed        the server refused the channel (invalid, forbidden, a limit): terminal, with
//                 `error` holding the server's reason; never subscribed again.

import { Emitter } from "./emitter.js";
import { ErrorCode, PulseError } from "./errors.js";

export const SubscriptionState = Object.freeze({
  SUBSCRIBING: "subscribing",
  SUBSCRIBED: "subscribed",
  UNSUBSCRIBED: "unsubscribed",
  FAILED: "failed",
});

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
  constructor(channel, { release, listenerError }) {
    super();
    /** @type {string} */
    this.channel = channel.name;
    /** @type {string} a SubscriptionState */
    this.state = SubscriptionState.SUBSCRIBING;
    /** @type {PulseError | null} why it failed (state "failed") */
    this.error = null;
    this._shared = channel;
    this._release = release;
    this._listenerError = listenerError;
    this._everSubscribed = false;
  }

  /** The last shared offset delivered on this channel, or null. @returns {number | null} */
  get offset() {
    return this._shared.last;
  }

  /** The last personal offset delivered on this channel, or null. @returns {number | null} */
  get userOffset() {
    return this._shared.userLast;
  }

  /** The epoch of the last ack, or null. @returns {string | null} */
  get epoch() {
    return this._shared.epoch;
  }

  /** @returns {boolean} subscribing or subscribed */
  get active() {
    return this.state === SubscriptionState.SUBSCRIBING || this.state === SubscriptionState.SUBSCRIBED;
  }

  /**
   * Listen to this subscription's events; returns the function that removes the listener.
   * @overload
   * @param {"publication"} event
   * @param {(publication: Publication) => void} listener
   * @returns {() => void}
   */
  /**
   * @overload
   * @param {"subscribed"} event
   * @param {(event: SubscribedEvent) => void} listener
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
   * @param {"unsubscribed"} event
   * @param {(event: UnsubscribedEvent) => void} listener
   * @returns {() => void}
   */
  /**
   * @overload
   * @param {"state"} event
   * @param {(event: StateChange) => void} listener
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

  /**
   * Resolves once subscribed (at once if it is); rejects with the PulseError if it fails or
   * ends first.
   * @returns {Promise<Subscription>}
   */
  ready() {
    if (this.state === SubscriptionState.SUBSCRIBED) return Promise.resolve(this);
    if (!this.active) return Promise.reject(this._endError());
    return new Promise((resolve, reject) => {
      const offs = [
        this.on("subscribed", () => { offs.forEach((off) => off()); resolve(this); }),
        this.on("state", ({ state }) => {
          if (state === SubscriptionState.FAILED || state === SubscriptionState.UNSUBSCRIBED) {
            offs.forEach((off) => off());
            reject(this._endError());
          }
        }),
      ];
    });
  }

  /**
   * End this subscription (idempotent). The server subscription ends with the last one on the
   * channel.
   */
  unsubscribe() {
    if (!this.active) return;
    this._release(this);
    this._end(SubscriptionState.UNSUBSCRIBED, "unsubscribe");
  }

  // -- driven by the client ---------------------------------------------------------------
  /** @param {any} ctx @internal */
  _publication(ctx) {
    if (this.active) this._emit("publication", ctx);
  }

  /** @param {Omit<SubscribedEvent, "resubscribed">} ack @internal */
  _subscribed(ack) {
    if (!this.active) return;
    const resubscribed = this._everSubscribed;
    this._everSubscribed = true;
    this._setState(SubscriptionState.SUBSCRIBED);
    this._emit("subscribed", { ...ack, resubscribed });
  }

  /** The link went: subscribed again on the next one. @internal */
  _subscribing() {
    if (this.state === SubscriptionState.SUBSCRIBED) this._setState(SubscriptionState.SUBSCRIBING);
  }

  /** @param {PulseError} error @internal */
  _failed(error) {
    if (!this.active) return;
    this.error = error;
    this._emit("error", error);
    this._setState(SubscriptionState.FAILED);
  }

  /** A temporary error: the client retries by itself. @param {PulseError} error @internal */
  _error(error) {
    if (this.active) this._emit("error", error);
  }

  /** @param {string} state @param {string} reason @internal */
  _end(state, reason) {
    if (!this.active) return;
    this._setState(state);
    if (state === SubscriptionState.UNSUBSCRIBED) this._emit("unsubscribed", { channel: this.channel, reason });
  }

  /** @param {string} state */
  _setState(state) {
    const previous = this.state;
    if (previous === state) return;
    this.state = state;
    this._emit("state", { state, previous });
  }

  _endError() {
    return this.error ?? new PulseError(ErrorCode.CLOSED,
      `subscription to ${this.channel} ended before it was established`, { channel: this.channel });
  }

  /** @param {unknown} error @param {string} event @protected */
  _listenerFailed(error, event) {
    if (event === "error") {
      globalThis.console?.error?.(error);
      return;
    }
    this._listenerError(new PulseError(ErrorCode.HANDLER,
      `a "${event}" listener on ${this.channel} threw: ${/** @type {any} */ (error)?.message ?? error}`,
      { channel: this.channel, cause: error }));
  }
}
