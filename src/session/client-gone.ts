// Shell: a WebSocket session's "the client went away" signal, for the scheduler waits its turns
// may make and for the bridge's HTTP requests.
import type { WaitSignal } from '../scheduler/types.js';

/**
 * Aborted once, when the client goes. The AbortController behind it is made only when something
 * listens (a scheduler wait that has to pause, the bridge): in Node 20 each AbortSignal gets a
 * hidden class of its own, about 0.6 KB of heap that a session would otherwise keep for its
 * whole life, though most turns never wait.
 */
export class ClientGone implements WaitSignal {
  private controller: AbortController | null = null;
  private gone = false;

  get aborted(): boolean {
    return this.gone;
  }

  abort(): void {
    if (this.gone) return;
    this.gone = true;
    this.controller?.abort();
  }

  /** A real AbortSignal tied to this one (made on first use; already aborted if the client is gone). */
  get signal(): AbortSignal {
    if (this.controller === null) {
      this.controller = new AbortController();
      if (this.gone) this.controller.abort();
    }
    return this.controller.signal;
  }

  addEventListener(type: 'abort', listener: () => void, options: { once: true }): void {
    this.signal.addEventListener(type, listener, options);
  }

  removeEventListener(type: 'abort', listener: () => void): void {
    this.controller?.signal.removeEventListener(type, listener);
  }

  /** True once something has asked for the AbortSignal (for tests). */
  get materialised(): boolean {
    return this.controller !== null;
  }
}
