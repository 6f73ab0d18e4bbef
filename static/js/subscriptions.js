// The client's channels and the server frames about them: subscribe acks, unsubscribe acks and
// publications, checked by offset (channel.js) and handed to the page's handlers.

import { Channel, Verdict } from "./channel.js";

export class Subscriptions {
  /**
   * @param {object} o
   * @param {number} o.sparseWindowMs
   * @param {number} o.resyncBatchMs  acks of one reconnect arriving together: one onResync
   * @param {object} o.timers
   * @param {Function} o.onGap        (channel) => void: recover it from its last offset
   * @param {Function} o.onResync     (names) => void: history could not fill in, reload
   * @param {Function} o.onHandlerError (error, where) => void
   */
  constructor({ sparseWindowMs, resyncBatchMs, timers, onGap, onResync, onHandlerError }) {
    Object.assign(this, { sparseWindowMs, resyncBatchMs, onGap, onResync, onHandlerError });
    this._t = timers;
    this.channels = new Map();
    this._pendingResync = new Set();
    this._resyncTimer = null;
  }

  get size() {
    return this.channels.size;
  }

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
   * Add `handler` to `name`. Returns `{channel, isNew, remove}`; `remove()` takes the handler
   * away (idempotent) and returns true when it was the channel's last one.
   */
  add(name, handler) {
    let channel = this.channels.get(name);
    const isNew = !channel;
    if (isNew) {
      channel = new Channel(name, { sparseWindowMs: this.sparseWindowMs });
      this.channels.set(name, channel);
    }
    channel.handlers.add(handler);
    let active = true;
    const remove = () => {
      if (!active) return false;
      active = false;
      channel.handlers.delete(handler);
      if (channel.handlers.size > 0 || this.channels.get(name) !== channel) return false;
      this.channels.delete(name);
      return true;
    };
    return { channel, isNew, remove };
  }

  /** A publication from any transport (or /history): deliver, drop, or report a gap. */
  publication(frame, now) {
    const channel = this.channels.get(frame.channel);
    if (!channel) return Verdict.DROP;
    const verdict = channel.classify(frame.offset, now);
    if (verdict === Verdict.DELIVER) {
      channel.deliver(frame.data, { channel: frame.channel, offset: frame.offset ?? null },
        this.onHandlerError);
    } else if (verdict === Verdict.GAP) {
      this.onGap(channel);
    }
    return verdict;
  }

  /** The `subscribed` ack (or a /history answer read as one). */
  acknowledged(name, offset, recovered, now) {
    const channel = this.channels.get(name);
    if (channel && channel.acknowledge(offset, recovered === true, now)) this._resync(name);
  }

  /** The `unsubscribed` ack: a recovery's seam. */
  unsubscribed(name) {
    this.channels.get(name)?.drained();
  }

  cancel() {
    if (this._resyncTimer !== null) this._t.clearTimeout(this._resyncTimer);
    this._resyncTimer = null;
    this._pendingResync.clear();
  }

  _resync(name) {
    this._pendingResync.add(name);
    if (this._resyncTimer !== null) return;
    this._resyncTimer = this._t.setTimeout(() => {
      this._resyncTimer = null;
      const names = [...this._pendingResync];
      this._pendingResync.clear();
      try {
        this.onResync(names);
      } catch (error) {
        this.onHandlerError(error, "onResync");
      }
    }, this.resyncBatchMs);
  }
}
