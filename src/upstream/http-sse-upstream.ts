// Shell: the HTTP/SSE upstream (SPEC §3, §4). One keep-alive undici Pool per account origin;
// `POST <baseUrl>/responses` with the account's credential; an SSE answer is decoded with
// eventsource-parser into classified events. Never logs, returns or echoes the account key.
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { Pool } from 'undici';
import type { AccountConfig, Config } from '../config/schema.js';
import { systemClock, type Clock } from '../clock.js';
import { classifyEventText, type ClassifiedEvent } from '../session/events.js';
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

const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);

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

type Body = NodeJS.ReadableStream & AsyncIterable<Buffer> & { destroy(err?: Error): unknown };

async function readLimited(body: Body, limit: number): Promise<Buffer | null> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.length;
    if (size > limit) {
      body.destroy();
      return null;
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** Parsed events queued ahead of the consumer before the upstream body is paused. */
const MAX_QUEUED_EVENTS = 64;

/**
 * Decodes an SSE body into classified events, in order, in batches (one per wake-up), pausing the
 * body while the consumer lags. Ends after the batch holding the terminal event (the rest of the
 * body flows to its end unread, so the connection can be reused), or with exactly one `truncated`
 * item when no terminal event came.
 */
async function* sseEvents(body: Body): AsyncGenerator<readonly SseItem[]> {
  const queue: EventSourceMessage[] = [];
  const decoder = new TextDecoder();
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
  body.on('data', (chunk: Buffer) => {
    if (terminal) return;
    parser.feed(decoder.decode(chunk, { stream: true }));
    if (queue.length >= MAX_QUEUED_EVENTS) body.pause();
    notify();
  });
  body.on('end', () => {
    if (!terminal) {
      parser.feed(decoder.decode());
      parser.reset({ consume: true });
    }
    ended = true;
    notify();
  });
  body.on('error', (err: unknown) => {
    failure ??= connectFailure(`upstream stream broke (${errorCode(err)})`);
    ended = true;
    notify();
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
      body.resume();
      await new Promise<void>((r) => (wake = r));
    }
  } finally {
    if (terminal) body.resume();
    else body.destroy();
  }
  yield [{ kind: 'truncated', failure: failure ?? connectFailure('upstream stream ended before a terminal event') }];
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
    let res: Awaited<ReturnType<Pool['request']>>;
    try {
      if (this.closed) throw Object.assign(new Error('closed'), { code: 'UPSTREAM_CLOSED' });
      res = await this.pool(url.origin, cfg).request({
        path: url.path,
        method: 'POST',
        headers,
        body,
        signal,
        headersTimeout: cfg.http.upstreamHeadersTimeoutMs,
        bodyTimeout: cfg.http.upstreamBodyTimeoutMs,
      });
    } catch (err) {
      return { kind: 'failed', failure: connectFailure(`upstream request failed (${errorCode(err)})`), error: null, headers: {} };
    }
    const resHeaders = res.headers as IncomingHeaders;
    const resBody = res.body as unknown as Body;
    if (res.statusCode < 200 || res.statusCode >= 300) {
      let raw = '';
      try {
        raw = (await readLimited(resBody, MAX_UPSTREAM_ERROR_BYTES))?.toString('utf8') ?? '';
      } catch {
        raw = '';
      }
      return {
        kind: 'failed',
        failure: classifyPostStatus(res.statusCode, resHeaders, this.clock.now()),
        error: sanitizeUpstreamError(raw, res.statusCode, [account.apiKey]),
        headers: resHeaders,
      };
    }
    if (isEventStream(resHeaders)) return { kind: 'sse', status: res.statusCode, headers: resHeaders, events: sseEvents(resBody) };
    try {
      const json = await readLimited(resBody, MAX_UPSTREAM_JSON_BYTES);
      if (json === null) return { kind: 'failed', failure: connectFailure('upstream answer too large'), error: null, headers: resHeaders };
      return { kind: 'json', status: res.statusCode, headers: resHeaders, body: json };
    } catch (err) {
      return { kind: 'failed', failure: connectFailure(`upstream body broke (${errorCode(err)})`), error: null, headers: resHeaders };
    }
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

  private pool(origin: string, cfg: Config): Pool {
    let p = this.pools.get(origin);
    if (!p) {
      // No connection cap here: account slots already bound the requests in flight per account.
      p = new Pool(origin, {
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
