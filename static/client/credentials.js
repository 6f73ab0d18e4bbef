// The token the client holds, if any (DESIGN §5).
//
// A page signed in by the HttpOnly `access_token` cookie holds none: the browser sends the
// cookie with the WebSocket handshake, EventSource and fetch. A page that gets tokens from
// elsewhere passes `getToken`; it is asked before every connection and, for a JWT, again shortly
// before `exp`, so a live WebSocket can be extended with an auth frame instead of being closed
// with 4001.

export class Credentials {
  /**
   * @param {object} o
   * @param {string|null} o.token        a token to start with
   * @param {Function|null} o.getToken   () => token | null | Promise of one
   * @param {object} o.timers
   * @param {number} o.marginMs          ask for a new token this long before `exp`
   */
  constructor({ token = null, getToken = null, timers, marginMs }) {
    this.token = token;
    this.getToken = getToken;
    this._t = timers;
    this._marginMs = marginMs;
    this._refresh = null;
  }

  /** The token to use now: a fresh one from getToken if it has one, else the last known. */
  async resolve() {
    if (this.getToken) {
      try {
        const token = await this.getToken();
        if (token) this.token = token;
      } catch {
        // keep the token we had
      }
    }
    return this.token;
  }

  /** Call `renewed(token)` with a new token shortly before the current one expires. */
  scheduleRefresh(renewed) {
    this.cancel();
    const exp = tokenExpiry(this.token);
    if (!exp || !this.getToken) return;
    const delay = Math.max(0, exp * 1000 - this._t.now() - this._marginMs);
    this._refresh = this._t.setTimeout(async () => {
      this._refresh = null;
      const before = this.token;
      const token = await this.resolve();
      if (token && token !== before) renewed(token);
      if (tokenExpiry(token) !== exp) this.scheduleRefresh(renewed);
    }, delay);
  }

  cancel() {
    if (this._refresh !== null) this._t.clearTimeout(this._refresh);
    this._refresh = null;
  }
}

/** `exp` (seconds) of a JWT, or null; the client never verifies a token, it only times a refresh. */
export function tokenExpiry(token) {
  if (typeof token !== "string") return null;
  const part = token.split(".")[1];
  if (!part) return null;
  try {
    const json = globalThis.atob(part.replace(/-/g, "+").replace(/_/g, "/"));
    const exp = JSON.parse(json).exp;
    return Number.isFinite(exp) ? exp : null;
  } catch {
    return null;
  }
}
