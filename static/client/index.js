// pulse-realtime-client: the public entry point. See docs/client.md in the Pulse repository.

export { Client, RealtimeClient, getClient, DEFAULTS, Mode } from "./client.js";
export { Subscription, SubscriptionState } from "./subscription.js";
export { PulseError, ErrorCode } from "./errors.js";
export { CloseCode, closeCodeName, isAuthFailure, isPromptReconnect } from "./codes.js";
export { backoffDelay } from "./ladder.js";
export { tokenExpiry } from "./credentials.js";
export { formatCursor, parseCursor } from "./transport_sse.js";
export { VERSION } from "./version.js";
