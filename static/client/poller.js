// Polling, the last rung (DESIGN §12, seed 003): when neither WebSocket nor SSE gets through,
// every 30 s fetch what each channel missed from GET /history and let the page reload its REST
// snapshot (the `poll` option). The same offset bookkeeping as push applies, so nothing is
// delivered twice when push comes back.

import { fetchHistory } from "./history.js";

// `since` above any offset: /history then answers with no publications and the channel's latest
// offset, which is how a channel the client never saw acknowledged learns where it stands.
const LEARN_OFFSET = Number.MAX_SAFE_INTEGER;

export class Poller {
  /**
   * @param {object} o
   * @param {any} o.client  the Client (channels, options, publication routing)
   * @param {Function|null} o.fetch
   * @param {boolean} o.enabled "polling" is among the client's transports
   * @param {number} o.intervalMs
   * @param {object} o.timers   setInterval/clearInterval/now
   */
  constructor({ client, fetch, enabled, intervalMs, timers }) {
    this._client = client;
    this._fetch = fetch;
    this._enabled = enabled && Boolean(fetch);
    this._intervalMs = intervalMs;
    this._t = timers;
    this._handle = null;
    this._epoch = 0;
    this._busy = false;
    this.running = false;
    this.ok = false; // the last poll succeeded
    this.tried = false; // a poll finished since start(), well or not
    this.polls = 0;
  }

  start() {
    if (!this._enabled || this.running) return;
    this.running = true;
    this.ok = false;
    this.tried = false;
    this._handle = this._t.setInterval(() => this.poll(), this._intervalMs);
    this.poll();
  }

  stop() {
    if (!this.running) return;
    this.running = false;
    this._epoch += 1; // a poll in flight must not deliver after push came back
    this._t.clearInterval(this._handle);
    this._handle = null;
  }

  /** One round: each channel's history, then the page's snapshot reload. */
  async poll() {
    if (!this.running || this._busy) return;
    this._busy = true;
    const epoch = this._epoch;
    const client = this._client;
    try {
      for (const ch of [...client.channels.values()]) {
        const body = await this._history(ch);
        if (epoch !== this._epoch) return;
        if (body === null || client.channels.get(ch.name) !== ch) continue;
        ch.beginSubscribe(); // what /history returns is a replay, then an ack
        for (const p of body.publications ?? []) client.channels.publication({ ...p, channel: ch.name });
        client.channels.acknowledged(ch.name, body);
      }
      await client.options.poll?.();
      if (epoch !== this._epoch) return;
      this.polls += 1;
      this.ok = true;
      this.tried = true;
      client._pollSucceeded();
    } catch (error) {
      if (epoch !== this._epoch) return;
      this.ok = false;
      this.tried = true;
      client._pollFailed(/** @type {any} */ (error)?.status);
    } finally {
      this._busy = false;
    }
  }

  /**
   * The body of /history for `ch`, or null for a channel the server refuses (400/403: the
   * subscription fails, as a refused subscribe does); throws on anything else.
   * @param {import("./channel.js").Channel} ch
   */
  async _history(ch) {
    const client = this._client;
    const cursor = ch.cursor();
    try {
      return await fetchHistory({
        fetch: this._fetch, url: client._url(client.options.paths.history), channel: ch.name,
        cursor: cursor.since === undefined ? { since: LEARN_OFFSET } : cursor,
        token: client.credentials.token, credentials: client.options.credentials,
      });
    } catch (error) {
      const status = /** @type {any} */ (error)?.status;
      if (status !== 400 && status !== 403) throw error;
      client._refuse(ch.name, /** @type {any} */ (error).reason ?? /** @type {any} */ (error).message);
      return null;
    }
  }
}
