// The client's channels and the server frames about them: subscribe acks, unsubscribe acks,
// refusals and publications, checked by offset (channel.js) and handed to the Subscription
// objects (subscription.js) that share each channel.

import { Channel, Verdict, personalOffset } from "./channel.js";
import { Subscription, SubscriptionState } from "./subscription.js";

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
  constructor({ resyncBatchMs, timers, onGap, onResync, onEmpty, onListenerError }) {
    Object.assign(this, { resyncBatchMs, onGap, onResync, onEmpty, onListenerError });
    this._t = timers;
    /** @type {Map<string, Channel>} */
    this.channels = new Map();
    this._pendingResync = new Set();
    this._resyncTimer = null;
  }

  get size() {
    return this.channels.size;
  }

  /** @param {string} name */
  get(name) {
    return this.channels.get(name);
  }

  names() {
    return [...this.channels.keys()];
  }

  values() {
    return this.channels.values();
  }

  /**
   * A new Subscription on `name`; the channel is created (isNew) by the first one, which also
   * decides where it resumes from (`start`).
   * @param {string} name
   * @param {import("./channel.js").Cursor} [start]
   * @returns {{channel: Channel, sub: Subscription, isNew: boolean}}
   */
  add(name, start) {
    let channel = this.channels.get(name);
    const isNew = !channel;
    if (!channel) {
      channel = new Channel(name, start);
      this.channels.set(name, channel);
    }
    const sub = new Subscription(channel, {
      release: (s) => this._release(/** @type {Channel} */ (channel), s),
      listenerError: this.onListenerError,
    });
    channel.subs.add(sub);
    if (!isNew && channel.acked) {
      // Joining a live channel: subscribed at once, told once the caller attached listeners.
      sub.state = SubscriptionState.SUBSCRIBED;
      queueMicrotask(() => sub._subscribed(this._ackEvent(/** @type {Channel} */ (channel), false)));
    }
    return { channel, sub, isNew };
  }

  /**
   * A publication from any transport (or /history): deliver, drop, or report a gap.
   * @param {{channel: string, data: any, offset?: unknown, user_offset?: unknown}} frame
   */
  publication(frame) {
    const channel = this.channels.get(frame.channel);
    if (!channel) return Verdict.DROP;
    const verdict = channel.classify(frame);
    if (verdict === Verdict.DELIVER) {
      const offset = Number.isInteger(frame.offset) && frame.user_offset !== true ? frame.offset : null;
      const ctx = { channel: frame.channel, data: frame.data, offset, userOffset: personalOffset(frame) };
      for (const sub of [...channel.subs]) sub._publication(ctx);
    } else if (verdict === Verdict.GAP) {
      this.onGap(channel);
    }
    return verdict;
  }

  /**
   * The `subscribed` ack (or a /history answer read as one).
   * @param {string} name
   * @param {{offset?: unknown, user_offset?: unknown, recovered?: unknown, epoch?: unknown}} ack
   */
  acknowledged(name, ack) {
    const channel = this.channels.get(name);
    if (!channel) return;
    if (channel.acknowledge(ack)) this._resync(name);
    const event = this._ackEvent(channel, ack.recovered === true);
    for (const sub of [...channel.subs]) sub._subscribed(event);
  }

  /** The `unsubscribed` ack: a recovery's seam. @param {string} name */
  unsubscribed(name) {
    this.channels.get(name)?.drained();
  }

  /**
   * The server refused `name`: every Subscription on it fails, and the channel is forgotten (it
   * is not subscribed again on reconnect). Returns false for a channel we do not hold.
   * @param {string} name
   * @param {import("./errors.js").PulseError} error
   */
  refused(name, error) {
    const channel = this.channels.get(name);
    if (!channel) return false;
    this.channels.delete(name);
    for (const sub of [...channel.subs]) sub._failed(error);
    channel.subs.clear();
    return true;
  }

  /** The link went: every subscribed channel waits for its next ack. */
  linkLost() {
    for (const channel of this.channels.values()) {
      channel.acked = false;
      for (const sub of channel.subs) sub._subscribing();
    }
  }

  /** client.close(): every Subscription ends. */
  closeAll() {
    const channels = [...this.channels.values()];
    this.channels.clear();
    for (const channel of channels) {
      for (const sub of [...channel.subs]) sub._end(SubscriptionState.UNSUBSCRIBED, "client closed");
      channel.subs.clear();
    }
  }

  cancel() {
    if (this._resyncTimer !== null) this._t.clearTimeout(this._resyncTimer);
    this._resyncTimer = null;
    this._pendingResync.clear();
  }

  /** @param {Channel} channel @param {import("./subscription.js").Subscription} sub */
  _release(channel, sub) {
    channel.subs.delete(sub);
    if (channel.subs.size > 0 || this.channels.get(channel.name) !== channel) return;
    this.channels.delete(channel.name);
    this.onEmpty(channel);
  }

  /** @param {Channel} channel @param {boolean} recovered */
  _ackEvent(channel, recovered) {
    return {
      channel: channel.name, recovered, offset: channel.last, userOffset: channel.userLast,
      epoch: channel.epoch,
    };
  }

  /** @param {string} name */
  _resync(name) {
    this._pendingResync.add(name);
    if (this._resyncTimer !== null) return;
    this._resyncTimer = this._t.setTimeout(() => {
      this._resyncTimer = null;
      const names = [...this._pendingResync];
      this._pendingResync.clear();
      this.onResync(names);
    }, this.resyncBatchMs);
  }
}
