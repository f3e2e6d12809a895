// Pure: the Realtime relay's wire rules (SPEC §7). Which upgrades are served, what goes upstream,
// which upstream events say something about the account's health, and which close code each side
// gets. No I/O, so every rule is testable with plain values.
import type { AccountConfig } from '../config/schema.js';
import { KEY_SUBPROTOCOL_PREFIX } from '../ingress/auth.js';
import { classifyErrorEvent, type UpstreamFailure } from '../upstream/failure.js';
import { passThroughHeaders, wsUrl, type IncomingHeaders } from '../upstream/target.js';
import { str } from './events.js';

export type RealtimeQuery =
  | { ok: true; search: string; model: string | null; intent: string | null }
  | { ok: false; message: string };

/**
 * The upgrade's query, passed upstream unchanged. A session needs `model`, except a transcription
 * session (`intent=transcription`), whose model comes later in `session.update`.
 */
export function parseRealtimeQuery(rawUrl: string | undefined): RealtimeQuery {
  const u = new URL(rawUrl ?? '/', 'http://relay.invalid');
  const model = u.searchParams.get('model')?.trim() || null;
  const intent = u.searchParams.get('intent')?.trim() || null;
  if (model === null && intent !== 'transcription') {
    return { ok: false, message: "Missing required parameter: 'model' (or 'intent=transcription')." };
  }
  return { ok: true, search: u.search, model, intent };
}

/** Subprotocols offered by the client, without the one that carries its key. */
export function offeredProtocols(headers: IncomingHeaders): string[] {
  const raw = headers['sec-websocket-protocol'];
  const joined = Array.isArray(raw) ? raw.join(',') : (raw ?? '');
  return joined
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '' && !p.startsWith(KEY_SUBPROTOCOL_PREFIX));
}

export interface RealtimeTarget {
  url: string;
  headers: Record<string, string>;
  protocols: string[];
}

/**
 * `<baseUrl>/realtime?<same query>` with the account's bearer. The client's key never travels:
 * `authorization` is rebuilt and the key subprotocol is dropped; `OpenAI-Beta` passes through
 * because the beta protocol (`realtime=v1`) differs from GA and only the client knows which it speaks.
 */
export function realtimeTarget(account: AccountConfig, client: IncomingHeaders, search: string): RealtimeTarget {
  const headers: Record<string, string> = { ...passThroughHeaders(client), authorization: `Bearer ${account.apiKey}` };
  const beta = client['openai-beta'];
  if (beta !== undefined) headers['openai-beta'] = Array.isArray(beta) ? beta.join(', ') : beta;
  return { url: wsUrl(account, '/realtime', search), headers, protocols: offeredProtocols(client) };
}

/** What an upstream server event says about the account. */
export type HealthSignal =
  | { kind: 'failure'; failure: UpstreamFailure }
  | { kind: 'exhausted'; untilMs: number }
  | { kind: 'success' };

/** Health events are small; bigger text frames (audio deltas, response.done) are never parsed. */
export const MAX_INSPECTED_BYTES = 16 * 1024;
const ERROR_MARK = Buffer.from('"error"');
const RATE_LIMITS_MARK = Buffer.from('rate_limits.updated');
const DONE_TYPE = Buffer.from('"type":"response.done"');
const COMPLETED_STATUS = Buffer.from('"status":"completed"');
/** Where an event's own `type` can be: first, or after an `event_id` (OpenAI sends either order). */
const TYPE_WINDOW_BYTES = 96;
/** How far into a `response.done` the response's status is looked for. */
const STATUS_WINDOW_BYTES = 512;

/**
 * `response.done` whose response status is `completed`, read from the frame's head only: every
 * other frame costs one search of its first 96 bytes.
 */
function isCompletedResponseDone(data: Buffer): boolean {
  if (data.subarray(0, TYPE_WINDOW_BYTES).indexOf(DONE_TYPE) === -1) return false;
  return data.subarray(0, STATUS_WINDOW_BYTES).indexOf(COMPLETED_STATUS) !== -1;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * A text frame that may be an `error` event, the only kind an upstream quotes a credential in.
 * Error events are small: bigger frames (audio deltas, response.done) are never searched.
 */
export function mayCarryError(data: Buffer, isBinary: boolean): boolean {
  return !isBinary && data.length <= MAX_INSPECTED_BYTES && data.includes(ERROR_MARK);
}

/**
 * `error` events with a rate-limit/server/auth code, and `rate_limits.updated` with a limit at
 * remaining 0 (cooldown until its reset); a completed `response.done` is a success. Cheap on the
 * hot path: a byte search rules out almost every frame before any JSON parse, and `response.done`
 * (large: it carries the whole response) is recognised from its head, never parsed.
 * `maybeError` is mayCarryError's answer when the caller already has it (the frame is searched once).
 */
export function inspectUpstreamEvent(data: Buffer, isBinary: boolean, nowMs: number, maybeError = mayCarryError(data, isBinary)): HealthSignal | null {
  if (isBinary) return null;
  if (isCompletedResponseDone(data)) return { kind: 'success' };
  if (data.length > MAX_INSPECTED_BYTES) return null;
  if (!maybeError && !data.includes(RATE_LIMITS_MARK)) return null;
  let ev: unknown;
  try {
    ev = JSON.parse(data.toString('utf8'));
  } catch {
    return null;
  }
  if (!isObject(ev)) return null;
  if (ev.type === 'error' && isObject(ev.error)) {
    const e = ev.error;
    const status = typeof e.status === 'number' ? e.status : typeof ev.status === 'number' ? ev.status : null;
    const failure = classifyErrorEvent(status, str(e.code), str(e.type));
    return failure.action.kind === 'none' ? null : { kind: 'failure', failure };
  }
  if (ev.type === 'rate_limits.updated' && Array.isArray(ev.rate_limits)) {
    let untilMs: number | null = null;
    for (const l of ev.rate_limits) {
      if (!isObject(l) || l.remaining !== 0) continue;
      const resetMs = typeof l.reset_seconds === 'number' && l.reset_seconds > 0 ? l.reset_seconds * 1000 : 0;
      untilMs = Math.max(untilMs ?? 0, nowMs + resetMs);
    }
    return untilMs === null ? null : { kind: 'exhausted', untilMs };
  }
  return null;
}

/** Codes a peer may be sent (`ws` throws on the rest: 1004, 1005, 1006, 1015, out of range). */
export function isSendableCloseCode(code: number): boolean {
  return (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999);
}

/**
 * The client's close code for an upstream close. 1005 (closed without a status) is a normal end;
 * 1006 (dropped) is an internal error, or 1013 when the account had just reported it is rate
 * limited, so the client knows retrying later may help.
 */
export function clientCloseCode(upstreamCode: number, rateLimited: boolean): number {
  if (isSendableCloseCode(upstreamCode)) return upstreamCode;
  if (upstreamCode === 1005) return 1000;
  return rateLimited ? 1013 : 1011;
}

/** The upstream's close code for a client close: a client that just drops TCP (1006) is normal. */
export function upstreamCloseCode(clientCode: number): number {
  return isSendableCloseCode(clientCode) ? clientCode : 1000;
}

/** Close reasons are limited to 123 bytes of UTF-8; cut on a character boundary. */
export function closeReason(reason: string): string {
  let r = reason;
  while (Buffer.byteLength(r) > 123) r = r.slice(0, -1);
  return r;
}
