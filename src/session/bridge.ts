// Shell: the WebSocket → HTTP/SSE fallback bridge (SPEC §4, §6), one per client session, created
// when a turn first needs it. The client keeps its socket and gets the same event frames, decoded
// from the upstream SSE. Without an upstream socket to hold a `store:false` chain, the bridge
// keeps the session's transcript and replays the chain as a full-history request; warm-ups
// (`generate:false`) it answers itself.
import { randomBytes } from 'node:crypto';
import type WebSocket from 'ws';
import type { Config } from '../config/schema.js';
import type { Clock } from '../clock.js';
import { RelayError } from '../errors.js';
import type { EventBus } from '../observability/events.js';
import type { Logger } from '../observability/logger.js';
import type { Scheduler } from '../scheduler/types.js';
import type { HttpUpstream } from '../upstream/http-sse-upstream.js';
import type { IncomingHeaders } from '../upstream/target.js';
import type { CreateFrame } from './frames.js';
import { errorEventData, relayTurnError, runHttpTurn, type HttpTurnReport, type TurnError } from './http-turn.js';
import { normaliseInput, replayItems, Transcript, type Item } from './transcript.js';

/** Why a turn was bridged: the `reason` label of switchyard_transport_fallback_total. */
export type BridgeReason =
  /** No WebSocket-capable account could serve the turn. */
  | 'no_ws_account'
  /** The turn chains a response the bridge produced, so it stays on the bridge. */
  | 'chained_bridge';

export interface BridgeDeps {
  config(): Config;
  scheduler: Scheduler;
  clock: Clock;
  bus: EventBus;
  log: Logger;
  upstream: HttpUpstream;
  group: string;
  /** The client's upgrade headers (no authorization). */
  headers: IncomingHeaders;
  sessionHash(body: Record<string, unknown>): string | null;
  /** Sends one text frame to the client; resolves when the client can take more. */
  send(data: string): Promise<void>;
  /** Closes the client socket after an error frame that calls for it. */
  close(code: number, reason: string): void;
  /** Aborted when the client is gone. */
  signal: AbortSignal;
}

/** Frame fields that only mean something on a WebSocket; an HTTP request must not carry them. */
const WS_ONLY_FIELDS = ['type', 'generate', 'stream_id'] as const;

export type UpstreamPlan =
  | { ok: true; body: Record<string, unknown>; previousResponseId: string | null; expanded: boolean; historyItems: number }
  | { ok: false; error: RelayError };

/**
 * Pure: the HTTP request a bridged turn sends. A chain that only the bridge can resolve (a
 * `store:false` chain, or one through a relay-minted warm-up id) is replayed in full without
 * `previous_response_id`; a `store:true` chain of real upstream ids passes its id through.
 */
export function planUpstreamBody(frame: CreateFrame, transcript: Transcript): UpstreamPlan {
  const body: Record<string, unknown> = { ...frame.body };
  for (const f of WS_ONLY_FIELDS) delete body[f];
  body.stream = true;
  const prev = frame.previousResponseId;
  const stateless = !frame.store;
  const input = normaliseInput(frame.body.input);
  if (prev !== null && (stateless || transcript.hasLocalLink(prev))) {
    const history = transcript.history(prev);
    if (history === null) return { ok: false, error: new RelayError('SY_ERR_PREVIOUS_RESPONSE_NOT_FOUND') };
    delete body.previous_response_id;
    body.input = replayItems([...history, ...input]);
    return { ok: true, body, previousResponseId: null, expanded: true, historyItems: history.length };
  }
  if (stateless && body.input !== undefined) body.input = replayItems(input);
  return { ok: true, body, previousResponseId: prev, expanded: false, historyItems: 0 };
}

/** Pure: the two frames that answer a warm-up (`generate:false`) without an upstream. */
export function warmupFrames(id: string, body: Record<string, unknown>, model: string, createdAtSec: number): [string, string] {
  const response = (status: 'in_progress' | 'completed') => ({
    id,
    object: 'response',
    created_at: createdAtSec,
    status,
    model,
    output: [],
    previous_response_id: body.previous_response_id ?? null,
    store: body.store !== false,
    tools: body.tools ?? [],
    tool_choice: body.tool_choice ?? 'auto',
    parallel_tool_calls: body.parallel_tool_calls ?? true,
    error: null,
    incomplete_details: null,
    usage:
      status === 'completed'
        ? { input_tokens: 0, input_tokens_details: { cached_tokens: 0 }, output_tokens: 0, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 0 }
        : null,
  });
  return [
    JSON.stringify({ type: 'response.created', sequence_number: 0, response: response('in_progress') }),
    JSON.stringify({ type: 'response.completed', sequence_number: 1, response: response('completed') }),
  ];
}

/** Resolves once the client socket's send buffer is below `maxBuffered` again (or it closed). */
export function clientWritable(ws: WebSocket, maxBuffered: number): Promise<void> {
  if (ws.bufferedAmount <= maxBuffered || ws.readyState !== ws.OPEN) return Promise.resolve();
  const socket = (ws as unknown as { _socket?: NodeJS.EventEmitter })._socket;
  return new Promise((resolve) => {
    const check = (): void => {
      if (ws.bufferedAmount > maxBuffered / 2 && ws.readyState === ws.OPEN) return;
      socket?.off('drain', check);
      ws.off('close', check);
      resolve();
    };
    socket?.on('drain', check);
    ws.on('close', check);
  });
}

/**
 * Pure: the terminal frame of a bridged turn the client cancelled. Over HTTP/SSE a cancel is the
 * request dropped, so the bridge ends the turn itself the way an upstream socket does (the sim,
 * after OpenAI): `response.incomplete` with status `cancelled`, and the output items finished so far.
 */
export function cancelledFrame(id: string, model: string, output: Item[], createdAtSec: number): string {
  return JSON.stringify({
    type: 'response.incomplete',
    response: { id, object: 'response', created_at: createdAtSec, status: 'cancelled', model, output, error: null, incomplete_details: null, usage: null },
  });
}

export class HttpBridge {
  private readonly transcript: Transcript;
  /** The turn in flight's own abort: `cancel()` drops its upstream request, the client stays. */
  private turnAbort: AbortController | null = null;

  constructor(private readonly deps: BridgeDeps) {
    this.transcript = new Transcript(() => deps.config().websocket.maxTranscriptBytes);
  }

  /** True when `responseId` was produced (or minted) by this bridge and is still remembered. */
  knows(responseId: string): boolean {
    return this.transcript.has(responseId);
  }

  /**
   * The client's `response.cancel`: the turn in flight (if it is generating) ends as cancelled.
   * False when the bridge has no turn in flight.
   */
  cancel(): boolean {
    if (this.turnAbort === null) return false;
    this.turnAbort.abort();
    return true;
  }

  /** Serves one client turn over HTTP/SSE. Never throws; ends with the terminal event or an error frame. */
  async runTurn(frame: CreateFrame, model: string, reason: BridgeReason, turn: number): Promise<void> {
    const d = this.deps;
    const turnAbort = new AbortController();
    this.turnAbort = turnAbort;
    d.bus.emit({ type: 'transport_fallback', reason });
    const log = (fields: Record<string, unknown>) =>
      d.log.info({ event: 'turn', turn, transport: 'http', bridged: true, fallbackReason: reason, ...fields }, 'turn');
    try {
      if (!frame.generate) return await this.warmup(frame, model, log);
      await this.generate(frame, model, turnAbort.signal, log);
    } catch (err) {
      d.log.error({ err: err instanceof Error ? err.message : String(err) }, 'bridged turn crashed');
      await this.sendError(relayTurnError(new RelayError('SY_ERR_INTERNAL')));
    } finally {
      if (this.turnAbort === turnAbort) this.turnAbort = null;
    }
  }

  private async warmup(frame: CreateFrame, model: string, log: (f: Record<string, unknown>) => void): Promise<void> {
    const prev = frame.previousResponseId;
    if (prev !== null && !frame.store && !this.transcript.has(prev)) {
      log({ outcome: 'previous_response_not_found', local: true });
      return this.sendError(relayTurnError(new RelayError('SY_ERR_PREVIOUS_RESPONSE_NOT_FOUND')));
    }
    const id = `resp_${randomBytes(24).toString('hex')}`;
    this.transcript.add({ id, parent: prev, input: normaliseInput(frame.body.input), output: [], local: true });
    for (const f of warmupFrames(id, frame.body, model, Math.floor(this.deps.clock.now() / 1000))) await this.deps.send(f);
    log({ outcome: 'completed', local: true, responseId: id });
  }

  private async generate(frame: CreateFrame, model: string, cancel: AbortSignal, log: (f: Record<string, unknown>) => void): Promise<void> {
    const d = this.deps;
    const plan = planUpstreamBody(frame, this.transcript);
    if (!plan.ok) {
      log({ outcome: 'previous_response_not_found', layer: 'previous_response_id' });
      return this.sendError(relayTurnError(plan.error));
    }
    const report = await runHttpTurn(
      d,
      {
        request: {
          group: d.group,
          sessionHash: d.sessionHash(frame.body),
          previousResponseId: plan.previousResponseId,
          model,
          requiredTransport: 'any',
          excluded: new Set<string>(),
        },
        body: JSON.stringify(plan.body),
        headers: d.headers,
        stream: true,
        signal: AbortSignal.any([d.signal, cancel]),
        cancelled: () => cancel.aborted && !d.signal.aborted,
        collectItems: true,
        store: plan.body.store !== false,
      },
      { start: () => undefined, event: (_name, data) => d.send(data) },
    );
    await this.finish(frame, model, report);
    log({
      account: report.account,
      layer: report.layer,
      reason: report.reason,
      switches: report.switches,
      failedAccounts: report.failed.length > 0 ? report.failed : undefined,
      waitedMs: report.waitedMs,
      expanded: plan.expanded,
      historyItems: plan.historyItems,
      ttftMs: report.ttftMs === null ? null : Math.round(report.ttftMs * 10) / 10,
      outcome: report.outcome,
      responseId: report.responseId,
    });
  }

  /** Renders the end for the client and remembers a finished response for later chains. */
  private async finish(frame: CreateFrame, model: string, report: HttpTurnReport): Promise<void> {
    const end = report.end;
    let output = report.outputItems;
    if (report.outcome === 'cancelled') {
      const id = report.responseId ?? `resp_${randomBytes(24).toString('hex')}`;
      await this.deps.send(cancelledFrame(id, model, output as Item[], Math.floor(this.deps.clock.now() / 1000)));
      // Chainable like any incomplete response, and always replayed from here: the upstream may
      // not have kept a response whose request was dropped mid-stream, even with store:true.
      this.transcript.add({ id, parent: frame.previousResponseId, input: normaliseInput(frame.body.input), output, local: true });
      return;
    }
    if (end.kind === 'error') return this.sendError(end.error);
    if (end.kind === 'json') {
      // A JSON answer although SSE was asked for: the client still needs a terminal event.
      let response: unknown = null;
      try {
        response = JSON.parse(end.body.toString('utf8'));
      } catch {
        response = null;
      }
      if (response === null || typeof response !== 'object') return this.sendError(relayTurnError(new RelayError('SY_ERR_UPSTREAM_FAILED')));
      const out = (response as { output?: unknown }).output;
      output = Array.isArray(out) ? (out as Item[]) : [];
      await this.deps.send(JSON.stringify({ type: 'response.completed', response }));
    }
    if (report.responseId !== null && (report.outcome === 'completed' || report.outcome === 'incomplete')) {
      this.transcript.add({
        id: report.responseId,
        parent: frame.previousResponseId,
        input: normaliseInput(frame.body.input),
        output,
        local: false,
      });
    }
  }

  private async sendError(e: TurnError): Promise<void> {
    if (this.deps.signal.aborted) return;
    await this.deps.send(errorEventData(e));
    if (e.close !== null) this.deps.close(e.close, e.error.code ?? 'error');
  }
}
