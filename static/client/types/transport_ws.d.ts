/** ws(s)://host/ws for a page served from http(s)://host. */
export function wsUrl(baseUrl: any, path?: string): string;
export class WsTransport {
    /**
     * @param {object} o
     * @param {string} o.url          ws:// or wss:// URL of /ws
     * @param {Function} o.WebSocket  the WebSocket constructor (injected for tests)
     * @param {Function} o.onOpen     () => void
     * @param {Function} o.onFrame    (frame: object) => void, for every JSON object received
     * @param {Function} o.onClose    ({code, reason, opened}) => void, once, unless close() was called
     */
    constructor({ url, WebSocket, onOpen, onFrame, onClose }: {
        url: string;
        WebSocket: Function;
        onOpen: Function;
        onFrame: Function;
        onClose: Function;
    });
    name: string;
    url: string;
    _WebSocket: Function;
    _onOpen: Function;
    _onFrame: Function;
    _onClose: Function;
    _socket: any;
    opened: boolean;
    closed: boolean;
    open(): void;
    /** Send one frame; false if the socket is not open (the caller resends after reconnecting). */
    send(frame: any): boolean;
    /** Close on purpose: no onClose callback follows. */
    close(code?: number, reason?: string): void;
    _finish(code: any, reason: any): void;
}
