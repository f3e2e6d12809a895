// Pure: what an upstream failure means for the account and for the turn (SPEC §5).
import type { IncomingHeaders } from './target.js';

export type AccountAction =
  /** Rate limited: cool down until the reset (or the default). */
  | { kind: 'rate_limited'; untilMs: number | null }
  /** Credential rejected: disable until an operator enables it. */
  | { kind: 'unauthorized' }
  /** 5xx, connect error, server error event: short cooldown. */
  | { kind: 'server_error' }
  /** The upstream refused WebSocket: resolve to HTTP for a while. */
  | { kind: 'ws_unsupported' }
  /** Not the account's fault (a bad request): nothing to record. */
  | { kind: 'none' };

export interface UpstreamFailure {
  action: AccountAction;
  /** May another account serve this turn (before anything reached the client)? */
  retryable: boolean;
  /** Short, secret-free description for logs and client messages. */
  detail: string;
  /** The HTTP-ish status behind it, when there is one. */
  status: number | null;
}

function header(h: IncomingHeaders, name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
}

/** Parses `1s`, `6m0s`, `1h2m3.5s`, `250ms`, or a bare number of seconds into ms. */
export function parseDurationMs(s: string): number | null {
  const t = s.trim();
  if (/^\d+(\.\d+)?$/.test(t)) return Math.round(parseFloat(t) * 1000);
  const re = /(\d+(?:\.\d+)?)(ms|h|m|s)/g;
  let total = 0;
  let matched = '';
  for (let m = re.exec(t); m; m = re.exec(t)) {
    const n = parseFloat(m[1]);
    total += m[2] === 'h' ? n * 3_600_000 : m[2] === 'm' ? n * 60_000 : m[2] === 's' ? n * 1000 : n;
    matched += m[0];
  }
  return matched.length > 0 && matched === t ? Math.round(total) : null;
}

/** When a 429 resets: `retry-after` (seconds or HTTP date), else the largest `x-ratelimit-reset-*`. */
export function rateLimitResetMs(h: IncomingHeaders, nowMs: number): number | null {
  const ra = header(h, 'retry-after');
  if (ra !== undefined) {
    const secs = parseDurationMs(ra);
    if (secs !== null) return nowMs + secs;
    const date = Date.parse(ra);
    if (!Number.isNaN(date)) return Math.max(nowMs, date);
  }
  let best: number | null = null;
  for (const name of ['x-ratelimit-reset-requests', 'x-ratelimit-reset-tokens', 'x-ratelimit-reset']) {
    const v = header(h, name);
    const ms = v === undefined ? null : parseDurationMs(v);
    if (ms !== null && (best === null || ms > best)) best = ms;
  }
  return best === null ? null : nowMs + best;
}

/** An upstream HTTP status (handshake or POST) → account action and whether the turn may move. */
export function classifyHttpStatus(status: number, h: IncomingHeaders, nowMs: number): UpstreamFailure {
  if (status === 429) return { action: { kind: 'rate_limited', untilMs: rateLimitResetMs(h, nowMs) }, retryable: true, detail: 'upstream rate limited (429)', status };
  if (status === 401) return { action: { kind: 'unauthorized' }, retryable: true, detail: 'upstream rejected the credential (401)', status };
  if (status === 403) return { action: { kind: 'server_error' }, retryable: true, detail: 'upstream refused access (403)', status };
  if (status === 426 || status === 404 || status === 405) return { action: { kind: 'ws_unsupported' }, retryable: true, detail: `upstream does not support WebSocket (${status})`, status };
  if (status >= 500) return { action: { kind: 'server_error' }, retryable: true, detail: `upstream server error (${status})`, status };
  return { action: { kind: 'none' }, retryable: false, detail: `upstream answered ${status}`, status };
}

export function connectFailure(detail: string): UpstreamFailure {
  return { action: { kind: 'server_error' }, retryable: true, detail, status: null };
}

const RATE_LIMIT_CODES = new Set(['rate_limit_exceeded', 'rate_limit_error', 'usage_limit_reached', 'insufficient_quota', 'too_many_requests']);
const SERVER_CODES = new Set(['server_error', 'internal_error', 'service_unavailable', 'overloaded', 'server_overloaded', 'websocket_connection_limit_reached']);
const WS_UNSUPPORTED_CODES = new Set(['upgrade_required', 'websocket_not_supported']);

/** An upstream `error` event (or failed response) → account action. Client errors are not the account's fault. */
export function classifyErrorEvent(status: number | null, code: string | null, type: string | null, untilMs: number | null = null): UpstreamFailure {
  const c = code ?? '';
  const t = type ?? '';
  if (status === 429 || RATE_LIMIT_CODES.has(c) || RATE_LIMIT_CODES.has(t)) {
    return { action: { kind: 'rate_limited', untilMs }, retryable: true, detail: `upstream rate limited (${c || t || status})`, status };
  }
  if (WS_UNSUPPORTED_CODES.has(c)) return { action: { kind: 'ws_unsupported' }, retryable: true, detail: `upstream does not support WebSocket (${c})`, status };
  if (status === 401 || c === 'invalid_api_key') return { action: { kind: 'unauthorized' }, retryable: true, detail: 'upstream rejected the credential', status };
  if ((status !== null && status >= 500) || SERVER_CODES.has(c) || t === 'server_error') {
    return { action: { kind: 'server_error' }, retryable: true, detail: `upstream server error (${c || t || status})`, status };
  }
  return { action: { kind: 'none' }, retryable: false, detail: `upstream error (${c || t || status})`, status };
}
