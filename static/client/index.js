// pulse-realtime-client: the public entry point. See docs/client.md in the Pulse repository.

export { Client, RealtimeClient, getClient, DEFAULTS, Mode } from "./client.js";
export { Subscription, SubscriptionState } from "./subscription.js";
export { PulseError, ErrorCode } from "./errors.js";
export { CloseCode, closeCodeName, isAuthFailure, isPromptReconnect } from "./codes.js";
export { backoffDelay } from "./ladder.js";
export { tokenExpiry } from "./credentials.js";
export { formatCursor, parseCursor } from "./transport_sse.js";
export { VERSION } from "./version.js";

/**
 * @typedef {import("./options.js").ClientOptions} ClientOptions
 * @typedef {import("./client.js").SubscribeOptions} SubscribeOptions
 * @typedef {import("./client.js").StateEvent} StateEvent
 * @typedef {import("./client.js").Metrics} Metrics
 * @typedef {import("./subscription.js").Publication} Publication
 * @typedef {import("./subscription.js").SubscribedEvent} SubscribedEvent
 * @typedef {import("./subscription.js").UnsubscribedEvent} UnsubscribedEvent
 * @typedef {import("./subscription.js").StateChange} StateChange
 * @typedef {import("./history.js").HistoryPage} HistoryPage
 * @typedef {import("./history.js").HistoryPublication} HistoryPublication
 */
