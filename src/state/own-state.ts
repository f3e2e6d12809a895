// What one instance holds in a StateStore. Both stores keep this locally so that the heartbeat
// (renewLeases) and shutdown (releaseAllOwnLeases) touch exactly this instance's entries and never
// need to scan the shared state or guess which entries belong to whom.
import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';

/** Separates the owner from the lease id inside a stored lease member. Not allowed in instance ids. */
export const OWNER_SEPARATOR = '|';

/** The stored identity of a lease: the owner is part of it, so no other instance can remove it. */
export function leaseMember(instanceId: string, leaseId: string): string {
  return `${instanceId}${OWNER_SEPARATOR}${leaseId}`;
}

export function defaultInstanceId(): string {
  return `${hostname()}-${process.pid}-${randomUUID().slice(0, 8)}`;
}

/** Instance ids end up inside lease members, so they must not contain the separator. */
export function checkInstanceId(instanceId: string): string {
  if (instanceId.length === 0 || instanceId.includes(OWNER_SEPARATOR)) {
    throw new Error(`instanceId must be non-empty and must not contain '${OWNER_SEPARATOR}'`);
  }
  return instanceId;
}

export interface OwnLeases {
  /** The limit the leases were taken under; the heartbeat uses it to re-assert a lost lease. */
  max: number;
  ids: Set<string>;
}

/**
 * Local book of this instance's leases and waiting counts. It is updated when the caller lets go
 * even if the backend call fails, so a lost release is never renewed and expires within the TTL.
 */
export class OwnState {
  readonly leases = new Map<string, OwnLeases>();
  readonly waiting = new Map<string, number>();

  addLease(accountId: string, leaseId: string, max: number): void {
    const entry = this.leases.get(accountId);
    if (entry) {
      entry.max = max;
      entry.ids.add(leaseId);
    } else {
      this.leases.set(accountId, { max, ids: new Set([leaseId]) });
    }
  }

  dropLease(accountId: string, leaseId: string): void {
    const entry = this.leases.get(accountId);
    if (!entry) return;
    entry.ids.delete(leaseId);
    if (entry.ids.size === 0) this.leases.delete(accountId);
  }

  addWaiting(accountId: string): void {
    this.waiting.set(accountId, (this.waiting.get(accountId) ?? 0) + 1);
  }

  dropWaiting(accountId: string): void {
    const n = this.waiting.get(accountId) ?? 0;
    if (n <= 1) this.waiting.delete(accountId);
    else this.waiting.set(accountId, n - 1);
  }

  clear(): void {
    this.leases.clear();
    this.waiting.clear();
  }
}
