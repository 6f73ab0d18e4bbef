/**
 * @typedef {object} HistoryPublication
 * @property {string} channel
 * @property {any} data
 * @property {number} offset
 * @property {number} [user_offset]
 */
/**
 * @typedef {object} HistoryPage
 * @property {string} channel
 * @property {number} offset       the channel's latest offset: ask next with `since` = this
 * @property {boolean} recovered   false: the history no longer reaches back to `since`
 * @property {HistoryPublication[]} publications oldest first
 * @property {boolean} truncated   `limit` cut the page short: ask again from the last offset
 * @property {string} [epoch]
 */
/**
 * Fetch one channel's history.
 * @param {object} o
 * @param {Function} o.fetch
 * @param {string} o.url            the /history URL
 * @param {string} o.channel
 * @param {import("./channel.js").Cursor} [o.cursor]  since / user_since / epoch
 * @param {number} [o.limit]
 * @param {string | null} [o.token] sent as Authorization: Bearer
 * @param {string} [o.credentials]  fetch's credentials mode
 * @returns {Promise<HistoryPage>} rejects with a PulseError (code "http", with `status`)
 */
export function fetchHistory({ fetch, url, channel, cursor, limit, token, credentials }: {
    fetch: Function;
    url: string;
    channel: string;
    cursor?: import("./channel.js").Cursor;
    limit?: number;
    token?: string | null;
    credentials?: string;
}): Promise<HistoryPage>;
export type HistoryPublication = {
    channel: string;
    data: any;
    offset: number;
    user_offset?: number;
};
export type HistoryPage = {
    channel: string;
    /**
     * the channel's latest offset: ask next with `since` = this
     */
    offset: number;
    /**
     * false: the history no longer reaches back to `since`
     */
    recovered: boolean;
    /**
     * oldest first
     */
    publications: HistoryPublication[];
    /**
     * `limit` cut the page short: ask again from the last offset
     */
    truncated: boolean;
    epoch?: string;
};
