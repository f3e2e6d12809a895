// Shell: one upstream Responses WebSocket (SPEC §6). Opens with a deadline, classifies a refused
// handshake, and hands every frame to its owner unchanged. It knows nothing about turns.
import WebSocket from 'ws';
import type { IncomingMessage } from 'node:http';
import type { AccountConfig } from '../config/schema.js';
import { classifyHttpStatus, connectFailure, type UpstreamFailure } from './failure.js';
import type { IncomingHeaders } from './target.js';

export interface UpstreamWsHandlers {
  onMessage(conn: UpstreamWs, data: Buffer, isBinary: boolean): void;
  /** `reason` is the peer's close reason (empty when none), for relays that pass it on. */
  onClose(conn: UpstreamWs, code: number, reason: string): void;
}

export type ConnectResult =
  | { ok: true; conn: UpstreamWs; headers: IncomingHeaders }
  | { ok: false; failure: UpstreamFailure };

export interface ConnectOptions {
  account: AccountConfig;
  url: string;
  headers: Record<string, string>;
  timeoutMs: number;
  maxPayload: number;
  nowMs: () => number;
  handlers: UpstreamWsHandlers;
  /** Subprotocols to offer (realtime); none for Responses. */
  protocols?: string[];
}

let nextId = 0;

/**
 * How many of its latest response ids an upstream socket is trusted to hold. Clients chain the
 * last one (Codex, the SDK); the bound keeps a socket that lives its full hour of busy turns from
 * growing without end. An older id gets `previous_response_not_found`, and the client replays.
 */
export const MAX_REMEMBERED_RESPONSES = 1024;

export class UpstreamWs {
  readonly id = ++nextId;
  /** Response ids produced on this socket (with store:false they resolve only here), oldest first. */
  private readonly responseIds = new Set<string>();
  alive = true;
  private paused = false;

  constructor(readonly account: AccountConfig, readonly ws: WebSocket, private readonly handlers: UpstreamWsHandlers) {
    ws.on('message', (data: Buffer, isBinary: boolean) => this.handlers.onMessage(this, data, isBinary));
    ws.on('close', (code: number, reason: Buffer) => {
      this.alive = false;
      this.handlers.onClose(this, code, reason.toString('utf8'));
    });
    // An error is always followed by 'close'; the listener only keeps it from being unhandled.
    ws.on('error', ignoreError);
  }

  /**
   * True when the frame being handled is the last complete one of the bytes read so far: no
   * other 'message' follows in this tick. Read from `ws`'s receiver (8.x keeps the count of bytes
   * not yet parsed in `_bufferedBytes`); false when that is not available, which only costs the
   * relay its write batching shortcut.
   */
  lastInRead(): boolean {
    return (this.ws as unknown as { _receiver?: { _bufferedBytes?: number } | null })._receiver?._bufferedBytes === 0;
  }

  rememberResponse(id: string): void {
    const ids = this.responseIds;
    ids.add(id);
    if (ids.size > MAX_REMEMBERED_RESPONSES) ids.delete(ids.values().next().value as string);
  }

  holdsResponse(id: string): boolean {
    return this.responseIds.has(id);
  }

  send(data: Buffer | string, binary = false): boolean {
    if (!this.alive || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(data, sendOptions(binary));
    return true;
  }

  /** Backpressure: stop reading from upstream while the client is slow. */
  pause(): void {
    if (!this.paused && this.alive) {
      this.paused = true;
      this.ws.pause();
    }
  }

  resume(): void {
    if (this.paused) {
      this.paused = false;
      this.ws.resume();
    }
  }

  close(code = 1000, reason = ''): void {
    if (!this.alive) return;
    this.alive = false;
    try {
      this.ws.close(code, reason);
    } catch {
      this.ws.terminate();
    }
    // Do not wait for a peer that never answers the close handshake.
    setTimeout(() => this.ws.terminate(), 2000).unref();
  }
}

/**
 * The 'error' listener of a socket whose 'close' is what its owner handles (`ws` always follows
 * an error with a close): one shared function, not a fresh closure per socket.
 */
export function ignoreError(): void {}

// `ws` copies send options: two shared objects spare an allocation per forwarded frame.
const TEXT_FRAME = { binary: false } as const;
const BINARY_FRAME = { binary: true } as const;

/** Options for `WebSocket#send`, shared by every frame (the relay's both sides use them). */
export function sendOptions(binary: boolean): { readonly binary: boolean } {
  return binary ? BINARY_FRAME : TEXT_FRAME;
}

/**
 * Opens the socket; resolves once open or with the classified failure. Never rejects.
 *
 * Nothing of the handshake outlives it on an open socket: its listeners are removed (each held
 * these options, the settled promise and the upgrade response's headers for the socket's whole
 * life), and the deadline is a timer of our own rather than `ws`'s handshakeTimeout, which is a
 * socket timeout whose Timeout object the socket keeps after `ws` clears it.
 */
export function connectUpstreamWs(o: ConnectOptions): Promise<ConnectResult> {
  return new Promise((resolve) => {
    let settled = false;
    const ws = new WebSocket(o.url, o.protocols ?? [], {
      headers: o.headers,
      perMessageDeflate: false,
      maxPayload: o.maxPayload,
      followRedirects: false,
    });
    const settle = (r: ConnectResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      resolve(r);
    };
    const fail = (failure: UpstreamFailure) => {
      ws.terminate();
      settle({ ok: false, failure });
    };
    const deadline = setTimeout(() => fail(connectFailure('upstream connect timed out')), o.timeoutMs);
    const onUnexpected = (_req: unknown, res: IncomingMessage) => {
      const failure = classifyHttpStatus(res.statusCode ?? 502, res.headers, o.nowMs());
      res.resume();
      res.destroy();
      fail(failure);
    };
    // After a failure `ws` may still emit 'error' (terminate() during the handshake does, a tick
    // later), so this listener stays on a socket that did not open.
    const onError = (err: Error & { code?: string }) => fail(connectFailure(`upstream connect failed (${err.code ?? 'error'})`));
    const onClose = () => settle({ ok: false, failure: connectFailure('upstream closed during the handshake') });
    ws.once('upgrade', (res: IncomingMessage) => {
      ws.once('open', () => {
        // UpstreamWs's constructor puts its own 'error' and 'close' listeners on first.
        const conn = new UpstreamWs(o.account, ws, o.handlers);
        ws.removeListener('unexpected-response', onUnexpected);
        ws.removeListener('error', onError);
        ws.removeListener('close', onClose);
        settle({ ok: true, conn, headers: res.headers });
      });
    });
    ws.once('unexpected-response', onUnexpected);
    ws.once('error', onError);
    ws.once('close', onClose);
  });
}
