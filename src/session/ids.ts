// Ids of client sessions, for logs and metrics (not secret).
import { randomUUID } from 'node:crypto';

/**
 * A random UUID in one flat string. `randomUUID()` returns the UUID as a rope of 14 string pieces
 * (about 450 bytes of heap); a session keeps its id for as long as it lives, so it keeps a flat
 * copy (about 56 bytes) instead.
 */
export function newSessionId(): string {
  return Buffer.from(randomUUID(), 'latin1').toString('latin1');
}
