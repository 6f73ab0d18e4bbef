// Liveness and latency of the current link (seed 004: "keepalive pings, 30 s, with latency").
//
// On a WebSocket: {"action":"ping","ts":…} every `intervalMs`; the server echoes ts in its pong,
// which gives the round trip; no frame at all within `timeoutMs` of a ping means the link is
// dead (a half-open TCP connection never reports a close by itself). SSE cannot send, so its
// latency is the round trip of GET /healthz on the same interval.

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
  constructor({ timers, intervalMs, timeoutMs, fetch, healthUrl, onLatency }) {
    Object.assign(this, { intervalMs, timeoutMs, healthUrl, onLatency });
    this._t = timers;
    this._fetch = fetch;
    this._interval = null;
    this._deadline = null;
  }

  /**
   * Ping a socket: `ping()` sends one and returns its ts; `lastFrameAt()` is when anything last
   * arrived; `dead()` is called when nothing answered in time.
   */
  watchSocket({ ping, lastFrameAt, dead }) {
    this.stop();
    this._interval = this._t.setInterval(() => {
      const sentAt = ping();
      this._t.clearTimeout(this._deadline);
      this._deadline = this._t.setTimeout(() => {
        if (lastFrameAt() < sentAt) dead();
      }, this.timeoutMs);
    }, this.intervalMs);
  }

  /** Time GET /healthz now and every interval (for SSE). */
  watchHttp() {
    this.stop();
    this.measureHttp();
    this._interval = this._t.setInterval(() => this.measureHttp(), this.intervalMs);
  }

  stop() {
    this._t.clearInterval(this._interval);
    this._t.clearTimeout(this._deadline);
    this._interval = this._deadline = null;
  }

  /** A pong echoing `ts` (ms since the epoch, as sent) arrived now. */
  pong(ts) {
    if (typeof ts === "number") this.onLatency(Math.max(0, this._t.now() - ts));
  }

  async measureHttp() {
    if (!this._fetch) return;
    const started = this._t.now();
    try {
      const response = await this._fetch(this.healthUrl, { cache: "no-store", credentials: "same-origin" });
      if (response.ok) this.onLatency(Math.max(0, this._t.now() - started));
    } catch {
      // the stream's own error handling notices a dead server
    }
  }
}
