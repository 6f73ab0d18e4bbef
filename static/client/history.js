// GET /history?channel=&since= (DESIGN §4, §9): what a channel published after an offset, for
// client.history() and the polling rung (poller.js).
//
// The answer is {"channel", "offset" (the channel's latest), "recovered" (false: the history no
// longer reaches back to `since`), "publications": [{"channel", "data", "offset"}, ...]},
// oldest first; other users' publications on user-targeted channels are left out by the server.

import { ErrorCode, PulseError } from "./errors.js";

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
export async function fetchHistory({ fetch, url, channel, cursor = {}, limit, token, credentials }) {
  const target = new URL(url);
  target.searchParams.set("channel", channel);
  target.searchParams.set("since", String(cursor.since ?? 0));
  if (cursor.user_since !== undefined) target.searchParams.set("user_since", String(cursor.user_since));
  if (cursor.epoch !== undefined) target.searchParams.set("epoch", cursor.epoch);
  if (limit !== undefined) target.searchParams.set("limit", String(limit));
  /** @type {Record<string, string>} */
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(target.toString(), {
      headers, credentials: credentials ?? "same-origin", cache: "no-store",
    });
  } catch (cause) {
    throw new PulseError(ErrorCode.HTTP, `GET /history for ${channel} failed: ${/** @type {any} */ (cause)?.message ?? cause}`,
      { channel, cause, temporary: true });
  }
  if (!response.ok) {
    let detail = null;
    try {
      detail = (await response.json())?.detail ?? null;
    } catch {
      // not JSON: the status says enough
    }
    throw new PulseError(ErrorCode.HTTP,
      `GET /history for ${channel} answered ${response.status}${detail ? `: ${detail}` : ""}`,
      { channel, status: response.status, reason: detail, temporary: response.status >= 500 || response.status === 429 });
  }
  const body = await response.json();
  const all = Array.isArray(body.publications) ? body.publications : [];
  // The server cuts the page at `limit` and says `more`; a server without `limit` is cut here
  // (oldest first), so `since` = the last offset returned continues where it stopped.
  const publications = limit !== undefined && limit >= 0 ? all.slice(0, limit) : all;
  return { ...body, publications, truncated: body.more === true || publications.length < all.length };
}
