// Client authentication (SPEC §3). Keys are looked up by their SHA-256 digest, so the comparison
// never runs over the key itself and its timing says nothing about how much of a guess was right.
import { createHash } from 'node:crypto';
import type { ClientConfig } from '../config/schema.js';
import type { IncomingHeaders } from '../upstream/target.js';

export const KEY_SUBPROTOCOL_PREFIX = 'openai-insecure-api-key.';

export interface ClientIdentity {
  /** For logs and metrics: the configured name, or `key#<8 hex of the digest>`. Never the key. */
  name: string;
  group: string;
  maxConnections: number;
  /** Digest of the key: the identity used for per-key connection counts. */
  keyHash: string;
}

export function sha256Hex(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

function first(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/** The presented key: `Authorization: Bearer <key>`, else subprotocol `openai-insecure-api-key.<key>`. */
export function presentedKey(headers: IncomingHeaders): string | null {
  const auth = first(headers.authorization);
  if (auth) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
    return m ? m[1] : null;
  }
  const protos = first(headers['sec-websocket-protocol']);
  if (protos) {
    for (const p of protos.split(',')) {
      const t = p.trim();
      if (t.startsWith(KEY_SUBPROTOCOL_PREFIX) && t.length > KEY_SUBPROTOCOL_PREFIX.length) return t.slice(KEY_SUBPROTOCOL_PREFIX.length);
    }
  }
  return null;
}

export class ClientAuth {
  private readonly byDigest = new Map<string, ClientIdentity>();

  constructor(clients: readonly ClientConfig[]) {
    for (const c of clients) {
      const digest = (c.keySha256 ?? sha256Hex(c.key ?? '')).toLowerCase();
      this.byDigest.set(digest, {
        name: c.name ?? `key#${digest.slice(0, 8)}`,
        group: c.group,
        maxConnections: c.maxConnections,
        keyHash: digest,
      });
    }
  }

  authenticate(headers: IncomingHeaders): ClientIdentity | null {
    const key = presentedKey(headers);
    return key === null ? null : (this.byDigest.get(sha256Hex(key)) ?? null);
  }
}
