// Shared state of one sim instance: accounts, the observation log, the response registry and the
// live sockets. Handlers receive it; tests read it through the SimUpstream facade.
import { EventEmitter } from 'node:events';
import type { WebSocket } from 'ws';
import type { SimAccount } from './account.js';
import type { SimLogRecord, SimResponseRecord } from './types.js';

/** A live socket a test may push frames to or drop. */
export interface LiveSocket {
  socketId: string;
  account: string;
  kind: 'responses' | 'realtime';
  send(frame: Record<string, unknown>): void;
  drop(code: number | null): void;
}

/**
 * Lists a socket with its account and the sim's socket table (so tests can push to it or drop
 * it) until it closes; `onClose` then runs with the close code and reason.
 */
export function trackSocket(state: SimState, account: SimAccount, ws: WebSocket, live: LiveSocket, onClose: (code: number, reason: string) => void): void {
  account.sockets.add(live);
  state.sockets.set(live.socketId, live);
  ws.on('error', () => undefined);
  ws.once('close', (code, reason) => {
    account.sockets.delete(live);
    state.sockets.delete(live.socketId);
    onClose(code, reason.toString());
  });
}

export class SimState {
  readonly log: SimLogRecord[] = [];
  readonly responses = new Map<string, SimResponseRecord>();
  readonly sockets = new Map<string, LiveSocket>();
  /** Emits 'record' for every log record (drives `waitForLog`). */
  readonly events = new EventEmitter();
  private seqs = { ws: 0, rt: 0, http: 0 };
  private logSeq = 0;

  constructor(
    readonly accounts: Map<string, SimAccount>,
    readonly recordLog: boolean,
    readonly logOutgoing: boolean,
    private readonly rememberResponses = true,
  ) {
    // Many tests wait on the log at once.
    this.events.setMaxListeners(0);
  }

  nextSocketId(kind: 'ws' | 'rt' | 'http'): string {
    this.seqs[kind]++;
    return `${kind}-${this.seqs[kind]}`;
  }

  /** Appends a record; returns it so the caller can fill in the answered status later. */
  record(r: Omit<SimLogRecord, 'seq' | 'at'>): SimLogRecord | null {
    if (!this.recordLog) return null;
    const rec: SimLogRecord = { seq: this.logSeq++, ...r, at: Date.now() };
    this.log.push(rec);
    this.events.emit('record', rec);
    return rec;
  }

  accountByKey(key: string): SimAccount | undefined {
    for (const a of this.accounts.values()) if (a.key === key) return a;
    return undefined;
  }

  remember(rec: SimResponseRecord): void {
    if (!this.rememberResponses) return;
    this.responses.set(rec.id, rec);
  }
}

export interface Resolved {
  account: SimAccount | null;
  /** Set when the request must be refused before anything else. */
  refusal: { status: number; reason: 'unknown_account' | 'missing_key' | 'bad_key' } | null;
}

/**
 * Picks the account: by `/acct/<name>` path prefix (the key must then match that account), else
 * by API key. A wrong key is a 401, as the real API answers.
 */
export function resolveAccount(state: SimState, pathAccount: string | null, key: string | null): Resolved {
  if (pathAccount !== null) {
    const a = state.accounts.get(pathAccount);
    if (!a) return { account: null, refusal: { status: 404, reason: 'unknown_account' } };
    if (key === null) return { account: a, refusal: { status: 401, reason: 'missing_key' } };
    if (key !== a.key) return { account: a, refusal: { status: 401, reason: 'bad_key' } };
    return { account: a, refusal: null };
  }
  if (key === null) return { account: null, refusal: { status: 401, reason: 'missing_key' } };
  const a = state.accountByKey(key);
  return a ? { account: a, refusal: null } : { account: null, refusal: { status: 401, reason: 'bad_key' } };
}

export function bearer(header: string | undefined): string | null {
  if (!header) return null;
  const m = /^Bearer\s+(.+)$/i.exec(header.trim());
  return m ? m[1].trim() : null;
}
