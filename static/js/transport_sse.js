// The Server-Sent Events transport: GET /sse?channels=a,b, the same JSON frames as /ws.
//
// The channel set is part of the URL, so subscribing or unsubscribing means reopening the stream;
// the cursor ("dashboard:12,mining:40", the format of the stream's `id:` lines) makes the server
// resume each channel exactly like `subscribe` with `since` (DESIGN §9). EventSource would
// reconnect by itself and send that cursor as the Last-Event-ID header; we close it on the first
// error instead and reopen it from realtime.js, passing the same cursor as `last_event_id`, so
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

/** "a:1,b:2" from a Map or object of channel -> last offset (channels without one are left out). */
export function formatCursor(offsets) {
  const parts = [];
  for (const [channel, offset] of offsets instanceof Map ? offsets : Object.entries(offsets)) {
    if (Number.isInteger(offset) && offset >= 0) parts.push(`${channel}:${offset}`);
  }
  return parts.join(",");
}

/** The inverse of formatCursor; malformed parts are skipped. */
export function parseCursor(value) {
  const cursor = new Map();
  for (const part of (value || "").split(",")) {
    const at = part.lastIndexOf(":");
    if (at <= 0) continue;
    const offset = Number(part.slice(at + 1));
    if (Number.isInteger(offset) && offset >= 0) cursor.set(part.slice(0, at).trim(), offset);
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
