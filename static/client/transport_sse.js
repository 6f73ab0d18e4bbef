// The Server-Sent Events transport: GET /sse?channels=a,b, the same JSON frames as /ws.
//
// The channel set is part of the URL, so subscribing or unsubscribing means reopening the stream;
// the cursor ("dashboard:12,mining:40", the format of the stream's `id:` lines; see formatCursor)
// makes the server resume each channel exactly like `subscribe` with `since` (DESIGN §9).
// EventSource would reconnect by itself and send that cursor as the Last-Event-ID header; we
// close it on the first error instead and reopen it from client.js, passing the same cursor as `last_event_id`, so
// that backoff, the fallback ladder and the move back to WebSocket stay in one place.

export class SseTransport {
  /**
   * @param {object} o
   * @param {string} o.url             full /sse URL (see sseUrl)
   * @param {Function} o.EventSource   the EventSource constructor (injected for tests)
   * @param {Function} o.onOpen        () => void
   * @param {Function} o.onFrame       (frame: object, lastEventId: string) => void
   * @param {Function} o.onClose       ({code: null, reason, opened}) => void, unless close() was called
   */
  constructor({ url, EventSource, onOpen, onFrame, onClose }) {
    this.name = "sse";
    this.url = url;
    this._EventSource = EventSource;
    this._onOpen = onOpen;
    this._onFrame = onFrame;
    this._onClose = onClose;
    this._source = null;
    this.opened = false;
    this.closed = false;
  }

  open() {
    const source = new this._EventSource(this.url);
    this._source = source;
    source.onopen = () => {
      if (this.closed) return;
      this.opened = true;
      this._onOpen();
    };
    source.onmessage = (event) => {
      if (this.closed) return;
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (frame && typeof frame === "object") this._onFrame(frame, event.lastEventId || "");
    };
    source.onerror = () => {
      if (this.closed) return;
      this.closed = true;
      source.close();
      this._onClose({ code: null, reason: "stream error", opened: this.opened });
    };
  }

  /** SSE is one-way: frames for the server are not possible here. */
  send() {
    return false;
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    if (this._source) this._source.close();
  }
}

/**
 * The resume cursor, "a:1,b:2", from a Map or object of channel -> Cursor (or a bare offset).
 * Each part is `<channel>:<offset>[/<user_offset>][@<epoch>]`: the personal offset and the
 * epoch only when known (DESIGN §9); channels without a shared offset are left out.
 * @param {Map<string, import("./channel.js").Cursor | number> | Record<string, import("./channel.js").Cursor | number>} cursors
 * @returns {string}
 */
export function formatCursor(cursors) {
  const parts = [];
  for (const [channel, value] of cursors instanceof Map ? cursors : Object.entries(cursors)) {
    const cursor = typeof value === "number" ? { since: value } : value ?? {};
    const { since, user_since: userSince, epoch } = cursor;
    if (!Number.isInteger(since) || /** @type {number} */ (since) < 0) continue;
    let part = `${channel}:${since}`;
    if (Number.isInteger(userSince) && /** @type {number} */ (userSince) >= 0) part += `/${userSince}`;
    if (typeof epoch === "string" && epoch) part += `@${epoch}`;
    parts.push(part);
  }
  return parts.join(",");
}

/**
 * The inverse of formatCursor; malformed parts are skipped.
 * @param {string | null | undefined} value
 * @returns {Map<string, import("./channel.js").Cursor>}
 */
export function parseCursor(value) {
  /** @type {Map<string, import("./channel.js").Cursor>} */
  const cursor = new Map();
  for (let part of (value || "").split(",")) {
    /** @type {import("./channel.js").Cursor} */
    const entry = {};
    const at = part.indexOf("@");
    if (at >= 0) {
      entry.epoch = part.slice(at + 1);
      part = part.slice(0, at);
    }
    const colon = part.lastIndexOf(":");
    if (colon <= 0) continue;
    const [since, userSince, extra] = part.slice(colon + 1).split("/");
    if (extra !== undefined || !/^\d+$/.test(since)) continue;
    entry.since = Number(since);
    if (userSince !== undefined) {
      if (!/^\d+$/.test(userSince)) continue;
      entry.user_since = Number(userSince);
    }
    cursor.set(part.slice(0, colon).trim(), entry);
  }
  return cursor;
}

/**
 * The stream URL: channels, the resume cursor and, only when no cookie can carry it, the token
 * (EventSource cannot set headers; DESIGN §5 allows the query as the last resort).
 */
export function sseUrl(baseUrl, channels, cursor = "", token = null, path = "/sse") {
  const url = new URL(path, baseUrl);
  url.searchParams.set("channels", channels.join(","));
  if (cursor) url.searchParams.set("last_event_id", cursor);
  if (token) url.searchParams.set("token", token);
  return url.toString();
}
