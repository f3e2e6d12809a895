// Wire details shared by every endpoint of the sim: ids, OpenAI-style error bodies, raw refusals
// of WebSocket upgrades, header normalisation.
import { randomBytes } from 'node:crypto';
import { STATUS_CODES, type IncomingHttpHeaders } from 'node:http';
import type { Duplex } from 'node:stream';

/** OpenAI ids are a prefix plus hex; the sim uses 24 random bytes like the real ones. */
export function newId(prefix: string): string {
  return `${prefix}_${randomBytes(24).toString('hex')}`;
}

export function lowerHeaders(h: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined) continue;
    out[k.toLowerCase()] = Array.isArray(v) ? v.join(', ') : v;
  }
  return out;
}

export interface ApiError {
  message: string;
  type: string;
  code: string | null;
  param: string | null;
}

/** The error OpenAI sends for an HTTP status, used for knob-driven refusals. */
export function errorForStatus(status: number, method: string, path: string): ApiError {
  switch (status) {
    case 400:
      return { message: 'Bad request (simulated).', type: 'invalid_request_error', code: null, param: null };
    case 401:
      return { message: 'Incorrect API key provided.', type: 'invalid_request_error', code: 'invalid_api_key', param: null };
    case 403:
      return { message: 'You are not allowed to sample from this model.', type: 'invalid_request_error', code: 'forbidden', param: null };
    case 404:
      return { message: `Invalid URL (${method} ${path})`, type: 'invalid_request_error', code: null, param: null };
    case 426:
      return {
        message: 'WebSocket mode is not supported for this account; use HTTP.',
        type: 'invalid_request_error',
        code: 'websocket_not_supported',
        param: null,
      };
    case 429:
      return rateLimitError();
    default:
      if (status >= 500) {
        return {
          message: 'The server had an error while processing your request. Sorry about that!',
          type: 'server_error',
          code: 'server_error',
          param: null,
        };
      }
      return { message: `Simulated status ${status}.`, type: 'invalid_request_error', code: null, param: null };
  }
}

export function rateLimitError(): ApiError {
  return {
    message: 'Rate limit reached for requests (simulated). Please try again later.',
    type: 'rate_limit_error',
    code: 'rate_limit_exceeded',
    param: null,
  };
}

export function previousNotFound(id: string): ApiError {
  return {
    message: `Previous response with id '${id}' not found.`,
    type: 'invalid_request_error',
    code: 'previous_response_not_found',
    param: 'previous_response_id',
  };
}

export function missingKey(): ApiError {
  return {
    message: "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth.",
    type: 'invalid_request_error',
    code: null,
    param: null,
  };
}

/** The WS error frame shape codex parses: the HTTP status sits next to the error object. */
export function wsErrorFrame(status: number, error: ApiError): Record<string, unknown> {
  return { type: 'error', status, error };
}

export function rateLimitHeaders(retryAfterSeconds: number): Record<string, string> {
  return {
    'retry-after': String(retryAfterSeconds),
    'x-ratelimit-reset-requests': `${retryAfterSeconds}s`,
    'x-ratelimit-remaining-requests': '0',
  };
}

/**
 * Answers an upgrade request with a plain HTTP response and closes the TCP connection, the way a
 * server that will not switch protocols does.
 */
export function refuseUpgrade(socket: Duplex, status: number, error: ApiError, headers: Record<string, string>): void {
  const body = JSON.stringify({ error });
  const lines = [
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}`,
    'content-type: application/json',
    `content-length: ${Buffer.byteLength(body)}`,
    'connection: close',
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
  ];
  socket.end(`${lines.join('\r\n')}\r\n\r\n${body}`);
  // end() flushes; destroy on finish so a client that keeps its half open does not pin the socket.
  socket.once('finish', () => socket.destroy());
}

/** Resolves to false when aborted before `ms` passed. Never rejects. */
export function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  if (ms <= 0) return Promise.resolve(true);
  return new Promise((resolve) => {
    const onAbort = (): void => {
      clearTimeout(t);
      resolve(false);
    };
    const t = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

export function parseJson(text: string): { ok: true; value: unknown } | { ok: false } {
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch {
    return { ok: false };
  }
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** Monotonic system-wide clock in ms, comparable across processes on one host (for benchmarks). */
export function hrMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}
