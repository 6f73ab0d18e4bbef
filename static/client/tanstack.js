// TanStack Query glue (seed 003: "TanStack Query cache invalidated on event receipt"): a
// publication on a channel invalidates, or patches, the query keys you name for it.
//
//   const unbind = bindQueryClient(client, queryClient, {
//     "project:p1:events": (p) => [["campaigns", p.data.campaignId], ["dashboard", "stats"]],
//     dashboard: (p) => p.data.type === "stats_update"
//       ? { patch: [[["stats"], (old) => ({ ...old, ...p.data })]] } : null,
//   });
//
// The route's answer: nothing (null/undefined/false); a query key or an array of them (each
// invalidated: active queries refetch); or {invalidate: [keys], patch: [[key, updater]]}. When
// the client had to give up on history (`resync`: messages were lost), every query of a bound
// channel's routes cannot be known, so all queries are invalidated (`onResync` overrides).
// Nothing here imports @tanstack/query-core: any object with invalidateQueries() and
// setQueryData() will do.

/**
 * @typedef {ReadonlyArray<unknown>} QueryKey
 * @typedef {QueryKey | QueryKey[] | {invalidate?: QueryKey[], patch?: Array<[QueryKey, (old: any) => any]>} | null | undefined | false} RouteAnswer
 * @typedef {(publication: import("./subscription.js").Publication) => RouteAnswer} Route
 */

/**
 * @typedef {object} QueryClientLike The part of TanStack's QueryClient this uses.
 * @property {(filters?: {queryKey?: QueryKey}) => Promise<void>} invalidateQueries
 * @property {(queryKey: QueryKey, updater: (old: any) => any) => unknown} setQueryData
 */

/**
 * Subscribe to every channel in `routes` and apply each publication's answer to `queryClient`.
 * @param {import("./client.js").Client} client
 * @param {QueryClientLike} queryClient
 * @param {Record<string, Route>} routes  channel -> (publication) => what to invalidate/patch
 * @param {{onResync?: (channels: string[], queryClient: QueryClientLike) => void}} [options]
 * @returns {() => void} unbind: unsubscribes them all
 */
export function bindQueryClient(client, queryClient, routes, { onResync } = {}) {
  const subs = Object.entries(routes).map(([channel, route]) => {
    const sub = client.subscribe(channel);
    sub.on("publication", (publication) => apply(queryClient, route(publication)));
    return sub;
  });
  const offResync = client.on("resync", (channels) => {
    if (!channels.some((name) => name in routes)) return;
    if (onResync) onResync(channels, queryClient);
    else queryClient.invalidateQueries();
  });
  return () => {
    offResync();
    for (const sub of subs) sub.unsubscribe();
  };
}

/** @param {QueryClientLike} queryClient @param {RouteAnswer} answer */
function apply(queryClient, answer) {
  if (!answer) return;
  if (Array.isArray(answer)) {
    const keys = answer.length > 0 && answer.every(Array.isArray) ? answer : [answer];
    for (const queryKey of keys) queryClient.invalidateQueries({ queryKey });
    return;
  }
  for (const queryKey of answer.invalidate ?? []) queryClient.invalidateQueries({ queryKey });
  for (const [queryKey, updater] of answer.patch ?? []) queryClient.setQueryData(queryKey, updater);
}
