// Which transport to try next, and when: the fallback ladder and the reconnect backoff.
//
// WebSocket first; after `fallbackAfter` failed attempts in a row (closed before the server
// answered anything) it counts as blocked and SSE is tried; when both are blocked the client
// polls, and further attempts alternate between them so either one can bring push back.
// Attempts are spaced by backoffDelay (1 s -> 30 s with jitter) and stop after `maxAttempts`;
// after that only the client's explicit probes (a successful poll, the browser going online,
// reconnect()) try again.

/** Delay before reconnect attempt `n` (0-based): 1, 2, 4 … 30 s, jittered down to half, never under 1 s. */
export function backoffDelay(attempt, { minDelayMs, maxDelayMs }, random = Math.random) {
  const ceiling = Math.min(maxDelayMs, minDelayMs * 2 ** Math.min(attempt, 30));
  return Math.max(minDelayMs, ceiling / 2 + (random() * ceiling) / 2);
}

export class Ladder {
  /**
   * @param {object} options   the client's options (transports, fallbackAfter, maxAttempts,
   *                           minDelayMs, maxDelayMs, promptDelayMs)
   * @param {object} available {websocket: bool, sse: bool}: the constructors exist
   * @param {Function} random
   */
  constructor(options, available, random = Math.random) {
    this.options = options;
    this._random = random;
    this.has = {
      websocket: options.transports.includes("websocket") && Boolean(available.websocket),
      sse: options.transports.includes("sse") && Boolean(available.sse),
    };
    this.failures = { websocket: 0, sse: 0 };
    this.blocked = { websocket: !this.has.websocket, sse: !this.has.sse };
    this.attempt = 0;
    this.gaveUp = false;
    this._alternate = false;
  }

  /** Some push transport exists at all (else the client only polls). */
  get canPush() {
    return this.has.websocket || this.has.sse;
  }

  /** Both push transports failed: time to poll. */
  get pushDown() {
    return this.blocked.websocket && this.blocked.sse;
  }

  /** The transport for the next attempt. */
  choose() {
    if (!this.blocked.websocket) return "websocket";
    if (!this.blocked.sse) return "sse";
    if (this.has.websocket && this.has.sse) {
      this._alternate = !this._alternate;
      return this._alternate ? "websocket" : "sse";
    }
    return this.has.websocket ? "websocket" : "sse";
  }

  /** An attempt on `name` failed before the server answered. */
  failed(name) {
    this.failures[name] += 1;
    if (this.failures[name] >= this.options.fallbackAfter) this.blocked[name] = true;
  }

  /** `name` is established: it is usable again and the backoff starts over. */
  succeeded(name) {
    this.failures[name] = 0;
    this.blocked[name] = false;
    this.reset();
  }

  reset() {
    this.attempt = 0;
    this.gaveUp = false;
  }

  /**
   * Milliseconds until the next attempt, or null once `maxAttempts` are used up. `prompt`
   * (the server asked us back: 1012, 4008, 4010, an SSE stream that ended) makes the first
   * retry come within `promptDelayMs`, at random.
   */
  next(prompt) {
    if (this.gaveUp) return null;
    if (this.attempt >= this.options.maxAttempts) {
      this.gaveUp = true;
      return null;
    }
    const delay = prompt && this.attempt === 0
      ? this._random() * this.options.promptDelayMs
      : backoffDelay(this.attempt, this.options, this._random);
    this.attempt += 1;
    return delay;
  }

  /** One more attempt after giving up; if it fails too, the client has given up again. */
  probe() {
    this.gaveUp = false;
    this.attempt = this.options.maxAttempts;
  }
}
