// The ResilientStore's book of which backend granted each lease and counted each waiter: a lease
// is released, and a waiter uncounted, where it was taken, whichever backend serves calls now.
import { loadRate } from './load.js';
import type { AccountRef, AccountSnapshot } from './store.js';

export type Backend = 'primary' | 'fallback';

export class BackendLedger {
  /** accountId → leaseId → the backend that granted it. */
  private readonly leases = new Map<string, Map<string, Backend>>();
  private readonly waits = new Map<string, Record<Backend, number>>();

  leaseBackend(accountId: string, leaseId: string): Backend | undefined {
    return this.leases.get(accountId)?.get(leaseId);
  }

  hold(accountId: string, leaseId: string, backend: Backend): void {
    let leases = this.leases.get(accountId);
    if (!leases) this.leases.set(accountId, (leases = new Map()));
    leases.set(leaseId, backend);
  }

  unhold(accountId: string, leaseId: string): void {
    const leases = this.leases.get(accountId);
    leases?.delete(leaseId);
    if (leases?.size === 0) this.leases.delete(accountId);
  }

  /** Leases this instance holds on the account, on one backend or (no argument) on both. */
  held(accountId: string, backend?: Backend): number {
    const leases = this.leases.get(accountId);
    if (!leases || backend === undefined) return leases?.size ?? 0;
    let n = 0;
    for (const b of leases.values()) if (b === backend) n++;
    return n;
  }

  addWaiter(accountId: string, backend: Backend): void {
    const w = this.waits.get(accountId) ?? { primary: 0, fallback: 0 };
    w[backend]++;
    this.waits.set(accountId, w);
  }

  /** Uncounts one waiter, preferring the shared backend; undefined when none is counted. */
  dropWaiter(accountId: string): Backend | undefined {
    const w = this.waits.get(accountId);
    if (!w) return undefined;
    const backend: Backend = w.primary > 0 ? 'primary' : 'fallback';
    w[backend]--;
    if (w.primary === 0 && w.fallback === 0) this.waits.delete(accountId);
    return backend;
  }

  waiters(accountId: string, backend: Backend): number {
    return this.waits.get(accountId)?.[backend] ?? 0;
  }

  clear(): void {
    this.leases.clear();
    this.waits.clear();
  }

  /** Adds what this instance holds on `other`, which a snapshot of one backend cannot see. */
  withOwn(snap: AccountSnapshot[], accounts: readonly AccountRef[], other: Backend): AccountSnapshot[] {
    for (let i = 0; i < accounts.length; i++) {
      const { id, max } = accounts[i];
      const leases = this.held(id, other);
      const waiting = this.waiters(id, other);
      const s = snap[i];
      if (!s || (leases === 0 && waiting === 0)) continue;
      const inflight = s.inflight + leases;
      const w = s.waiting + waiting;
      snap[i] = { ...s, inflight, waiting: w, loadRate: loadRate(inflight, w, max) };
    }
    return snap;
  }
}
