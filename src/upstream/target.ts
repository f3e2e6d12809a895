// Pure: where and how to reach an account upstream (SPEC §6). No I/O.
import type { AccountConfig } from '../config/schema.js';
import { SESSION_HEADERS } from '../scheduler/session-key.js';

export const RESPONSES_WS_BETA = 'responses_websockets=2026-02-06';

/** Client request headers passed on upstream (lower-case). `x-codex-*` is matched by prefix. */
const PASS_THROUGH_HEADERS = new Set([
  'session-id',
  'session_id',
  'thread-id',
  'conversation_id',
  'originator',
  'version',
  'x-client-request-id',
  'user-agent',
]);

/** Upstream response headers passed back to the client (101 / HTTP responses). */
export const PASS_BACK_HEADERS = [
  'x-codex-turn-state',
  'x-models-etag',
  'x-reasoning-included',
  'openai-model',
  'x-request-id',
] as const;

export type IncomingHeaders = Record<string, string | string[] | undefined>;

/** A client header (lower-cased name) that travels upstream. Never authorization, cookies or hop-by-hop. */
function travelsUpstream(n: string): boolean {
  return PASS_THROUGH_HEADERS.has(n) || n.startsWith('x-codex-');
}

/** The subset of client headers that travel upstream (travelsUpstream). */
export function passThroughHeaders(client: IncomingHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(client)) {
    if (value === undefined) continue;
    const n = name.toLowerCase();
    if (travelsUpstream(n)) {
      out[n] = Array.isArray(value) ? value.join(', ') : value;
    }
  }
  return out;
}

const SESSION_KEY_HEADERS: ReadonlySet<string> = new Set(SESSION_HEADERS);

/**
 * The client headers a WebSocket session keeps for its life: those that travel upstream with each
 * socket it opens, and those its session key may come from. The rest of the upgrade request (host,
 * sec-websocket-*, cookies, authorization) is left behind, and with it a few hundred bytes of heap
 * per session.
 */
export function sessionHeaders(client: IncomingHeaders): IncomingHeaders {
  const out: IncomingHeaders = {};
  for (const name in client) {
    const n = name.toLowerCase();
    if (travelsUpstream(n) || SESSION_KEY_HEADERS.has(n)) out[name] = client[name];
  }
  return out;
}

function joinPath(base: string, suffix: string): URL {
  const u = new URL(base);
  u.pathname = u.pathname.replace(/\/+$/, '') + suffix;
  return u;
}

/** `https://h/v1` → `wss://h/v1/responses` (or `/realtime`). */
export function wsUrl(account: AccountConfig, path: '/responses' | '/realtime', search = ''): string {
  const u = joinPath(account.baseUrl, path);
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  if (search) u.search = search;
  return u.toString();
}

export function httpUrl(account: AccountConfig, path: '/responses'): string {
  return joinPath(account.baseUrl, path).toString();
}

export function responsesWsTarget(account: AccountConfig, client: IncomingHeaders): { url: string; headers: Record<string, string> } {
  return {
    url: wsUrl(account, '/responses'),
    headers: {
      ...passThroughHeaders(client),
      authorization: `Bearer ${account.apiKey}`,
      'openai-beta': RESPONSES_WS_BETA,
    },
  };
}

/** Headers from an upstream response that the client should see. */
export function passBackHeaders(upstream: IncomingHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of PASS_BACK_HEADERS) {
    const v = upstream[name];
    if (v !== undefined) out[name] = Array.isArray(v) ? v.join(', ') : v;
  }
  for (const [name, v] of Object.entries(upstream)) {
    if (v !== undefined && name.startsWith('x-ratelimit-')) out[name] = Array.isArray(v) ? v.join(', ') : v;
  }
  return out;
}
