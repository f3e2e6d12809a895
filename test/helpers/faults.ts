// Fault injection for the reliability suite and the soak driver (issue 8). Upstream faults are
// knobs on the simulated upstream (per account, or per turn through a script); client faults are
// real sockets misbehaving on purpose: not reading, vanishing mid-turn, sending garbage,
// trickling headers. Every helper is bounded in time.
import net from 'node:net';
import { DEFAULT_KNOBS } from '../../scripts/sim/account.js';
import type { SimKnobs, SimScript, SimTurnContext, SimUpstream } from '../../scripts/sim/upstream.js';
import type { TestWsClient } from './ws-client.js';

// ---- upstream faults (whole account) --------------------------------------------------------

export type UpstreamFault =
  /** Drop the socket (null code = TCP drop) after this many deltas; 0 = before the first one. */
  | { kind: 'close_mid_stream'; afterDeltas?: number; code?: number | null }
  /** Accept the turn, then never send a single event. */
  | { kind: 'hang' }
  /** Never answer the WebSocket upgrade. */
  | { kind: 'hang_upgrade' }
  /** 429 everywhere (upgrade, turn, HTTP) with `retry-after` and `x-ratelimit-reset-requests`. */
  | { kind: 'rate_limit_storm'; retryAfterSeconds?: number }
  /** 5xx on the upgrade and on HTTP requests. */
  | { kind: 'server_error'; status?: number }
  /** Turns end with `response.failed` (server_error) at this rate. */
  | { kind: 'failed_responses'; rate?: number }
  /** Accept the upgrade, then close 1011 at once. */
  | { kind: 'close_after_upgrade' };

const FAULT_KNOBS: ReadonlyArray<keyof SimKnobs> = [
  'closeMidStream',
  'closeMidStreamCode',
  'hang',
  'hangUpgrade',
  'rateLimitAfterTurns',
  'retryAfterSeconds',
  'upgradeStatus',
  'httpStatus',
  'errorRate',
  'closeAfterUpgrade',
];

export function injectUpstreamFault(sim: SimUpstream, account: string, fault: UpstreamFault): void {
  const a = sim.account(account);
  switch (fault.kind) {
    case 'close_mid_stream':
      a.set({ closeMidStream: fault.afterDeltas ?? 1, closeMidStreamCode: fault.code ?? null });
      break;
    case 'hang':
      a.set({ hang: true });
      break;
    case 'hang_upgrade':
      a.set({ hangUpgrade: true });
      break;
    case 'rate_limit_storm':
      // Limited from the next decision on, whatever the account's turn count is.
      a.set({ rateLimitAfterTurns: 0, retryAfterSeconds: fault.retryAfterSeconds ?? 7 });
      break;
    case 'server_error':
      a.set({ upgradeStatus: fault.status ?? 503, httpStatus: fault.status ?? 503 });
      break;
    case 'failed_responses':
      a.set({ errorRate: fault.rate ?? 1 });
      break;
    case 'close_after_upgrade':
      a.set({ closeAfterUpgrade: true });
      break;
  }
}

/** Back to the default behaviour for every fault knob (other knobs are left alone). */
export function healUpstream(sim: SimUpstream, account: string): void {
  const patch: Partial<SimKnobs> = {};
  for (const k of FAULT_KNOBS) (patch as Record<string, unknown>)[k] = DEFAULT_KNOBS[k];
  sim.account(account).set(patch);
}

// ---- upstream faults (per turn) -------------------------------------------------------------

export type TurnFault = 'server_error' | 'failed' | 'rate_limited' | 'close_mid_stream';

const TAG = /\[fault:([a-z_]+):([A-Za-z0-9_-]+)\]/;

/** Text to put in a turn's user message so `perTurnFaultScript` applies `fault` to it (once). */
export function faultTag(fault: TurnFault, turnId: string): string {
  return `[fault:${fault}:${turnId}]`;
}

/**
 * A sim `script` that reads a fault tag from the turn's user text. Each tagged turn is faulted
 * once: when the relay fails it over, the next account serves it normally (a storm on every
 * account is what `rate_limit_storm` is for). `close_mid_stream` drops the serving socket
 * (TCP, no close frame) `dropAfterMs` after the turn starts, so with paced deltas it lands mid-stream.
 */
export function perTurnFaultScript(sim: SimUpstream, opts: { dropAfterMs: number; next?: SimScript }): SimScript {
  const fired = new Set<string>();
  return (ctx: SimTurnContext) => {
    const m = ctx.lastUserText ? TAG.exec(ctx.lastUserText) : null;
    if (!m || fired.has(m[2])) return opts.next?.(ctx);
    fired.add(m[2]);
    if (fired.size > 100_000) fired.clear();
    switch (m[1] as TurnFault) {
      case 'server_error':
        return { type: 'error', status: 500, code: 'server_error', message: 'Simulated server error.' };
      case 'failed':
        return { type: 'failed' };
      case 'rate_limited':
        return { type: 'error', status: 429, code: 'rate_limit_exceeded', errorType: 'rate_limit_error', message: 'Simulated rate limit.' };
      case 'close_mid_stream':
        if (ctx.transport === 'ws') setTimeout(() => sim.dropSocket(ctx.socketId, null), opts.dropAfterMs).unref();
        return opts.next?.(ctx);
      default:
        return opts.next?.(ctx);
    }
  };
}

// ---- turn outcomes --------------------------------------------------------------------------

const TERMINAL = new Set(['response.completed', 'response.failed', 'response.incomplete', 'response.cancelled']);

export type TurnOutcome =
  /** A terminal response event. */
  | { kind: 'terminal'; type: string; events: number; responseId: string | null }
  /** An explicit `error` frame (the socket may close right after it). */
  | { kind: 'error'; code: string; status: number | null; events: number; error: Record<string, unknown> }
  /** The socket closed with a relay close code and no error frame (e.g. 1001, 1013 on a refusal). */
  | { kind: 'closed'; code: number; events: number }
  /** Nothing explicit within the deadline: the failure the suite exists to catch. */
  | { kind: 'lost'; events: number; detail: string };

/** Reads events until the turn ends one way or another; never rejects. */
export async function readOutcome(c: TestWsClient, deadlineMs: number): Promise<TurnOutcome> {
  const end = Date.now() + deadlineMs;
  let events = 0;
  for (;;) {
    const left = end - Date.now();
    if (left <= 0) return { kind: 'lost', events, detail: 'deadline' };
    let e: Record<string, unknown> | null;
    try {
      e = await c.next(left);
    } catch {
      return { kind: 'lost', events, detail: 'deadline' };
    }
    if (e === null) {
      const { code } = await c.closed;
      // 1005/1006 mean the relay vanished without saying why: never an explicit outcome.
      if (code === 1005 || code === 1006) return { kind: 'lost', events, detail: `closed ${code}` };
      return { kind: 'closed', code, events };
    }
    events++;
    const type = String(e.type);
    if (TERMINAL.has(type)) {
      const id = (e.response as { id?: unknown } | undefined)?.id;
      return { kind: 'terminal', type, events, responseId: typeof id === 'string' ? id : null };
    }
    if (type === 'error') {
      const err = (e.error ?? {}) as Record<string, unknown>;
      return { kind: 'error', code: String(err.code ?? 'unknown'), status: typeof e.status === 'number' ? e.status : null, events, error: err };
    }
  }
}

// ---- client faults --------------------------------------------------------------------------

/** Stops reading from the socket (kernel buffers fill, the relay sees backpressure). Returns resume. */
export function stopReading(c: TestWsClient): () => void {
  c.ws.pause();
  return () => c.ws.resume();
}

/** The client disappears without a close frame: FIN by default, RST with `reset`. */
export function vanish(c: TestWsClient, opts: { reset?: boolean } = {}): void {
  const sock = (c.ws as unknown as { _socket?: net.Socket })._socket;
  if (opts.reset && sock && typeof sock.resetAndDestroy === 'function') sock.resetAndDestroy();
  else c.ws.terminate();
}

/** Malformed client frames and what the relay must answer: error code and close code (null = stays open). */
export const MALFORMED_FRAMES: ReadonlyArray<{ name: string; data: string | Buffer; code: string; close: number | null }> = [
  { name: 'invalid JSON', data: '{"type":"response.create",', code: 'invalid_json', close: 1008 },
  { name: 'binary frame', data: Buffer.from([0, 1, 2, 255]), code: 'binary_frame_not_supported', close: 1008 },
  { name: 'JSON array', data: '[1,2,3]', code: 'invalid_request', close: 1008 },
  { name: 'missing model', data: '{"type":"response.create","input":"hi"}', code: 'missing_required_parameter', close: 1008 },
  { name: 'model of the wrong type', data: '{"type":"response.create","model":42}', code: 'invalid_request', close: 1008 },
  { name: 'message id as previous_response_id', data: '{"model":"m","previous_response_id":"msg_1"}', code: 'invalid_previous_response_id', close: 1008 },
  { name: 'unknown event type', data: '{"type":"session.update","model":"m"}', code: 'unsupported_event_type', close: null },
];

// ---- raw HTTP faults (slowloris and friends) ------------------------------------------------

export interface RawAnswer {
  /** Everything the server sent before closing (or before the deadline). */
  text: string;
  /** Status from the first response line, null when nothing came. */
  status: number | null;
  /** ms from connect until the server closed; null when it was still open at the deadline. */
  closedAfterMs: number | null;
}

/**
 * Opens a TCP connection and sends `chunks` one every `intervalMs` (a trickle when many), then
 * waits until the server closes or `deadlineMs` passes. Never rejects.
 */
export function rawExchange(port: number, chunks: Array<string | Buffer>, opts: { intervalMs?: number; deadlineMs: number }): Promise<RawAnswer> {
  return new Promise((resolve) => {
    const started = Date.now();
    const sock = net.connect(port, '127.0.0.1');
    const received: Buffer[] = [];
    let i = 0;
    let timer: NodeJS.Timeout | null = null;
    let finished = false;
    const finish = (closed: boolean): void => {
      if (finished) return;
      finished = true;
      if (timer) clearInterval(timer);
      clearTimeout(deadline);
      sock.destroy();
      const text = Buffer.concat(received).toString('latin1');
      const m = /^HTTP\/1\.1 (\d{3})/.exec(text);
      resolve({ text, status: m ? Number(m[1]) : null, closedAfterMs: closed ? Date.now() - started : null });
    };
    const deadline = setTimeout(() => finish(false), opts.deadlineMs);
    sock.on('data', (d: Buffer) => received.push(d));
    sock.on('close', () => finish(true));
    sock.on('error', () => finish(true));
    sock.on('connect', () => {
      const sendNext = (): void => {
        if (i < chunks.length && sock.writable) sock.write(chunks[i++]);
        else if (timer) clearInterval(timer);
      };
      if (!opts.intervalMs) {
        while (i < chunks.length) sendNext();
        return;
      }
      sendNext();
      timer = setInterval(sendNext, opts.intervalMs);
    });
  });
}

/** A request head that never ends: one more header line per chunk. */
export function trickledHead(path: string, lines: number): string[] {
  return [`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n`, ...Array.from({ length: lines }, (_, n) => `X-Slow-${n}: ${'a'.repeat(8)}\r\n`)];
}
