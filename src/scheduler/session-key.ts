// Pure session key derivation (SPEC §5). The key itself may be user-chosen text, so only its hash
// (salted with the client's group, so two groups never share a binding) leaves this module.
import { createHash } from 'node:crypto';

/** Header names in priority order. Codex sends `session-id` and `thread-id`. */
export const SESSION_HEADERS = ['session_id', 'session-id', 'conversation_id', 'thread-id', 'x-session-id'] as const;

/** Hex characters kept from the SHA-256: 128 bits, collision-free in practice, shorter keys. */
export const SESSION_HASH_HEX_LENGTH = 32;

export type HeaderBag = Readonly<Record<string, string | readonly string[] | undefined>>;

function firstNonEmpty(value: string | readonly string[] | undefined): string | null {
  if (value === undefined) return null;
  const values = typeof value === 'string' ? [value] : value;
  for (const v of values) {
    const t = v.trim();
    if (t !== '') return t;
  }
  return null;
}

function header(headers: HeaderBag, name: string, mixedCase: boolean): string | null {
  const direct = firstNonEmpty(headers[name]);
  if (direct !== null || !mixedCase) return direct;
  // Node lower-cases incoming header names; other callers may not.
  for (const key of Object.keys(headers)) {
    if (key !== name && key.toLowerCase() === name) {
      const v = firstNonEmpty(headers[key]);
      if (v !== null) return v;
    }
  }
  return null;
}

/** The raw session key: first of the headers in order, then body `prompt_cache_key`; null when none. */
export function extractSessionKey(headers: HeaderBag, body?: unknown): string | null {
  // One look at the names instead of one per header tried (node's are all lower case already).
  let mixedCase = false;
  for (const key in headers) {
    if (key !== key.toLowerCase()) {
      mixedCase = true;
      break;
    }
  }
  for (const name of SESSION_HEADERS) {
    const v = header(headers, name, mixedCase);
    if (v !== null) return v;
  }
  if (body !== null && typeof body === 'object') {
    const key = (body as Record<string, unknown>).prompt_cache_key;
    if (typeof key === 'string' && key.trim() !== '') return key.trim();
  }
  return null;
}

/**
 * The hex of the digest's first SESSION_HASH_HEX_LENGTH / 2 bytes, encoded as one string: a
 * `.slice()` of the full hex would be a view that keeps all 64 characters alive for as long as
 * the hash lives (a session's memo, the store's sticky bindings).
 */
export function hashSessionKey(group: string, key: string): string {
  return createHash('sha256').update(group).update('\0').update(key).digest().toString('hex', 0, SESSION_HASH_HEX_LENGTH / 2);
}

/** ScheduleRequest.sessionHash for a request: hashed key, or null without a key. */
export function deriveSessionHash(group: string, headers: HeaderBag, body?: unknown): string | null {
  const key = extractSessionKey(headers, body);
  return key === null ? null : hashSessionKey(group, key);
}
