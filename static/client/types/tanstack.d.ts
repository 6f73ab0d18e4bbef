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
export function bindQueryClient(client: import("./client.js").Client, queryClient: QueryClientLike, routes: Record<string, Route>, { onResync }?: {
    onResync?: (channels: string[], queryClient: QueryClientLike) => void;
}): () => void;
export type QueryKey = ReadonlyArray<unknown>;
export type RouteAnswer = QueryKey | QueryKey[] | {
    invalidate?: QueryKey[];
    patch?: Array<[QueryKey, (old: any) => any]>;
} | null | undefined | false;
export type Route = (publication: import("./subscription.js").Publication) => RouteAnswer;
/**
 * The part of TanStack's QueryClient this uses.
 */
export type QueryClientLike = {
    invalidateQueries: (filters?: {
        queryKey?: QueryKey;
    }) => Promise<void>;
    setQueryData: (queryKey: QueryKey, updater: (old: any) => any) => unknown;
};
