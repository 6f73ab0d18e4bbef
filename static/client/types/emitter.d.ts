export class Emitter {
    /** @type {Map<string, Set<Function>>} */
    _listeners: Map<string, Set<Function>>;
    /**
     * Call `listener(payload)` on every `event`.
     * @param {string} event
     * @param {(payload: any) => void} listener
     * @returns {() => void} removes the listener (idempotent)
     */
    on(event: string, listener: (payload: any) => void): () => void;
    /**
     * Like on(), for the next `event` only.
     * @param {string} event
     * @param {(payload: any) => void} listener
     * @returns {() => void}
     */
    once(event: string, listener: (payload: any) => void): () => void;
    /**
     * @param {string} event
     * @param {(payload: any) => void} listener
     */
    off(event: string, listener: (payload: any) => void): void;
    /** @param {string} event @returns {number} */
    listenerCount(event: string): number;
    /**
     * @param {string} event
     * @param {any} [payload]
     * @returns {boolean} some listener was called
     * @protected
     */
    protected _emit(event: string, payload?: any): boolean;
    /** @param {unknown} error @param {string} event @protected */
    protected _listenerFailed(error: unknown, event: string): void;
}
