/** `exp` (seconds) of a JWT, or null; the client never verifies a token, it only times a refresh. */
export function tokenExpiry(token: any): any;
export class Credentials {
    /**
     * @param {object} o
     * @param {string|null} o.token        a token to start with
     * @param {Function|null} o.getToken   () => token | null | Promise of one
     * @param {object} o.timers
     * @param {number} o.marginMs          ask for a new token this long before `exp`
     */
    constructor({ token, getToken, timers, marginMs }: {
        token: string | null;
        getToken: Function | null;
        timers: object;
        marginMs: number;
    });
    token: string;
    getToken: Function;
    _t: any;
    _marginMs: number;
    _refresh: any;
    /** The token to use now: a fresh one from getToken if it has one, else the last known. */
    resolve(): Promise<string>;
    /** Call `renewed(token)` with a new token shortly before the current one expires. */
    scheduleRefresh(renewed: any): void;
    cancel(): void;
}
