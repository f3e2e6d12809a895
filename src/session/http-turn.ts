// Shell: one turn served over HTTP/SSE upstream (SPEC §4, §5), shared by the HTTP ingress and
// the WebSocket bridge. Schedules (any transport), POSTs, fails over while nothing has reached
// the client, forwards events unchanged, reports to the scheduler, releases the slot on every
// path. Never throws: the caller renders the end for its own client (HTTP or WebSocket).
import { performance } from 'node:perf_hooks';
import type { Config } from '../config/schema.js';
import type { Clock } from '../clock.js';
import { ERRORS, RelayError, type ErrorCode } from '../errors.js';
import type { EventBus, Layer } from '../observability/events.js';
import type { ScheduleOutcome, ScheduleRequest, Scheduler, SlotLease } from '../scheduler/types.js';
import { classifyErrorEvent, type UpstreamFailure } from '../upstream/failure.js';
import { sanitizeUpstreamError, type HttpUpstream, type SanitizedError } from '../upstream/http-sse-upstream.js';
import { scrubCredential, scrubCredentialText } from '../upstream/scrub.js';
import { passBackHeaders, type IncomingHeaders } from '../upstream/target.js';
import { carriesError, parseObject, str, type ClassifiedEvent } from './events.js';
import { applyAccountAction, refusalError } from './outcomes.js';

export interface HttpTurnDeps {
  config(): Config;
  scheduler: Scheduler;
  clock: Clock;
  bus: EventBus;
  upstream: HttpUpstream;
}

export interface HttpTurnSpec {
  /** requiredTransport 'any'; `excluded` is copied, never mutated. */
  request: ScheduleRequest;
  /** Sent upstream unchanged. */
  body: Buffer | string;
  /** Client headers; only the pass-through subset travels upstream. */
  headers: IncomingHeaders;
  stream: boolean;
  /** Aborted when the client is gone, or when it cancels the turn (`cancelled`). */
  signal: AbortSignal;
  /** Set when the client cancelled the turn (the bridge's `response.cancel`): an abort is then `cancelled`, not `client_gone`. */
  cancelled?: () => boolean;
  /** Called every `http.keepAliveIntervalMs` while the turn waits for a slot. */
  onWait?: () => void;
  /** Collect `response.output_item.done` items (the bridge's transcript needs them). */
  collectItems?: boolean;
  /**
   * The request's `store` (true unless the body says false): only a stored response can be chained
   * from another socket or request, so only its id is bound to the account.
   */
  store: boolean;
}

export interface HttpTurnSink {
  /** The first event is about to go out: commit the client's response (status 200 + these headers). */
  start(headers: Record<string, string>): void;
  /**
   * One upstream event, unchanged. A promise when the client cannot take more yet (resolves when
   * it can); nothing when it can.
   */
  event(name: string | undefined, data: string): Promise<void> | void;
}

/** An error for the client: status, OpenAI-style error, Retry-After, WS close code (null = stay open). */
export interface TurnError {
  status: number;
  error: SanitizedError;
  retryAfterMs?: number;
  close: number | null;
}

export type HttpTurnEnd =
  /** Events went out, ending with the terminal one (or a synthetic `error` event). */
  | { kind: 'streamed' }
  | { kind: 'json'; status: number; headers: Record<string, string>; body: Buffer }
  /** Nothing went out: the caller sends this error. */
  | { kind: 'error'; error: TurnError }
  | { kind: 'client_gone' };

export interface HttpTurnReport {
  end: HttpTurnEnd;
  account: string | null;
  layer: Layer | null;
  reason: string | null;
  switches: number;
  waitedMs: number;
  ttftMs: number | null;
  /** completed | failed | incomplete | cancelled | error | client_gone | upstream_error | refused | rejected */
  outcome: string;
  /** The upstream response's id, when one was seen (for a cancelled turn too). */
  responseId: string | null;
  /** Accounts that failed this turn before it moved on. */
  failed: string[];
  outputItems: Record<string, unknown>[];
}

export function relayTurnError(err: RelayError): TurnError {
  return { status: err.spec.http, error: { type: err.spec.type, code: err.spec.code, message: err.message }, retryAfterMs: err.retryAfterMs, close: err.spec.close };
}

/** The `error` event sent when a stream breaks after events reached the client. */
export function errorEventData(e: TurnError): string {
  return JSON.stringify({ type: 'error', status: e.status, error: e.error });
}

interface Failed {
  failure: UpstreamFailure;
  error: SanitizedError | null;
}

type Attempt =
  | { kind: 'done'; end: HttpTurnEnd; outcome: string; ttftMs: number | null; responseId: string | null }
  /** Failed before anything reached the client, in a way another account may not (retryable). */
  | { kind: 'moveable'; failed: Failed };

async function releaseQuietly(lease: SlotLease): Promise<void> {
  try {
    await lease.release();
  } catch {
    // The store's own lease expiry frees it; never fail a turn over a release.
  }
}

async function withKeepAlive<T>(p: Promise<T>, tick: (() => void) | undefined, intervalMs: number): Promise<T> {
  if (!tick) return p;
  const timer = setInterval(tick, intervalMs);
  try {
    return await p;
  } finally {
    clearInterval(timer);
  }
}

function allFailed(last: Failed | null, nowMs: number, cfg: Config): TurnError {
  const limited = last?.failure.action.kind === 'rate_limited';
  const code: ErrorCode = limited ? 'SY_ERR_UPSTREAM_RATE_LIMITED' : 'SY_ERR_ALL_ACCOUNTS_FAILED';
  let message: string = ERRORS[code].message;
  if (last) {
    message += ` Last upstream error: ${last.failure.detail}`;
    if (last.error) message += ` (${last.error.code ?? last.error.type}: ${last.error.message})`;
    message += '.';
  }
  let retryAfterMs: number | undefined;
  if (last?.failure.action.kind === 'rate_limited') {
    const until = last.failure.action.untilMs;
    retryAfterMs = until !== null && until > nowMs ? until - nowMs : cfg.scheduler.cooldown.rateLimitMs;
  }
  return relayTurnError(new RelayError(code, message, retryAfterMs));
}

export async function runHttpTurn(deps: HttpTurnDeps, spec: HttpTurnSpec, sink: HttpTurnSink): Promise<HttpTurnReport> {
  const cfg = deps.config();
  const excluded = new Set(spec.request.excluded);
  const req: ScheduleRequest = { ...spec.request, excluded };
  const failed: string[] = [];
  const outputItems: Record<string, unknown>[] = [];
  const base = { account: null as string | null, layer: null as Layer | null, reason: null as string | null, waitedMs: 0 };
  const report = (end: HttpTurnEnd, outcome: string, switches: number, ttftMs: number | null = null, responseId: string | null = null): HttpTurnReport => ({
    end, ...base, switches, ttftMs, outcome, responseId, failed, outputItems,
  });
  let last: Failed | null = null;
  let switches = 0;
  const gone = () => report({ kind: 'client_gone' }, abortOutcome(spec), switches);
  for (;;) {
    if (spec.signal.aborted) return gone();
    let outcome: ScheduleOutcome;
    try {
      outcome = await withKeepAlive(deps.scheduler.select(req, spec.signal), spec.onWait, cfg.http.keepAliveIntervalMs);
    } catch {
      return report({ kind: 'error', error: relayTurnError(new RelayError('SY_ERR_INTERNAL')) }, 'error', switches);
    }
    if (outcome.kind === 'refused') {
      base.layer = outcome.decision.layer;
      if (outcome.reason === 'aborted') return gone();
      if (last !== null && outcome.reason === 'no_compatible_account') {
        return report({ kind: 'error', error: allFailed(last, deps.clock.now(), cfg) }, 'upstream_error', switches);
      }
      return report({ kind: 'error', error: relayTurnError(refusalError(outcome, true)) }, 'refused', switches);
    }
    // A switch is counted when the turn actually lands on another account, not when one fails.
    if (failed.length > 0) {
      deps.scheduler.reportSwitch(failed[failed.length - 1]);
      switches++;
    }
    base.account = outcome.account.id;
    base.layer = outcome.decision.layer;
    base.reason = outcome.decision.transportReason;
    base.waitedMs += outcome.waitedMs;
    let attempt: Attempt;
    try {
      attempt = await serve(deps, spec, sink, outcome, outputItems);
    } finally {
      await releaseQuietly(outcome.lease);
    }
    if (attempt.kind === 'done') return report(attempt.end, attempt.outcome, switches, attempt.ttftMs, attempt.responseId);
    const accountId = outcome.account.id;
    last = attempt.failed;
    await applyAccountAction(deps.scheduler, accountId, last.failure);
    deps.scheduler.reportResult(accountId, false, null);
    deps.bus.emit({ type: 'turn', account: accountId, transport: 'http', outcome: 'upstream_error', ttftMs: null });
    failed.push(accountId);
    if (spec.signal.aborted) return gone();
    if (switches >= cfg.scheduler.maxAccountSwitches) {
      return report({ kind: 'error', error: allFailed(last, deps.clock.now(), cfg) }, 'upstream_error', switches);
    }
    excluded.add(accountId);
  }
}

/** One attempt on an acquired slot (the caller releases it). */
async function serve(
  deps: HttpTurnDeps,
  spec: HttpTurnSpec,
  sink: HttpTurnSink,
  outcome: Extract<ScheduleOutcome, { kind: 'acquired' }>,
  outputItems: Record<string, unknown>[],
): Promise<Attempt> {
  const account = outcome.account;
  const sentAt = performance.now();
  const reply = await deps.upstream.request(account, spec.body, spec.headers, spec.signal, { stream: spec.stream });
  if (reply.kind === 'failed') {
    if (spec.signal.aborted) return clientGone(deps, spec, account.id, null);
    if (!reply.failure.retryable) {
      // A client error: no account action, no error sample (SPEC §5).
      const error = reply.error ?? { type: 'invalid_request_error', code: null, message: reply.failure.detail };
      deps.bus.emit({ type: 'turn', account: account.id, transport: 'http', outcome: 'rejected', ttftMs: null });
      return { kind: 'done', end: { kind: 'error', error: { status: reply.failure.status ?? 502, error, close: null } }, outcome: 'rejected', ttftMs: null, responseId: null };
    }
    return { kind: 'moveable', failed: { failure: reply.failure, error: reply.error } };
  }
  if (reply.kind === 'json') return finishJson(deps, spec, account.id, reply.status, reply.headers, scrubCredential(reply.body, account.apiKey));

  let ttftMs: number | null = null;
  let responseId: string | null = null;
  let forwarded = 0;
  let terminal: ClassifiedEvent | null = null;
  stream: for await (const batch of reply.events) {
    for (const item of batch) {
      if (item.kind === 'truncated') {
        if (spec.signal.aborted) return clientGone(deps, spec, account.id, responseId);
        if (forwarded === 0) return { kind: 'moveable', failed: { failure: item.failure, error: null } };
        await sink.event('error', errorEventData(relayTurnError(new RelayError('SY_ERR_UPSTREAM_FAILED'))));
        deps.scheduler.reportResult(account.id, false, ttftMs);
        deps.bus.emit({ type: 'turn', account: account.id, transport: 'http', outcome: 'upstream_error', ttftMs });
        return { kind: 'done', end: { kind: 'streamed' }, outcome: 'upstream_broken', ttftMs, responseId };
      }
      const ev = item.ev;
      if (forwarded === 0 && ev.type === 'error') {
        const f = classifyErrorEvent(ev.error?.status ?? null, ev.error?.code ?? null, ev.error?.type ?? null);
        if (f.retryable) {
          const error = sanitizeUpstreamError(item.data, ev.error?.status ?? null, [account.apiKey]);
          return { kind: 'moveable', failed: { failure: f, error } };
        }
      }
      if (forwarded === 0) sink.start(passBackHeaders(reply.headers));
      const backpressure = sink.event(item.name, carriesError(ev) ? scrubCredentialText(item.data, account.apiKey) : item.data);
      if (backpressure) await backpressure;
      forwarded++;
      if (ev.output && ttftMs === null) ttftMs = performance.now() - sentAt;
      if (ev.responseId !== null && ev.responseId !== responseId) {
        responseId = ev.responseId;
        if (spec.store) deps.scheduler.bindResponse(spec.request.group, responseId, account.id).catch(() => undefined);
      }
      if (spec.collectItems && ev.type === 'response.output_item.done') {
        const done = parseObject(item.data)?.item;
        if (done !== null && typeof done === 'object' && !Array.isArray(done)) outputItems.push(done as Record<string, unknown>);
      }
      if (ev.terminal) {
        terminal = ev;
        break stream;
      }
    }
  }
  if (terminal === null) {
    // The event source always ends with a terminal event or `truncated`; only a client gone
    // (or a cancel) mid-iteration gets here.
    return clientGone(deps, spec, account.id, responseId);
  }
  const ev = terminal;
  const outcomeName = ev.outcome ?? 'completed';
  await reportTerminal(deps, account.id, ev.outcome, ev.error, ttftMs);
  deps.bus.emit({ type: 'turn', account: account.id, transport: 'http', outcome: outcomeName, ttftMs });
  return { kind: 'done', end: { kind: 'streamed' }, outcome: outcomeName, ttftMs, responseId };
}

/** Why the turn's signal fired: the client cancelled the turn, or went away. */
function abortOutcome(spec: HttpTurnSpec): 'cancelled' | 'client_gone' {
  return spec.cancelled?.() ? 'cancelled' : 'client_gone';
}

/** The request was aborted: the client went away, or cancelled the turn. No account is blamed. */
function clientGone(deps: HttpTurnDeps, spec: HttpTurnSpec, accountId: string, responseId: string | null): Attempt {
  const outcome = abortOutcome(spec);
  deps.bus.emit({ type: 'turn', account: accountId, transport: 'http', outcome, ttftMs: null });
  return { kind: 'done', end: { kind: 'client_gone' }, outcome, ttftMs: null, responseId };
}

async function reportTerminal(
  deps: HttpTurnDeps,
  accountId: string,
  outcome: ClassifiedEvent['outcome'],
  error: ClassifiedEvent['error'],
  ttftMs: number | null,
): Promise<void> {
  if (outcome === 'failed' || outcome === 'error') {
    const f = classifyErrorEvent(error?.status ?? null, error?.code ?? null, error?.type ?? null);
    if (f.action.kind !== 'none') {
      await applyAccountAction(deps.scheduler, accountId, f);
      deps.scheduler.reportResult(accountId, false, ttftMs);
    }
    return;
  }
  deps.scheduler.reportResult(accountId, true, ttftMs);
}

/** A non-streaming answer: forwarded as it is; its id is bound and its status reported. */
async function finishJson(
  deps: HttpTurnDeps,
  spec: HttpTurnSpec,
  accountId: string,
  status: number,
  headers: IncomingHeaders,
  body: Buffer,
): Promise<Attempt> {
  const json = parseObject(body);
  const responseId = typeof json?.id === 'string' ? json.id : null;
  if (responseId !== null && spec.store) deps.scheduler.bindResponse(spec.request.group, responseId, accountId).catch(() => undefined);
  const st = typeof json?.status === 'string' ? json.status : 'completed';
  const outcome = st === 'failed' || st === 'incomplete' || st === 'cancelled' ? st : 'completed';
  const err = json?.error !== null && typeof json?.error === 'object' ? (json.error as Record<string, unknown>) : null;
  await reportTerminal(deps, accountId, outcome, err ? { status: null, code: str(err.code), type: str(err.type), message: str(err.message), headers: null } : null, null);
  // No output events in a JSON answer, so no TTFT sample (the whole generation is not a first token).
  deps.bus.emit({ type: 'turn', account: accountId, transport: 'http', outcome, ttftMs: null });
  return { kind: 'done', end: { kind: 'json', status, headers: passBackHeaders(headers), body }, outcome, ttftMs: null, responseId };
}
