/** True if `code` asks for a prompt reconnect rather than the exponential backoff. */
export function isPromptReconnect(code: any): boolean;
/** True if `code` means the credentials were refused: get a fresh token, don't retry blindly. */
export function isAuthFailure(code: any): boolean;
/** A readable name for logs and the metrics panel. */
export function closeCodeName(code: any): string;
export const CloseCode: Readonly<{
    NORMAL: 1000;
    PROTOCOL_ERROR: 1002;
    INVALID_DATA: 1007;
    MESSAGE_TOO_BIG: 1009;
    INTERNAL_ERROR: 1011;
    SERVICE_RESTART: 1012;
    UNAUTHORIZED: 4001;
    SLOW_CONSUMER: 4008;
    IDLE_TIMEOUT: 4009;
    RECOVER: 4010;
    TOO_MANY: 4029;
}>;
