// Ids of client sessions, for logs and metrics (not secret), and the flat copies long-lived ids
// are kept as.
import { randomUUID } from 'node:crypto';

/**
 * A string of its own, in one flat piece: not a view of a longer string (a `slice` or regex
 * capture keeps its whole parent alive) nor a rope of pieces. For strings kept long: ids, cached
 * event types.
 */
export function ownCopy(s: string): string {
  return Buffer.from(s, 'utf8').toString('utf8');
}

/**
 * A random UUID in one flat string. `randomUUID()` returns the UUID as a rope of 14 string pieces
 * (about 450 bytes of heap); a session keeps its id for as long as it lives, so it keeps a flat
 * copy (about 56 bytes) instead.
 */
export function newSessionId(): string {
  return ownCopy(randomUUID());
}
