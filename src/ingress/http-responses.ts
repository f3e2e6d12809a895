// Shell: `POST /v1/responses` (SPEC §3–5). Validates the request (media type, size, JSON, model),
// then serves it over HTTP/SSE upstream on any account: SSE when `body.stream` is true (the SDK
// sends `accept: application/json` even then), JSON otherwise. Authentication and draining are
// checked by the router before this handler runs.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { RelayError, type ErrorCode } from '../errors.js';
import { errorEventData, relayTurnError, runHttpTurn, type HttpTurnSink, type TurnError } from '../session/http-turn.js';
import type { HttpUpstream } from '../upstream/http-sse-upstream.js';
import type { IncomingHeaders } from '../upstream/target.js';
import type { RelayCore } from '../session/core.js';
import type { ClientIdentity } from './auth.js';
import type { RequestHandler } from './http-server.js';

export interface HttpResponsesDeps extends RelayCore {
  upstream: HttpUpstream;
  isDraining(): boolean;
}

/** Bytes of an oversize body read and dropped (so the client sees its 413) before the socket is cut. */
const MAX_DISCARD_BYTES = 16 * 1024 * 1024;

export type ParsedRequest =
  | { ok: true; body: Record<string, unknown>; model: string; previousResponseId: string | null; stream: boolean }
  | { ok: false; error: RelayError };

const bad = (code: ErrorCode, message?: string): ParsedRequest => ({ ok: false, error: new RelayError(code, message) });

/** Pure: is this Content-Type JSON (`application/json`, `…+json`, any parameters)? */
export function isJsonContentType(value: string | undefined): boolean {
  if (!value) return false;
  const type = value.split(';')[0].trim().toLowerCase();
  return type === 'application/json' || (type.startsWith('application/') && type.endsWith('+json'));
}

/** Pure: validates a request body the way the API would, before anything goes upstream. */
export function parseResponsesRequest(raw: Buffer): ParsedRequest {
  let v: unknown;
  try {
    v = JSON.parse(raw.toString('utf8'));
  } catch {
    return bad('SY_ERR_INVALID_JSON');
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return bad('SY_ERR_INVALID_REQUEST', 'The body must be a JSON object.');
  const body = v as Record<string, unknown>;
  if (body.model === undefined || body.model === null || body.model === '') return bad('SY_ERR_MISSING_MODEL');
  if (typeof body.model !== 'string') return bad('SY_ERR_INVALID_REQUEST', "'model' must be a string.");
  const prev = body.previous_response_id;
  if (prev !== undefined && prev !== null && (typeof prev !== 'string' || !/^resp_[A-Za-z0-9_-]{1,256}$/.test(prev))) {
    return bad('SY_ERR_INVALID_PREVIOUS_RESPONSE_ID');
  }
  if (body.stream !== undefined && body.stream !== null && typeof body.stream !== 'boolean') {
    return bad('SY_ERR_INVALID_REQUEST', "'stream' must be a boolean.");
  }
  return { ok: true, body, model: body.model, previousResponseId: typeof prev === 'string' ? prev : null, stream: body.stream === true };
}

type BodyRead = { kind: 'ok'; body: Buffer } | { kind: 'too_large'; close: boolean } | { kind: 'gone' };

/**
 * Reads the request body up to `limit` bytes. Past it, up to MAX_DISCARD_BYTES more are read and
 * dropped so the client gets to read its 413; a body declared (or found) bigger than that is
 * answered with `connection: close` and the socket is cut once the 413 is out.
 */
function readBody(req: IncomingMessage, limit: number): Promise<BodyRead> {
  return new Promise((resolve) => {
    const declared = Number(req.headers['content-length']);
    const discardBound = limit + MAX_DISCARD_BYTES;
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const settle = (r: BodyRead): void => {
      if (!settled) {
        settled = true;
        resolve(r);
      }
    };
    if (Number.isFinite(declared) && declared > limit) {
      settle({ kind: 'too_large', close: declared > discardBound });
      if (declared > discardBound) return;
    }
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > discardBound) {
        settle({ kind: 'too_large', close: true });
        req.destroy();
        return;
      }
      if (settled) return;
      if (size > limit) {
        chunks.length = 0;
        settle({ kind: 'too_large', close: false });
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => settle({ kind: 'ok', body: Buffer.concat(chunks) }));
    req.on('error', () => settle({ kind: 'gone' }));
    req.on('aborted', () => settle({ kind: 'gone' }));
  });
}

function sendTurnError(res: ServerResponse, e: TurnError, body?: SseBody): void {
  if (res.destroyed) return;
  if (res.headersSent) {
    // Already streaming (keep-alives went out while waiting): the error becomes an SSE event.
    const event = `event: error\ndata: ${errorEventData(e)}\n\n`;
    if (body) body.end(event);
    else res.end(event);
    return;
  }
  const text = JSON.stringify({ error: e.error });
  const headers: Record<string, string | number> = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) };
  if (e.retryAfterMs !== undefined) headers['retry-after'] = String(Math.max(1, Math.ceil(e.retryAfterMs / 1000)));
  res.writeHead(e.status, headers);
  res.end(text);
}

const SSE_HEADERS = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive' };

/** One SSE event; a multi-line payload becomes several `data:` lines, as the format requires. */
export function formatSse(name: string | undefined, data: string): string {
  const head = name ? `event: ${name}\n` : '';
  // Upstream payloads are one line of JSON: skip the split for them.
  if (data.indexOf('\n') === -1 && data.indexOf('\r') === -1) return `${head}data: ${data}\n\n`;
  const lines = data.split(/\r\n|\r|\n/).map((l) => `data: ${l}\n`).join('');
  return `${head}${lines}\n`;
}

/**
 * The SSE body of one response. Events pushed in the same tick (one upstream read usually holds
 * many) leave as one chunk in one `res.write`, and the last ones ride on `res.end`: per event
 * node:http would otherwise frame a chunk and queue four buffers for the socket. Bytes and order
 * are unchanged. `push` answers a promise when the client cannot take more (backpressure as
 * `res.write`), resolved once it can; nothing when it can.
 */
export class SseBody {
  private pending = '';
  private scheduled = false;

  constructor(private readonly res: ServerResponse) {}

  push(chunk: string): Promise<void> | undefined {
    const res = this.res;
    if (res.destroyed || res.writableEnded) return undefined;
    this.pending += chunk;
    if (!this.scheduled) {
      this.scheduled = true;
      process.nextTick(this.flush);
    }
    return res.writableNeedDrain ? this.drained() : undefined;
  }

  /** Writes what is pending now (before anything written to `res` directly). */
  readonly flush = (): void => {
    this.scheduled = false;
    const text = this.pending;
    if (text === '') return;
    this.pending = '';
    if (!this.res.destroyed && !this.res.writableEnded) this.res.write(text);
  };

  /** Ends the response, the pending events with it. */
  end(last = ''): void {
    const text = this.pending + last;
    this.pending = '';
    if (this.res.writableEnded || this.res.destroyed) return;
    if (text === '') this.res.end();
    else this.res.end(text);
  }

  private drained(): Promise<void> {
    const res = this.res;
    return new Promise((resolve) => {
      const done = (): void => {
        res.off('drain', done);
        res.off('close', done);
        resolve();
      };
      res.on('drain', done);
      res.on('close', done);
    });
  }
}

export function createHttpResponsesHandler(deps: HttpResponsesDeps): RequestHandler {
  return async (req: IncomingMessage, res: ServerResponse, client: ClientIdentity): Promise<void> => {
    const cfg = deps.config();
    const requestId = randomUUID();
    // No child logger per request: at the default level nothing is logged per request, and a
    // pino child costs a bindings serialisation each time.
    const log = deps.log;
    const reject = (err: RelayError): void => {
      log.info({ event: 'request_rejected', request: requestId, code: err.spec.code, status: err.spec.http }, 'request rejected');
      sendTurnError(res, relayTurnError(err));
    };
    if (deps.isDraining()) return reject(new RelayError('SY_ERR_SHUTTING_DOWN'));
    const ct = req.headers['content-type'];
    if (!isJsonContentType(Array.isArray(ct) ? ct[0] : ct)) {
      req.resume();
      return reject(new RelayError('SY_ERR_UNSUPPORTED_MEDIA_TYPE'));
    }
    const read = await readBody(req, cfg.http.maxBodyBytes);
    if (read.kind === 'gone') return;
    if (read.kind === 'too_large') {
      if (read.close) res.shouldKeepAlive = false;
      return reject(new RelayError('SY_ERR_TOO_LARGE', `The request body exceeds the limit of ${cfg.http.maxBodyBytes} bytes.`));
    }
    const parsed = parseResponsesRequest(read.body);
    if (!parsed.ok) return reject(parsed.error);

    const abort = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) abort.abort();
    });
    const headers: IncomingHeaders = { ...req.headers };
    delete headers.authorization;
    const startedAt = deps.clock.now();
    const sse = new SseBody(res);
    const sink: HttpTurnSink = {
      start(passBack) {
        if (!res.headersSent) res.writeHead(200, { ...passBack, ...SSE_HEADERS });
      },
      event: (name, data) => sse.push(formatSse(name, data)),
    };
    const onWait = parsed.stream
      ? () => {
          // Headers must go out for a comment to be sent: from here on a refusal is an SSE event.
          if (!res.headersSent) res.writeHead(200, SSE_HEADERS);
          void sse.push(': keep-alive\n\n');
        }
      : undefined;
    const r = await runHttpTurn(
      deps,
      {
        request: {
          group: client.group,
          sessionHash: deps.sessionHash(client.group, headers, parsed.body),
          previousResponseId: parsed.previousResponseId,
          model: parsed.model,
          requiredTransport: 'any',
          excluded: new Set<string>(),
        },
        body: read.body,
        headers,
        stream: parsed.stream,
        store: parsed.body.store !== false,
        signal: abort.signal,
        onWait,
      },
      sink,
    );
    switch (r.end.kind) {
      case 'streamed':
        sse.end();
        break;
      case 'json':
        if (res.headersSent) sse.end();
        else {
          res.writeHead(r.end.status, { ...r.end.headers, 'content-type': 'application/json', 'content-length': r.end.body.length });
          res.end(r.end.body);
        }
        break;
      case 'error':
        sendTurnError(res, r.end.error, sse);
        break;
      case 'client_gone':
        if (!res.writableEnded) res.destroy();
        break;
    }
    if (!log.isLevelEnabled('info')) return;
    log.info(
      {
        event: 'turn',
        request: requestId,
        transport: 'http',
        client: client.name,
        stream: parsed.stream,
        account: r.account,
        layer: r.layer,
        reason: r.reason,
        switches: r.switches,
        failedAccounts: r.failed.length > 0 ? r.failed : undefined,
        waitedMs: r.waitedMs,
        ttftMs: r.ttftMs === null ? null : Math.round(r.ttftMs * 10) / 10,
        outcome: r.outcome,
        status: r.end.kind === 'error' ? r.end.error.status : undefined,
        responseId: r.responseId,
        durationMs: deps.clock.now() - startedAt,
      },
      'turn',
    );
  };
}
