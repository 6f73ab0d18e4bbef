// One subscribed channel on the client: its handlers and where its stream stands (offsets).
//
// Every publication the service stores carries a per-channel offset (DESIGN §9). The client keeps
// the last one it delivered and sends it as `since` whenever it subscribes again, so a reconnect
// loses nothing. Frames without an offset (best-effort messages, the dashboard stats snapshot)
// are delivered as they come and play no part in this bookkeeping.
//
// Phases of a channel:
//   replaying  a subscribe (or stream) is on its way: what arrives before the ack is the replay
//              of history (in order, possibly with holes, see below) - keep anything newer than
//              `last`.
//   live       after the ack: offset last+1 is the next one; anything lower is a duplicate;
//              anything higher is a gap, recovered by subscribing again with `since`.
//   draining   a gap was seen on a WebSocket: we sent unsubscribe+subscribe and drop what the old
//              subscription still delivers until the server's `unsubscribed` marks the seam.
//
// Holes that are not losses: the server numbers a channel's publications once for everyone, but
// delivers user-targeted ones (DESIGN §7) only to their user and may conflate latest-value events
// of a slow reader (§10). So a gap is verified once by a recovery; if the replay brought nothing
// below the offset that revealed it, holes on that channel are accepted for `sparseWindowMs`
// (the server still closes with 4010 when it really lost something upstream).

export const Phase = Object.freeze({ REPLAYING: "replaying", LIVE: "live", DRAINING: "draining" });

export const Verdict = Object.freeze({ DELIVER: "deliver", DROP: "drop", GAP: "gap" });

export class Channel {
  constructor(name, { sparseWindowMs = 60_000 } = {}) {
    this.name = name;
    this.handlers = new Set();
    this.last = null; // last offset delivered (or acknowledged), null before the first ack
    this.phase = Phase.REPLAYING;
    this.sinceSent = false; // the pending subscribe asked to recover from `last`
    this.gapAt = null; // offset that revealed the gap being recovered
    this.filled = false; // the recovery replayed something below gapAt
    this.sparseUntil = 0;
    this.sparseWindowMs = sparseWindowMs;
  }

  /** A subscribe (or an SSE stream) is going out: the `since` to send, or undefined. */
  beginSubscribe() {
    this.phase = Phase.REPLAYING;
    this.sinceSent = this.last !== null;
    return this.sinceSent ? this.last : undefined;
  }

  /**
   * Recover a gap on a socket that keeps delivering (the client sends unsubscribe, then
   * subscribe with the `since` returned): drop what arrives until the server's `unsubscribed`.
   */
  beginRecovery() {
    this.phase = Phase.DRAINING;
    this.sinceSent = true;
    return this.last;
  }

  /** The server's `unsubscribed` for a recovery: from here on comes the replay. */
  drained() {
    if (this.phase === Phase.DRAINING) this.phase = Phase.REPLAYING;
  }

  /** What to do with a publication at `offset` (undefined/null: no offset). */
  classify(offset, now) {
    if (offset === undefined || offset === null) return Verdict.DELIVER;
    if (this.phase === Phase.DRAINING) return Verdict.DROP;
    if (this.last !== null && offset <= this.last) return Verdict.DROP;
    if (this.last === null || this.phase === Phase.REPLAYING) {
      if (this.gapAt !== null && offset < this.gapAt) this.filled = true;
      this.last = offset;
      return Verdict.DELIVER;
    }
    if (offset === this.last + 1 || now < this.sparseUntil) {
      this.last = offset;
      return Verdict.DELIVER;
    }
    this.gapAt = offset;
    this.filled = false;
    return Verdict.GAP;
  }

  /**
   * The `subscribed` ack: the channel is live from `offset`. Returns true when the client asked
   * to recover and the history no longer reached back: the page must reload its snapshot.
   */
  acknowledge(offset, recovered, now) {
    const resync = this.sinceSent && !recovered;
    if (Number.isInteger(offset)) this.last = offset;
    if (this.gapAt !== null) {
      if (recovered && !this.filled) this.sparseUntil = now + this.sparseWindowMs;
      this.gapAt = null;
    }
    this.phase = Phase.LIVE;
    this.sinceSent = false;
    return resync;
  }

  /** Call every handler; one that throws does not stop the others. */
  deliver(data, meta, onHandlerError) {
    for (const handler of [...this.handlers]) {
      try {
        handler(data, meta);
      } catch (error) {
        onHandlerError(error, this.name);
      }
    }
  }
}
