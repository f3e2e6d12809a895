// Pure classification of upstream Responses events (SPEC §6). The hot path: called once per
// forwarded frame, so the common case (deltas) reads only the `type` near the start of the frame,
// never parses the JSON and allocates nothing but the type string; frames that carry a response
// id have it read from their head; only `error` and `response.failed` (or frames whose id is not
// where OpenAI puts it) are parsed.

import { ownCopy } from './ids.js';

export type Outcome = 'completed' | 'failed' | 'incomplete' | 'cancelled' | 'error';

/** Shared between calls for plain events: treat as read-only. */
export interface ClassifiedEvent {
  type: string;
  /** Ends the turn. */
  terminal: boolean;
  /** Counts as output for TTFT (anything a model produced, not lifecycle notices). */
  output: boolean;
  outcome: Outcome | null;
  /** Response id, when the event carries one (created / completed / failed / …). */
  responseId: string | null;
  /**
   * The id was not read (classifyEvent's `deferId`): it sits in the event's head, and
   * `deferredResponseId` reads it once the frame is on its way.
   */
  idDeferred: boolean;
  /** For `error` events and failed responses. */
  error: {
    status: number | null;
    code: string | null;
    type: string | null;
    message: string | null;
    /** Response headers an `error` frame carries (WS rate limits put their reset times here). */
    headers: Record<string, string> | null;
  } | null;
}

const TERMINAL: Record<string, Outcome> = {
  'response.completed': 'completed',
  'response.failed': 'failed',
  'response.incomplete': 'incomplete',
  'response.cancelled': 'cancelled',
  error: 'error',
};
const LIFECYCLE = new Set(['response.created', 'response.in_progress', 'response.queued']);

const TYPE_KEY = Buffer.from('"type":"');
const HEAD_BYTES = 256;
const TYPE_MAX_BYTES = 128;

/** Types seen on the wire are few; past this many the caches stop growing (odd upstreams). */
const CACHE_MAX = 256;
const typeStrings = new Map<number, string>();

/** The type's bytes as a string, the same string every time: reading a type allocates nothing. */
function typeString(frame: Buffer, start: number, close: number): string {
  let h = 0x811c9dc5;
  for (let i = start; i < close; i++) h = Math.imul(h ^ frame[i], 0x01000193);
  const known = typeStrings.get(h);
  if (known !== undefined && known.length === close - start) {
    let same = true;
    for (let i = 0; i < known.length && same; i++) same = known.charCodeAt(i) === frame[start + i];
    if (same) return known;
  }
  const s = frame.toString('latin1', start, close);
  if (typeStrings.size < CACHE_MAX) typeStrings.set(h, s);
  return s;
}

/** `{"type":"` at the very start, as OpenAI sends every event: checked without a native call. */
function typeKeyLeads(frame: Buffer): boolean {
  if (frame.length <= TYPE_KEY.length || frame[0] !== 0x7b) return false;
  for (let i = 0; i < TYPE_KEY.length; i++) if (frame[1 + i] !== TYPE_KEY[i]) return false;
  return true;
}

/** Reads the top-level `type` from the first bytes; null when it is not where OpenAI puts it. */
export function peekType(frame: Buffer): string | null {
  let at = 1;
  if (!typeKeyLeads(frame)) {
    at = frame.indexOf(TYPE_KEY);
    if (at < 0 || at > Math.min(frame.length, HEAD_BYTES)) return null;
    // Only trust a key at nesting depth 1: count braces before it.
    let depth = 0;
    for (let i = 0; i < at; i++) {
      const c = frame[i];
      if (c === 0x7b) depth++;
      else if (c === 0x7d) depth--;
      else if (c === 0x22) return null; // a string before "type": a different key came first; parse instead
    }
    if (depth !== 1) return null;
  }
  const start = at + TYPE_KEY.length;
  const limit = Math.min(frame.length, start + TYPE_MAX_BYTES + 1);
  let close = start;
  while (close < limit && frame[close] !== 0x22) close++;
  if (close === limit) return null;
  return typeString(frame, start, close);
}

const TYPE_KEY_TEXT = '"type":"';

/** peekType for an event already decoded to text (SSE `data:`), so it is not re-encoded. */
export function peekTypeText(data: string): string | null {
  const at = data.indexOf(TYPE_KEY_TEXT);
  if (at < 0 || at > Math.min(data.length, HEAD_BYTES)) return null;
  let depth = 0;
  for (let i = 0; i < at; i++) {
    const c = data.charCodeAt(i);
    if (c === 0x7b) depth++;
    else if (c === 0x7d) depth--;
    else if (c === 0x22) return null;
  }
  if (depth !== 1) return null;
  const start = at + TYPE_KEY_TEXT.length;
  const close = data.indexOf('"', start);
  if (close < 0 || close - start > TYPE_MAX_BYTES) return null;
  return data.slice(start, close);
}

/** An escaped id is left to the parser, which alone decodes it right. */
const ID_RE = /"response"\s*:\s*\{\s*"id"\s*:\s*"([^"\\]+)"/;
const ID_HEAD = 1024;

type Frame = Buffer | string;

/**
 * The top-level response id when it leads the `response` object near the start, else null.
 * The id is kept for an hour (response bindings, the upstream socket's chain set), so it is copied
 * out: a regex capture is a slice of the head it was found in (of the whole event, for SSE text)
 * and would keep all of it alive.
 */
function headResponseId(frame: Frame): string | null {
  const head = typeof frame === 'string' ? frame.slice(0, ID_HEAD) : frame.toString('utf8', 0, Math.min(frame.length, ID_HEAD));
  const id = ID_RE.exec(head)?.[1];
  return id === undefined ? null : ownCopy(id);
}


/** A JSON object (never an array or a scalar), or null for anything else or bad JSON. */
export function parseObject(frame: Frame): Record<string, unknown> | null {
  try {
    const v: unknown = JSON.parse(typeof frame === 'string' ? frame : frame.toString('utf8'));
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

export const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);
const obj = (v: unknown): Record<string, unknown> | null =>
  v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : null;

function errorOf(ev: Record<string, unknown>, type: string): ClassifiedEvent['error'] {
  if (type === 'error') {
    const e = obj(ev.error) ?? ev;
    const status = typeof ev.status === 'number' ? ev.status : typeof ev.status_code === 'number' ? ev.status_code : null;
    const h = obj(ev.headers);
    const headers = h ? Object.fromEntries(Object.entries(h).filter((kv): kv is [string, string] => typeof kv[1] === 'string').map(([k, v]) => [k.toLowerCase(), v])) : null;
    return { status, code: str(e.code), type: str(e.type), message: str(e.message), headers };
  }
  const e = obj(obj(ev.response)?.error);
  return e ? { status: null, code: str(e.code), type: str(e.type), message: str(e.message), headers: null } : null;
}

/** Only error events (`error`, a failed response) can quote an upstream credential back. */
export function carriesError(ev: ClassifiedEvent): boolean {
  return ev.error !== null || ev.outcome === 'error';
}

const UNKNOWN: ClassifiedEvent = { type: '', terminal: false, output: false, outcome: null, responseId: null, idDeferred: false, error: null };

const plainCache = new Map<string, ClassifiedEvent>();

/** A delta-like event: one shared, frozen result per type, so deltas allocate nothing. */
function plainEvent(type: string): ClassifiedEvent {
  let ev = plainCache.get(type);
  if (ev === undefined) {
    // Cached for good: a type sliced from SSE text must not keep that event's text alive.
    type = ownCopy(type);
    ev = Object.freeze({ type, terminal: false, output: type.startsWith('response.'), outcome: null, responseId: null, idDeferred: false, error: null });
    if (plainCache.size < CACHE_MAX) plainCache.set(type, ev);
  }
  return ev;
}

const deferredCache = new Map<string, ClassifiedEvent>();

/** A lifecycle or completed event whose id is left to deferredResponseId: shared and frozen, like plainEvent's. */
function deferredEvent(type: string, outcome: Outcome | null): ClassifiedEvent {
  let ev = deferredCache.get(type);
  if (ev === undefined) {
    ev = Object.freeze({ type, terminal: outcome !== null, output: false, outcome, responseId: null, idDeferred: true, error: null });
    // Only the five lifecycle and completed types reach here: the cache cannot grow past them.
    deferredCache.set(type, ev);
  }
  return ev;
}

/**
 * Classifies one upstream frame. `needId`: the caller does not know this turn's response id yet,
 * so a terminal event must yield it even if that costs a parse. `deferId`: the id of a lifecycle
 * or completed event is not read now (`idDeferred`); everything needed to decide whether and how
 * to forward the frame is.
 */
export function classifyEvent(frame: Buffer, needId = true, deferId = false): ClassifiedEvent {
  return classify(frame, peekType(frame), needId, deferId);
}

/**
 * The id classifyEvent left unread (`idDeferred`), read as classifyEvent would have: from the
 * head, else parsed — for a completed event only when `needId`.
 */
export function deferredResponseId(frame: Buffer, ev: ClassifiedEvent, needId: boolean): string | null {
  const id = headResponseId(frame);
  if (id !== null || (ev.terminal && !needId)) return id;
  return str(obj(parseObject(frame)?.response)?.id);
}

/** classifyEvent for an event already decoded to text (SSE `data:`). */
export function classifyEventText(data: string, needId = true): ClassifiedEvent {
  return classify(data, peekTypeText(data), needId);
}

function classify(frame: Frame, peeked: string | null, needId: boolean, deferId = false): ClassifiedEvent {
  let type = peeked;
  let parsed: Record<string, unknown> | null = null;
  if (type === null) {
    parsed = parseObject(frame);
    if (!parsed) return UNKNOWN;
    type = str(parsed.type) ?? '';
  }
  const outcome = TERMINAL[type] ?? null;
  if (outcome === null && !LIFECYCLE.has(type)) return plainEvent(type);
  if (deferId && parsed === null && (outcome === null || type === 'response.completed' || type === 'response.incomplete')) {
    return deferredEvent(type, outcome);
  }
  if (type === 'response.completed' || type === 'response.incomplete') {
    // Large (they carry the whole output): the id is read from the head without parsing.
    let responseId = headResponseId(frame);
    if (!responseId && needId) {
      parsed ??= parseObject(frame);
      responseId = str(obj(parsed?.response)?.id);
    }
    return { type, terminal: true, output: false, outcome, responseId, idDeferred: false, error: null };
  }
  if (outcome === null) {
    // Lifecycle notices carry the whole response object too; they never carry an error.
    let responseId = parsed ? str(obj(parsed.response)?.id) : headResponseId(frame);
    if (responseId === null && !parsed) {
      parsed = parseObject(frame);
      responseId = parsed ? str(obj(parsed.response)?.id) : null;
    }
    return { type, terminal: false, output: false, outcome: null, responseId, idDeferred: false, error: null };
  }
  parsed ??= parseObject(frame);
  const responseId = parsed ? str(obj(parsed.response)?.id) : null;
  return {
    type,
    terminal: true,
    output: false,
    outcome,
    responseId,
    idDeferred: false,
    error: parsed && (type === 'error' || type === 'response.failed') ? errorOf(parsed, type) : null,
  };
}
