export const ErrorCode: Readonly<{
    /** No WebSocket/EventSource (or fetch, for polling) implementation: inject one (Node). */
    NO_TRANSPORT: "no_transport";
    /** An option the client does not know, or a value it cannot use. */
    BAD_OPTION: "bad_option";
    /** getClient() was called again with options other than the shared client's. */
    CLIENT_EXISTS: "client_exists";
    /** The server refused a subscription (invalid or forbidden channel, a limit): terminal. */
    SUBSCRIBE_REFUSED: "subscribe_refused";
    /** The server could not subscribe now (its broker failed): the client retries. */
    SUBSCRIBE_UNAVAILABLE: "subscribe_unavailable";
    /** A server error frame that names no channel (invalid frame, rate limit, auth frame refused). */
    SERVER_ERROR: "server_error";
    /** An HTTP call (/history) answered an error status or failed on the network. */
    HTTP: "http";
    /** A handler passed to the client threw; the other handlers still ran. */
    HANDLER: "handler";
    /** The client was closed, or the subscription ended before it was established. */
    CLOSED: "closed";
}>;
export class PulseError extends Error {
    /**
     * @param {string} code     one of ErrorCode
     * @param {string} message  what happened, readable as is
     * @param {object} [details]
     * @param {string} [details.channel]  the channel concerned
     * @param {number} [details.status]   the HTTP status (code "http")
     * @param {string} [details.reason]   the server's own words (error frame message, `detail`)
     * @param {boolean} [details.temporary] the client retries by itself
     * @param {string | number} [details.serverCode] the server's own code for it, when it sends one
     * @param {unknown} [details.cause]
     */
    constructor(code: string, message: string, details?: {
        channel?: string;
        status?: number;
        reason?: string;
        temporary?: boolean;
        serverCode?: string | number;
        cause?: unknown;
    });
    /** @type {string} */
    code: string;
    /** @type {string | null} */
    channel: string | null;
    /** @type {number | null} */
    status: number | null;
    /** @type {string | null} */
    reason: string | null;
    /** @type {boolean} */
    temporary: boolean;
    /** @type {string | number | null} */
    serverCode: string | number | null;
}
