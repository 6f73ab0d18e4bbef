// A minimal event emitter (no dependency, same in browsers and Node): on() returns the function
// that removes the listener; a listener that throws is reported and does not stop the others.

export class Emitter {
  constructor() {
    /** @type {Map<string, Set<Function>>} */
    this._listeners = new Map();
  }

  /**
   * Call `listener(payload)` on every `event`.
   * @param {string} event
   * @param {(payload: any) => void} listener
   * @returns {() => void} removes the listener (idempotent)
   */
  on(event, listener) {
    if (typeof listener !== "function") throw new TypeError(`listener for "${event}" must be a function`);
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(listener);
    return () => this.off(event, listener);
  }

  /**
   * Like on(), for the next `event` only.
   * @param {string} event
   * @param {(payload: any) => void} listener
   * @returns {() => void}
   */
  once(event, listener) {
    const off = this.on(event, (payload) => {
      off();
      listener(payload);
    });
    return off;
  }

  /**
   * @param {string} event
   * @param {(payload: any) => void} listener
   */
  off(event, listener) {
    this._listeners.get(event)?.delete(listener);
  }

  /** @param {string} event @returns {number} */
  listenerCount(event) {
    return this._listeners.get(event)?.size ?? 0;
  }

  /**
   * @param {string} event
   * @param {any} [payload]
   * @returns {boolean} some listener was called
   * @protected
   */
  _emit(event, payload) {
    const listeners = this._listeners.get(event);
    if (!listeners || listeners.size === 0) return false;
    for (const listener of [...listeners]) {
      try {
        listener(payload);
      } catch (error) {
        this._listenerFailed(error, event);
      }
    }
    return true;
  }

  /** @param {unknown} error @param {string} event @protected */
  _listenerFailed(error, event) {
    globalThis.console?.error?.(`pulse: a "${event}" listener threw`, error);
  }
}
