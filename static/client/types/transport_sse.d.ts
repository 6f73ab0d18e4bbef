/**
 * The resume cursor, "a:1,b:2", from a Map or object of channel -> Cursor (or a bare offset).
 * Each part is `<channel>:<offset>[/<user_offset>][@<epoch>]`: the personal offset and the
 * epoch only when known (DESIGN §9); channels without a shared offset are left out.
 * @param {Map<string, import("./channel.js").Cursor | number> | Record<string, import("./channel.js").Cursor | number>} cursors
 * @returns {string}
 */
export function formatCursor(cursors: Map<string, import("./channel.js").Cursor | number> | Record<string, import("./channel.js").Cursor | number>): string;
/**
 * The inverse of formatCursor; malformed parts are skipped.
 * @param {string | null | undefined} value
 * @returns {Map<string, import("./channel.js").Cursor>}
 */
export function parseCursor(value: string | null | undefined): Map<string, import("./channel.js").Cursor>;
/**
 * The stream URL: channels, the resume cursor and, only when no cookie can carry it, the token
 * (EventSource cannot set headers; DESIGN §5 allows the query as the last resort).
 */
export function sseUrl(baseUrl: any, channels: any, cursor?: string, token?: any, path?: string): string;
export class SseTransport {
    /**
     * @param {object} o
     * @param {string} o.url             full /sse URL (see sseUrl)
     * @param {Function} o.EventSource   the EventSource constructor (injected for tests)
     * @param {Function} o.onOpen        () => void
     * @param {Function} o.onFrame       (frame: object, lastEventId: string) => void
     * @param {Function} o.onClose       ({code: null, reason, opened}) => void, unless close() was called
     */
    constructor({ url, EventSource, onOpen, onFrame, onClose }: {
        url: string;
        EventSource: Function;
        onOpen: Function;
        onFrame: Function;
        onClose: Function;
    });
    name: string;
    url: string;
    _EventSource: Function;
    _onOpen: Function;
    _onFrame: Function;
    _onClose: Function;
    _source: any;
    opened: boolean;
    closed: boolean;
    open(): void;
    /** SSE is one-way: frames for the server are not possible here. */
    send(): boolean;
    close(): void;
}
