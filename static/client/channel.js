// One channel on the wire: the server subscription that every Subscription object on that
// channel shares, and where its stream stands (offsets).
//
// Every publication the service stores carries an offset (DESIGN §9). The client keeps the last
// one it delivered and sends it as `since` whenever it subscribes again, so a reconnect loses
// nothing. Two offset spaces per channel:
//   offset       the channel's shared sequence;
//   user_offset  the caller's personal sequence on user-targeted channels (DESIGN §7, §9): a
//                publication carrying an integer `user_offset` advances this one instead (the
//                form `"user_offset": true` means its `offset` is the personal one).
// Both go back as `since` / `user_since`, with the `epoch` of the last ack (an opaque string
// that marks a restarted sequence), when the client subscribes again. Frames without an offset
// (best-effort messages, the dashboard stats snapshot) are delivered as they come.
//
// The server guarantees that every hole a client sees is a real loss (DESIGN §9), so any hole
// in either space is recovered at once, always: unsubscribe, then subscribe with `since`.
//
// Phases of the stream:
//   replaying  a subscribe (or stream) is on its way: what arrives before the ack is the replay
//              of history - keep anything newer than the last offset.
//   live       after the ack: last+1 is the next one; anything lower is a duplicate; anything
//              higher is a gap.
//   draining   a gap was seen on a WebSocket: we sent unsubscribe+subscribe and drop what the old
//              subscription still delivers until the server's `unsubscribed` marks the seam.

export const Phase = Object.freeze({ REPLAYING: "replaying", LIVE: "live", DRAINING: "draining" });

export const Verdict = Object.freeze({ DELIVER: "deliver", DROP: "drop", GAP: "gap" });

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
export function personalOffset(frame) {
  if (Number.isInteger(frame.user_offset)) return /** @type {number} */ (frame.user_offset);
  if (frame.user_offset === true && Number.isInteger(frame.offset)) return /** @type {number} */ (frame.offset);
  return null;
}

export class Channel {
  /**
   * @param {string} name
   * @param {Cursor} [start] where to resume from on the first subscribe
   */
  constructor(name, start = {}) {
    this.name = name;
    /** @type {Set<import("./subscription.js").Subscription>} the handles sharing it */
    this.subs = new Set();
    /** @type {number | null} last shared offset delivered (or acknowledged) */
    this.last = Number.isInteger(start.since) ? /** @type {number} */ (start.since) : null;
    /** @type {number | null} last personal offset delivered (or acknowledged) */
    this.userLast = Number.isInteger(start.user_since) ? /** @type {number} */ (start.user_since) : null;
    /** @type {string | null} */
    this.epoch = typeof start.epoch === "string" ? start.epoch : null;
    this.phase = Phase.REPLAYING;
    this.acked = false; // an ack arrived since the last (re)subscribe
    this.sinceSent = false; // the pending subscribe asked to recover
    this.retries = 0; // "temporarily unavailable" answers in a row
  }

  /** @returns {Cursor} what to send with a subscribe: only the parts known */
  cursor() {
    /** @type {Cursor} */
    const cursor = {};
    if (this.last !== null) cursor.since = this.last;
    if (this.userLast !== null) cursor.user_since = this.userLast;
    if (this.epoch !== null && (this.last !== null || this.userLast !== null)) cursor.epoch = this.epoch;
    return cursor;
  }

  /** A subscribe (or an SSE stream) is going out. @returns {Cursor} */
  beginSubscribe() {
    this.phase = Phase.REPLAYING;
    this.acked = false;
    const cursor = this.cursor();
    this.sinceSent = cursor.since !== undefined || cursor.user_since !== undefined;
    return cursor;
  }

  /**
   * Recover a gap on a socket that keeps delivering (the client sends unsubscribe, then
   * subscribe with the cursor returned): drop what arrives until the server's `unsubscribed`.
   * @returns {Cursor}
   */
  beginRecovery() {
    const cursor = this.beginSubscribe();
    this.phase = Phase.DRAINING;
    return cursor;
  }

  /** The server's `unsubscribed` for a recovery: from here on comes the replay. */
  drained() {
    if (this.phase === Phase.DRAINING) this.phase = Phase.REPLAYING;
  }

  /**
   * What to do with a publication frame.
   * @param {{offset?: unknown, user_offset?: unknown}} frame
   * @returns {string} a Verdict
   */
  classify(frame) {
    const personal = personalOffset(frame);
    if (personal !== null) return this._step("userLast", personal);
    if (Number.isInteger(frame.offset)) return this._step("last", /** @type {number} */ (frame.offset));
    return Verdict.DELIVER;
  }

  /** @param {"last" | "userLast"} field @param {number} offset */
  _step(field, offset) {
    if (this.phase === Phase.DRAINING) return Verdict.DROP;
    const last = this[field];
    if (last !== null && offset <= last) return Verdict.DROP;
    // Before the ack (a replay) anything newer is kept; a space never seen has no baseline.
    if (last === null || this.phase === Phase.REPLAYING || offset === last + 1) {
      this[field] = offset;
      return Verdict.DELIVER;
    }
    return Verdict.GAP;
  }

  /**
   * The `subscribed` ack: the channel is live from its offsets. Returns true when the client
   * asked to recover and the history no longer reached back: the page must reload its snapshot.
   * @param {{offset?: unknown, user_offset?: unknown, recovered?: unknown, epoch?: unknown}} ack
   * @returns {boolean}
   */
  acknowledge(ack) {
    const resync = this.sinceSent && ack.recovered !== true;
    if (Number.isInteger(ack.offset)) this.last = /** @type {number} */ (ack.offset);
    if (Number.isInteger(ack.user_offset)) this.userLast = /** @type {number} */ (ack.user_offset);
    if (typeof ack.epoch === "string") this.epoch = ack.epoch;
    this.phase = Phase.LIVE;
    this.acked = true;
    this.sinceSent = false;
    this.retries = 0;
    return resync;
  }
}
