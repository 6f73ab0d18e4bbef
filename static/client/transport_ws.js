// The WebSocket transport: one socket, JSON text frames, no policy.
//
// Reconnecting, auth and subscriptions belong to client.js; this module only opens the socket,
// parses frames and reports how it closed. Authentication is by the `access_token` cookie, which
// a same-origin WebSocket sends by itself, or by a first frame {"action":"auth","token":…}
// (DESIGN §5); the token never goes into this URL.

export class WsTransport {
  /**
   * @param {object} o
   * @param {string} o.url          ws:// or wss:// URL of /ws
   * @param {Function} o.WebSocket  the WebSocket constructor (injected for tests)
   * @param {Function} o.onOpen     () => void
   * @param {Function} o.onFrame    (frame: object) => void, for every JSON object received
   * @param {Function} o.onClose    ({code, reason, opened}) => void, once, unless close() was called
   */
  constructor({ url, WebSocket, onOpen, onFrame, onClose }) {
    this.name = "websocket";
    this.url = url;
    this._WebSocket = WebSocket;
    this._onOpen = onOpen;
    this._onFrame = onFrame;
    this._onClose = onClose;
    this._socket = null;
    this.opened = false;
    this.closed = false;
  }

  open() {
    const socket = new this._WebSocket(this.url);
    this._socket = socket;
    socket.onopen = () => {
      if (this.closed) return;
      this.opened = true;
      this._onOpen();
    };
    socket.onmessage = (event) => {
      if (this.closed) return;
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return; // the server only sends JSON; ignore anything else rather than drop the link
      }
      if (frame && typeof frame === "object") this._onFrame(frame);
    };
    // `error` is always followed by `close`, which carries the code: act on that one only.
    socket.onerror = () => {};
    socket.onclose = (event) => this._finish(event.code, event.reason || "");
  }

  /** Send one frame; false if the socket is not open (the caller resends after reconnecting). */
  send(frame) {
    const socket = this._socket;
    if (!socket || this.closed || socket.readyState !== 1) return false;
    socket.send(JSON.stringify(frame));
    return true;
  }

  /** Close on purpose: no onClose callback follows. */
  close(code = 1000, reason = "") {
    if (this.closed) return;
    this.closed = true;
    const socket = this._socket;
    if (socket && socket.readyState < 2) {
      try {
        socket.close(code, reason);
      } catch {
        socket.close();
      }
    }
  }

  _finish(code, reason) {
    if (this.closed) return;
    this.closed = true;
    this._onClose({ code, reason, opened: this.opened });
  }
}

/** ws(s)://host/ws for a page served from http(s)://host. */
export function wsUrl(baseUrl, path = "/ws") {
  const url = new URL(path, baseUrl);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.toString();
}
