// Close codes, mirrored from quart_app/realtime/protocol.py (CloseCode). Keep the two in step.
//
// By range:
//   1000-1999 (RFC 6455): 1000 normal, 1002 broken framing, 1007 text that is not UTF-8,
//   1009 frame over the hard cap, 1011 internal error, 1012 service restart.
//   4000-4099 (Pulse): 4001 re-authenticate before reconnecting; every other Pulse code means
//   reconnect and recover with `since`.

export const CloseCode = Object.freeze({
  NORMAL: 1000,
  PROTOCOL_ERROR: 1002, // the client broke RFC 6455 framing
  INVALID_DATA: 1007, // a text frame that is not UTF-8
  MESSAGE_TOO_BIG: 1009,
  INTERNAL_ERROR: 1011, // a server bug cost this connection: reconnect with backoff
  SERVICE_RESTART: 1012,
  UNAUTHORIZED: 4001, // missing/invalid/expired token: re-authenticate, don't hammer
  SLOW_CONSUMER: 4008, // outbox overflowed: reconnect and recover from history
  IDLE_TIMEOUT: 4009, // nothing heard from the client for the idle timeout
  RECOVER: 4010, // the server lost messages upstream: reconnect and recover
  TOO_MANY: 4029, // too many connections for this user, or inbound rate abuse
});

// The server asked us to come back at once (restart, slow consumer, upstream loss): reconnect
// after a short random delay (so a restart does not bring every client back in the same
// millisecond) and recover from history.
const PROMPT = new Set([CloseCode.SERVICE_RESTART, CloseCode.SLOW_CONSUMER, CloseCode.RECOVER]);

/** True if `code` asks for a prompt reconnect rather than the exponential backoff. */
export function isPromptReconnect(code) {
  return PROMPT.has(code);
}

/** True if `code` means the credentials were refused: get a fresh token, don't retry blindly. */
export function isAuthFailure(code) {
  return code === CloseCode.UNAUTHORIZED;
}

/** A readable name for logs and the metrics panel. */
export function closeCodeName(code) {
  for (const [name, value] of Object.entries(CloseCode)) {
    if (value === code) return name;
  }
  return code === 1006 ? "ABNORMAL" : String(code);
}
