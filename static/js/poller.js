// Polling, the last rung (DESIGN §12, seed 003): when neither WebSocket nor SSE gets through,
// every 30 s fetch what each channel missed from GET /history and let the page reload its REST
// snapshot (the `poll` option). The same offset bookkeeping as push applies, so nothing is
// delivered twice when push comes back.

// `since` above any offset: /history then answers with no publications and the channel's latest
// offset, which is how a channel the client never saw acknowledged learns where it stands.
const LEARN_OFFSET = Number.MAX_SAFE_INTEGER;

export class Poller {
  /**
   * @param {object} o
   * @param {object} o.client  the RealtimeClient (channels, options, publication routing)
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
        const body = await this._history(ch.name, ch.last ?? LEARN_OFFSET);
        if (epoch !== this._epoch) return;
        if (body === null || client.channels.get(ch.name) !== ch) continue;
        ch.beginSubscribe(); // what /history returns is a replay, then an ack
        for (const p of body.publications ?? []) {
          client.channels.publication({ channel: ch.name, data: p.data, offset: p.offset },
            this._t.now());
        }
        client.channels.acknowledged(ch.name, body.offset, body.recovered, this._t.now());
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
      client._pollFailed(error?.status);
    } finally {
      this._busy = false;
    }
  }

  /** The body of /history, null for a channel the server refuses (it is skipped), or throws. */
  async _history(channel, since) {
    const client = this._client;
    const url = new URL(client.options.paths.history, client.baseUrl);
    url.searchParams.set("channel", channel);
    url.searchParams.set("since", String(since));
    const headers = { Accept: "application/json" };
    const token = client.credentials.token;
    if (token) headers.Authorization = `Bearer ${token}`;
    const response = await this._fetch(url.toString(), {
      headers, credentials: "same-origin", cache: "no-store",
    });
    if (response.status === 400 || response.status === 403) return null;
    if (!response.ok) {
      const error = new Error(`GET /history answered ${response.status}`);
      error.status = response.status;
      throw error;
    }
    return response.json();
  }
}
