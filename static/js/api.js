// The REST client for the dashboard page (seed 000 §3.6.1, DESIGN §4).
//
// Same-origin requests carry the HttpOnly `access_token` cookie by themselves; when the page
// holds a token of its own (`getToken`), it goes in an Authorization header instead. Errors are
// ApiError with the HTTP status and the service's `{"detail": …}`.

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail || `HTTP ${status}`);
    this.name = "ApiError";
    this.status = status;
    this.detail = detail;
  }
}

export class ApiClient {
  /**
   * @param {object} [o]
   * @param {string} [o.baseUrl]     default: the page's address
   * @param {Function} [o.getToken]  () => token | null | Promise of one
   * @param {Function} [o.fetch]
   */
  constructor({ baseUrl, getToken = null, fetch } = {}) {
    this.baseUrl = baseUrl ?? globalThis.location?.href ?? "http://localhost/";
    this._getToken = getToken;
    this._fetch = fetch ?? globalThis.fetch.bind(globalThis);
  }

  /** GET `path` with `params` (undefined/null/"" left out); the parsed JSON body. */
  async get(path, params = {}) {
    const url = new URL(path, this.baseUrl);
    for (const [key, value] of Object.entries(params)) {
      if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, value);
    }
    const headers = { Accept: "application/json" };
    const token = this._getToken ? await this._getToken() : null;
    if (token) headers.Authorization = `Bearer ${token}`;
    let response;
    try {
      response = await this._fetch(url.toString(), {
        headers, credentials: "same-origin", cache: "no-store",
      });
    } catch (error) {
      throw new ApiError(0, `network error: ${error?.message ?? error}`);
    }
    if (!response.ok) {
      let detail = null;
      try {
        detail = (await response.json())?.detail ?? null;
      } catch {
        // not JSON: keep the status alone
      }
      throw new ApiError(response.status, detail);
    }
    return response.json();
  }

  me() {
    return this.get("/me");
  }

  stats() {
    return this.get("/dashboard/stats");
  }

  feed({ limit = 20, beforeId } = {}) {
    return this.get("/dashboard/feed", { limit, before_id: beforeId });
  }

  events() {
    return this.get("/dashboard/events");
  }

  recentBadges(limit = 5) {
    return this.get("/dashboard/recent-badges", { limit });
  }

  leaderboard(category, limit = 10) {
    return this.get(`/leaderboard/${encodeURIComponent(category)}`, { limit });
  }

  history(channel, since) {
    return this.get("/history", { channel, since });
  }
}
