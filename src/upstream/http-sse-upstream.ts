// Shell: the HTTP/SSE upstream (SPEC §3, §4). One keep-alive undici Pool per account origin;
// `POST <baseUrl>/responses` with the account's credential; an SSE answer is decoded with
// eventsource-parser into classified events. Never logs, returns or echoes the account key.
import { StringDecoder } from 'node:string_decoder';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import type { Dispatcher, Pool } from 'undici';
import type { AccountConfig, Config } from '../config/schema.js';
import { systemClock, type Clock } from '../clock.js';
import { classifyEventText, str, type ClassifiedEvent } from '../session/events.js';
import { classifyHttpStatus, connectFailure, type UpstreamFailure } from './failure.js';
import { httpUrl, passThroughHeaders, type IncomingHeaders } from './target.js';

/** An upstream error reduced to what a client may see: never headers, never credentials. */
export interface SanitizedError {
  type: string;
  code: string | null;
  message: string;
  param?: string | null;
}

/** One SSE event as the upstream sent it, plus its classification. */
export interface SseEvent {
  kind: 'event';
  /** The `event:` field, when the upstream sent one. */
  name: string | undefined;
  /** The `data:` payload, unchanged. */
  data: string;
  ev: ClassifiedEvent;
}

/** The stream ended (or broke) before a terminal event: a failure of the account. */
export interface SseTruncated {
  kind: 'truncated';
  failure: UpstreamFailure;
}

export type SseItem = SseEvent | SseTruncated;

export type UpstreamReply =
  /** Connect error, timeout, or a non-2xx answer (with its sanitised error body). */
  | { kind: 'failed'; failure: UpstreamFailure; error: SanitizedError | null; headers: IncomingHeaders }
  /**
   * 2xx `text/event-stream`: iterate `events` once, each step a batch of the events decoded from
   * what the upstream sent so far (in order; a step per event would cost a few promises each);
   * breaking out of the loop releases the connection.
   */
  | { kind: 'sse'; status: number; headers: IncomingHeaders; events: AsyncIterable<readonly SseItem[]> }
  /** 2xx JSON (non-streaming request). */
  | { kind: 'json'; status: number; headers: IncomingHeaders; body: Buffer };

export interface UpstreamRequestOptions {
  /** Ask for SSE (`accept: text/event-stream`); the body's own `stream` field is the caller's business. */
  stream: boolean;
}

/** Largest non-streaming JSON answer read from an upstream. */
export const MAX_UPSTREAM_JSON_BYTES = 64 * 1024 * 1024;
/** Largest upstream error body read (the rest is discarded). */
export const MAX_UPSTREAM_ERROR_BYTES = 64 * 1024;
/** Upstream messages shown to clients are cut to this many characters. */
const MAX_MESSAGE_CHARS = 500;
/** Idle keep-alive connections to an upstream origin are closed after this long. */
const KEEP_ALIVE_MS = 30_000;

const KEY_SHAPED = /\b(?:sk|rk|sess|pk)-[A-Za-z0-9_\-*.]{4,}/g;
const BEARER = /\bBearer\s+\S+/gi;

function scrub(s: string, secrets: readonly string[]): string {
  let out = s;
  for (const secret of secrets) if (secret.length >= 4) out = out.split(secret).join('[redacted]');
  return out.replace(BEARER, 'Bearer [redacted]').replace(KEY_SHAPED, '[redacted]');
}

/**
 * Pure: an upstream error body → the OpenAI-style error a client may see. Only `type`, `code`,
 * `message` and `param` survive, credential-shaped text is masked, and a body that is not an
 * OpenAI error (HTML from a proxy, …) is never echoed.
 */
export function sanitizeUpstreamError(raw: string, status: number | null, secrets: readonly string[] = []): SanitizedError {
  const fallbackType = status !== null && status >= 500 ? 'server_error' : status === 429 ? 'rate_limit_error' : 'invalid_request_error';
  let parsed: unknown = null;
  try {
    parsed = JSON.parse(raw);
  } catch {
    parsed = null;
  }
  const top = parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : null;
  const inner = top && top.error !== null && typeof top.error === 'object' ? (top.error as Record<string, unknown>) : top;
  const message = str(inner?.message) ?? `Upstream answered ${status ?? 'with an error'}.`;
  const code = str(inner?.code);
  const param = str(inner?.param);
  return {
    type: scrub(str(inner?.type) ?? fallbackType, secrets).slice(0, 100),
    code: code === null ? null : scrub(code, secrets).slice(0, 100),
    message: scrub(message, secrets).slice(0, MAX_MESSAGE_CHARS),
    param: param === null ? null : scrub(param, secrets).slice(0, 100),
  };
}

/**
 * Pure: a non-2xx answer to a POST → account action. Unlike a WS handshake, a POST never
 * negotiates WebSocket, so 404/405/426 there describe the request (unknown model, wrong path),
 * not the account.
 */
export function classifyPostStatus(status: number, headers: IncomingHeaders, nowMs: number): UpstreamFailure {
  if (status === 404 || status === 405 || status === 426) {
    return { action: { kind: 'none' }, retryable: false, detail: `upstream answered ${status}`, status };
  }
  return classifyHttpStatus(status, headers, nowMs);
}

function errorCode(err: unknown): string {
  const e = err as { code?: unknown; name?: unknown } | null;
  if (e && typeof e.code === 'string') return e.code;
  if (e && typeof e.name === 'string') return e.name;
  return 'unknown';
}

function isEventStream(headers: IncomingHeaders): boolean {
  const ct = headers['content-type'];
  return (Array.isArray(ct) ? ct.join(',') : (ct ?? '')).toLowerCase().includes('text/event-stream');
}

type BodySink = { data(chunk: Buffer): void; end(): void; error(err: unknown): void };

/**
 * The body of one upstream answer as undici hands it over (its dispatch handler API: no stream
 * object, no promise per chunk). What arrives before the consumer attaches (headers and the first
 * chunk often come in one read) is kept and replayed. `pause`/`resume` hold and release the
 * socket; `abort` drops the connection.
 */
class BodySource {
  private sink: BodySink | null = null;
  private early: Array<Buffer | { end: true } | { error: unknown }> = [];

  constructor(private readonly control: () => Dispatcher.DispatchController | null) {}

  pause(): void {
    this.control()?.pause();
  }

  resume(): void {
    this.control()?.resume();
  }

  abort(): void {
    this.control()?.abort(Object.assign(new Error('consumer gone'), { code: 'ABORT_ERR' }));
  }

  attach(sink: BodySink): void {
    this.sink = sink;
    const early = this.early;
    this.early = [];
    for (const item of early) {
      if (Buffer.isBuffer(item)) sink.data(item);
      else if ('end' in item) sink.end();
      else sink.error(item.error);
    }
  }

  data(chunk: Buffer): void {
    if (this.sink) this.sink.data(chunk);
    else this.early.push(chunk);
  }

  end(): void {
    if (this.sink) this.sink.end();
    else this.early.push({ end: true });
  }

  error(err: unknown): void {
    if (this.sink) this.sink.error(err);
    else this.early.push({ error: err });
  }
}

/** Parsed events queued ahead of the consumer before the upstream body is paused. */
const MAX_QUEUED_EVENTS = 64;

/**
 * Decodes an SSE body into classified events, in order, in batches (one per wake-up), pausing the
 * body while the consumer lags. Ends after the batch holding the terminal event (the rest of the
 * body is read and dropped, so the connection can be reused), or with exactly one `truncated`
 * item when no terminal event came. Breaking out of the loop early drops the connection.
 */
async function* sseEvents(body: BodySource): AsyncGenerator<readonly SseItem[]> {
  const queue: EventSourceMessage[] = [];
  // StringDecoder, not TextDecoder: per chunk of a few events, TextDecoder's streaming decode
  // costs 4-10 times as much here. Both keep a character split across chunks whole; unlike
  // TextDecoder, StringDecoder leaves a leading byte order mark, which the SSE format drops.
  const decoder = new StringDecoder('utf8');
  let first = true;
  const text = (chunk: Buffer): string => {
    const t = decoder.write(chunk);
    if (!first || t === '') return t;
    first = false;
    return t.charCodeAt(0) === 0xfeff ? t.slice(1) : t;
  };
  let terminal = false;
  let ended = false;
  let failure: UpstreamFailure | null = null;
  let wake: (() => void) | null = null;
  const notify = (): void => {
    const w = wake;
    wake = null;
    w?.();
  };
  const parser = createParser({ onEvent: (m) => void (terminal || queue.push(m)) });
  body.attach({
    data(chunk) {
      if (terminal) return;
      parser.feed(text(chunk));
      if (queue.length >= MAX_QUEUED_EVENTS) body.pause();
      notify();
    },
    end() {
      if (!terminal) {
        parser.feed(decoder.end());
        parser.reset({ consume: true });
      }
      ended = true;
      notify();
    },
    error(err) {
      failure ??= connectFailure(`upstream stream broke (${errorCode(err)})`);
      ended = true;
      notify();
    },
  });
  try {
    for (;;) {
      if (queue.length > 0) {
        const batch: SseItem[] = [];
        for (let i = 0; i < queue.length && !terminal; i++) {
          const m = queue[i];
          if (m.data === '' || m.data === '[DONE]') continue;
          const ev = classifyEventText(m.data, true);
          if (ev.terminal) terminal = true;
          batch.push({ kind: 'event', name: m.event, data: m.data, ev });
        }
        queue.length = 0;
        if (batch.length > 0) yield batch;
        if (terminal) return;
      }
      if (ended) break;
      // undici may hand over what it holds inside resume(), before the wait below is set up.
      body.resume();
      if (queue.length > 0 || ended) continue;
      await new Promise<void>((r) => (wake = r));
    }
  } finally {
    if (terminal) body.resume();
    else if (!ended) body.abort();
  }
  yield [{ kind: 'truncated', failure: failure ?? connectFailure('upstream stream ended before a terminal event') }];
}

/**
 * One POST through undici's dispatch handler API: answers `reply` once the status and headers are
 * in (an SSE body then streams into `sseEvents`; an error or JSON body is read whole first).
 */
class ReplyHandler implements Dispatcher.DispatchHandler {
  private controller: Dispatcher.DispatchController | null = null;
  private mode: 'waiting' | 'sse' | 'collect' | 'done' = 'waiting';
  private status = 0;
  private headers: IncomingHeaders = {};
  private chunks: Buffer[] = [];
  private size = 0;
  private limit = 0;
  private readonly source: BodySource;
  private readonly onAbort = (): void => this.controller?.abort(Object.assign(new Error('aborted'), { code: 'ABORT_ERR' }));

  constructor(
    private readonly signal: AbortSignal,
    private readonly finish: (r: UpstreamReply) => void,
    private readonly classify: (status: number, headers: IncomingHeaders, raw: string) => UpstreamReply,
  ) {
    this.source = new BodySource(() => this.controller);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.signal.aborted) this.onAbort();
    else this.signal.addEventListener('abort', this.onAbort, { once: true });
  }

  onResponseStart(_controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHeaders): void {
    this.status = statusCode;
    this.headers = headers;
    if (this.isError()) {
      this.mode = 'collect';
      this.limit = MAX_UPSTREAM_ERROR_BYTES;
    } else if (isEventStream(headers)) {
      this.mode = 'sse';
      this.finish({ kind: 'sse', status: statusCode, headers, events: sseEvents(this.source) });
    } else {
      this.mode = 'collect';
      this.limit = MAX_UPSTREAM_JSON_BYTES;
    }
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.mode === 'sse') {
      this.source.data(chunk);
      return;
    }
    if (this.mode !== 'collect') return;
    this.size += chunk.length;
    if (this.size > this.limit) {
      // An error body is cut (what was read is enough); a JSON answer that big is refused.
      this.collected(() => this.failed('upstream answer too large'));
      controller.abort(Object.assign(new Error('too large'), { code: 'ABORT_ERR' }));
      return;
    }
    this.chunks.push(chunk);
  }

  onResponseEnd(): void {
    this.signal.removeEventListener('abort', this.onAbort);
    if (this.mode === 'sse') {
      this.source.end();
      return;
    }
    if (this.mode !== 'collect') return;
    this.collected((body) => ({ kind: 'json', status: this.status, headers: this.headers, body }));
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    this.signal.removeEventListener('abort', this.onAbort);
    if (this.mode === 'sse') {
      this.source.error(err);
      return;
    }
    if (this.mode === 'waiting') {
      this.done(this.failed(`upstream request failed (${errorCode(err)})`)); // no headers yet: {}
    } else if (this.mode === 'collect') {
      this.collected(() => this.failed(`upstream body broke (${errorCode(err)})`));
    }
  }

  /** The body read so far: an error status is classified from it, anything else answers `ok`. */
  private collected(ok: (body: Buffer) => UpstreamReply): void {
    const body = Buffer.concat(this.chunks);
    this.done(this.isError() ? this.classify(this.status, this.headers, body.toString('utf8')) : ok(body));
  }

  private failed(detail: string): UpstreamReply {
    return { kind: 'failed', failure: connectFailure(detail), error: null, headers: this.headers };
  }

  private isError(): boolean {
    return this.status < 200 || this.status >= 300;
  }

  private done(r: UpstreamReply): void {
    if (this.mode === 'done') return;
    this.mode = 'done';
    this.chunks = [];
    this.finish(r);
  }
}

type Undici = typeof import('undici');
let undici: Undici | null = null;

/**
 * undici, with the Node built-ins it pulls in (its cookie helpers load Node's own bundled
 * undici), is ~5 MB of heap: more than half of what the whole app adds at start. It is loaded
 * by the first HTTP upstream request, so a relay that serves only WebSocket turns never carries
 * it, and every full GC of such a relay has that much less to mark.
 */
async function loadUndici(): Promise<Undici> {
  return (undici ??= await import('undici'));
}

export interface HttpUpstreamDeps {
  config(): Config;
  clock?: Clock;
}

export class HttpUpstream {
  private readonly pools = new Map<string, Pool>();
  private readonly targets = new WeakMap<AccountConfig, { origin: string; path: string }>();
  private readonly clock: Clock;
  private closed = false;

  constructor(private readonly deps: HttpUpstreamDeps) {
    this.clock = deps.clock ?? systemClock;
  }

  /**
   * POSTs one Responses request to the account. Resolves once the upstream has answered with
   * headers (or failed); never rejects. `signal` aborts the request and its stream.
   */
  async request(
    account: AccountConfig,
    body: Buffer | string,
    clientHeaders: IncomingHeaders,
    signal: AbortSignal,
    opts: UpstreamRequestOptions = { stream: true },
  ): Promise<UpstreamReply> {
    const cfg = this.deps.config();
    const url = this.target(account);
    const headers: Record<string, string> = {
      ...passThroughHeaders(clientHeaders),
      authorization: `Bearer ${account.apiKey}`,
      'content-type': 'application/json',
      accept: opts.stream ? 'text/event-stream' : 'application/json',
    };
    let lib: Undici;
    try {
      lib = undici ?? (await loadUndici());
    } catch (err) {
      return { kind: 'failed', failure: connectFailure(`upstream request failed (${errorCode(err)})`), error: null, headers: {} };
    }
    if (this.closed) {
      return { kind: 'failed', failure: connectFailure('upstream request failed (UPSTREAM_CLOSED)'), error: null, headers: {} };
    }
    const classify = (status: number, resHeaders: IncomingHeaders, raw: string): UpstreamReply => ({
      kind: 'failed',
      failure: classifyPostStatus(status, resHeaders, this.clock.now()),
      error: sanitizeUpstreamError(raw, status, [account.apiKey]),
      headers: resHeaders,
    });
    return new Promise<UpstreamReply>((resolve) => {
      const handler = new ReplyHandler(signal, resolve, classify);
      try {
        this.pool(lib, url.origin, cfg).dispatch(
          {
            path: url.path,
            method: 'POST',
            headers,
            body,
            headersTimeout: cfg.http.upstreamHeadersTimeoutMs,
            bodyTimeout: cfg.http.upstreamBodyTimeoutMs,
          },
          handler,
        );
      } catch (err) {
        resolve({ kind: 'failed', failure: connectFailure(`upstream request failed (${errorCode(err)})`), error: null, headers: {} });
      }
    });
  }

  /** Closes every pool: in-flight requests get a moment to finish, then are cut. */
  async close(): Promise<void> {
    this.closed = true;
    const pools = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(
      pools.map(async (p) => {
        let timer: NodeJS.Timeout | undefined;
        const graceful = p.close().then(() => true, () => false);
        const late = new Promise<boolean>((r) => (timer = setTimeout(() => r(false), 1_000)));
        const ok = await Promise.race([graceful, late]);
        clearTimeout(timer);
        if (!ok) await p.destroy().catch(() => undefined);
      }),
    );
  }

  /** The account's POST target, parsed once per account config (a reload brings new objects). */
  private target(account: AccountConfig): { origin: string; path: string } {
    let t = this.targets.get(account);
    if (!t) {
      const url = new URL(httpUrl(account, '/responses'));
      t = { origin: url.origin, path: url.pathname + url.search };
      this.targets.set(account, t);
    }
    return t;
  }

  private pool(lib: Undici, origin: string, cfg: Config): Pool {
    let p = this.pools.get(origin);
    if (!p) {
      // No connection cap here: account slots already bound the requests in flight per account.
      p = new lib.Pool(origin, {
        keepAliveTimeout: KEEP_ALIVE_MS,
        connect: { timeout: cfg.websocket.upstreamConnectTimeoutMs },
        headersTimeout: cfg.http.upstreamHeadersTimeoutMs,
        bodyTimeout: cfg.http.upstreamBodyTimeoutMs,
      });
      this.pools.set(origin, p);
    }
    return p;
  }
}
