// The embedded StateStore: everything lives in this process. TTLs are evaluated against the injected
// clock when an entry is read, and a periodic sweep (unref'd) drops expired entries so the maps stay
// bounded even for keys nobody reads again. Binding maps also have a hard entry cap.
import { systemClock, type Clock } from '../clock.js';
import {
  NO_FLAGS,
  StoreUnavailableError,
  type AccountFlags,
  type AccountRef,
  type AccountSnapshot,
  type CooldownReason,
  type StateStore,
} from './store.js';
import { liveFlags, loadRate, type RawFlags } from './load.js';
import { OwnState, checkInstanceId, defaultInstanceId, leaseMember } from './own-state.js';

export const DEFAULT_LEASE_TTL_MS = 30_000;
/** Per binding namespace (sessions, responses); the oldest-written entry is evicted past it. */
export const DEFAULT_MAX_BINDINGS = 100_000;
export const DEFAULT_SWEEP_INTERVAL_MS = 60_000;

interface Binding {
  accountId: string;
  expiresAtMs: number;
}

interface WaitEntry {
  n: number;
  expiresAtMs: number;
}

/**
 * The data of a memory store. Each MemoryStore gets its own by default; several stores built on one
 * backend behave like several instances sharing one Redis (used by the contract suite and by
 * in-process simulations of a multi-instance deployment).
 */
export class MemoryBackend {
  readonly sessions = new Map<string, Binding>();
  readonly responses = new Map<string, Binding>();
  /** accountId → lease member (owner|leaseId) → expiry. */
  readonly leases = new Map<string, Map<string, number>>();
  /** accountId → instanceId → that instance's waiting count. */
  readonly waiting = new Map<string, Map<string, WaitEntry>>();
  readonly flags = new Map<string, AccountFlags>();
}

export interface MemoryStoreOptions {
  clock?: Clock;
  instanceId?: string;
  leaseTtlMs?: number;
  /** Share state with other MemoryStores (multi-instance simulation); default: a private backend. */
  backend?: MemoryBackend;
  maxBindings?: number;
  sweepIntervalMs?: number;
}

export class MemoryStore implements StateStore {
  readonly kind = 'memory' as const;
  readonly instanceId: string;
  readonly backend: MemoryBackend;
  private readonly clock: Clock;
  private readonly leaseTtlMs: number;
  private readonly maxBindings: number;
  private readonly own = new OwnState();
  private sweepTimer: NodeJS.Timeout | null;
  private closed = false;

  constructor(opts: MemoryStoreOptions = {}) {
    this.clock = opts.clock ?? systemClock;
    this.instanceId = checkInstanceId(opts.instanceId ?? defaultInstanceId());
    this.leaseTtlMs = opts.leaseTtlMs ?? DEFAULT_LEASE_TTL_MS;
    this.maxBindings = opts.maxBindings ?? DEFAULT_MAX_BINDINGS;
    this.backend = opts.backend ?? new MemoryBackend();
    this.sweepTimer = setInterval(() => this.sweep(), opts.sweepIntervalMs ?? DEFAULT_SWEEP_INTERVAL_MS);
    this.sweepTimer.unref();
  }

  // Sticky session bindings.

  async getSessionBinding(group: string, sessionHash: string): Promise<string | null> {
    return this.getBinding(this.backend.sessions, bindingKey(group, sessionHash));
  }

  async setSessionBinding(group: string, sessionHash: string, accountId: string, ttlMs: number): Promise<void> {
    this.setBinding(this.backend.sessions, bindingKey(group, sessionHash), accountId, ttlMs);
  }

  async refreshSessionBinding(group: string, sessionHash: string, ttlMs: number): Promise<boolean> {
    const key = bindingKey(group, sessionHash);
    const accountId = this.getBinding(this.backend.sessions, key);
    if (accountId === null) return false;
    this.setBinding(this.backend.sessions, key, accountId, ttlMs);
    return true;
  }

  async deleteSessionBinding(group: string, sessionHash: string): Promise<void> {
    this.guard();
    this.backend.sessions.delete(bindingKey(group, sessionHash));
  }

  // Response bindings.

  async getResponseBinding(group: string, responseId: string): Promise<string | null> {
    return this.getBinding(this.backend.responses, bindingKey(group, responseId));
  }

  async setResponseBinding(group: string, responseId: string, accountId: string, ttlMs: number): Promise<void> {
    this.setBinding(this.backend.responses, bindingKey(group, responseId), accountId, ttlMs);
  }

  // Concurrency slots.

  async acquireSlot(accountId: string, leaseId: string, max: number): Promise<boolean> {
    this.guard();
    return this.acquireAt(accountId, leaseId, max, this.clock.now());
  }

  acquireSlotNow(accountId: string, leaseId: string, max: number): { flags: AccountFlags; granted: boolean } {
    this.guard();
    const now = this.clock.now();
    return { flags: this.flagsOf(accountId, now), granted: this.acquireAt(accountId, leaseId, max, now) };
  }

  async releaseSlot(accountId: string, leaseId: string): Promise<void> {
    this.guard();
    this.own.dropLease(accountId, leaseId);
    const leases = this.backend.leases.get(accountId);
    leases?.delete(leaseMember(this.instanceId, leaseId));
    if (leases?.size === 0) this.backend.leases.delete(accountId);
  }

  async slotCount(accountId: string): Promise<number> {
    this.guard();
    return this.countLive(accountId, this.clock.now());
  }

  async renewLeases(): Promise<void> {
    this.guard();
    const now = this.clock.now();
    const expiresAtMs = now + this.leaseTtlMs;
    for (const [accountId, own] of this.own.leases) {
      const leases = this.liveLeases(accountId, now);
      for (const leaseId of own.ids) {
        const member = leaseMember(this.instanceId, leaseId);
        // A lease that lapsed (a stalled heartbeat) is re-asserted while there is room: its turn
        // is still running, so counting it again is the truth. Without room it is lost for good.
        if (leases.has(member) || leases.size < own.max) leases.set(member, expiresAtMs);
        else this.own.dropLease(accountId, leaseId);
      }
    }
    for (const [accountId, n] of this.own.waiting) {
      const entries = this.waitEntries(accountId);
      const entry = entries.get(this.instanceId);
      // A lapsed own count is restored from the local book, which is the truth for this instance.
      const current = entry && entry.expiresAtMs > now ? entry.n : n;
      entries.set(this.instanceId, { n: current, expiresAtMs });
    }
  }

  async releaseAllOwnLeases(): Promise<void> {
    this.guard();
    for (const [accountId, own] of this.own.leases) {
      const leases = this.backend.leases.get(accountId);
      for (const leaseId of own.ids) leases?.delete(leaseMember(this.instanceId, leaseId));
      if (leases?.size === 0) this.backend.leases.delete(accountId);
    }
    // Waiters of a shutting-down instance are gone with it; only this instance's counts go.
    for (const accountId of this.own.waiting.keys()) this.backend.waiting.get(accountId)?.delete(this.instanceId);
    this.own.clear();
  }

  // Waiting counters: one count per instance, so a dead instance's waiters expire with it. An
  // instance's decrement lowers its own count only (its waiters are in its own process).

  async incrementWaiting(accountId: string, max: number): Promise<boolean> {
    this.guard();
    const now = this.clock.now();
    if (this.totalWaiting(accountId, now) >= max) return false;
    const entries = this.waitEntries(accountId);
    const entry = entries.get(this.instanceId);
    const n = entry && entry.expiresAtMs > now ? entry.n : 0;
    entries.set(this.instanceId, { n: n + 1, expiresAtMs: now + this.leaseTtlMs });
    this.own.addWaiting(accountId);
    return true;
  }

  async decrementWaiting(accountId: string): Promise<void> {
    this.guard();
    this.own.dropWaiting(accountId);
    const now = this.clock.now();
    const entries = this.backend.waiting.get(accountId);
    const entry = entries?.get(this.instanceId);
    if (!entries || !entry) return;
    if (entry.expiresAtMs <= now || entry.n <= 1) entries.delete(this.instanceId);
    else entries.set(this.instanceId, { n: entry.n - 1, expiresAtMs: now + this.leaseTtlMs });
    if (entries.size === 0) this.backend.waiting.delete(accountId);
  }

  async snapshot(accounts: readonly AccountRef[]): Promise<AccountSnapshot[]> {
    this.guard();
    const now = this.clock.now();
    const out = new Array<AccountSnapshot>(accounts.length);
    for (let i = 0; i < accounts.length; i++) {
      const { id, max } = accounts[i];
      const inflight = this.countLive(id, now);
      const waiting = this.totalWaiting(id, now);
      out[i] = { inflight, waiting, loadRate: loadRate(inflight, waiting, max), flags: this.flagsOf(id, now) };
    }
    return out;
  }

  // Shared account flags.

  async setCooldown(accountId: string, untilMs: number, reason: CooldownReason): Promise<void> {
    this.updateFlags(accountId, { cooldownUntilMs: untilMs, cooldownReason: reason });
  }

  async clearCooldown(accountId: string): Promise<void> {
    this.updateFlags(accountId, { cooldownUntilMs: 0, cooldownReason: null });
  }

  async setDisabled(accountId: string, disabled: boolean): Promise<void> {
    this.updateFlags(accountId, { disabled });
  }

  async setWsUnsupported(accountId: string, untilMs: number): Promise<void> {
    this.updateFlags(accountId, { wsUnsupportedUntilMs: untilMs });
  }

  async getFlags(accountId: string): Promise<AccountFlags> {
    this.guard();
    return this.flagsOf(accountId, this.clock.now());
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = null;
  }

  /** Drops every expired entry of the backend. Runs on the sweep timer; safe to call any time. */
  sweep(): void {
    const now = this.clock.now();
    // Map order is write order and a namespace's TTL is fixed, so the expired bindings are the
    // oldest: stop at the first live one instead of walking up to maxBindings entries every
    // minute. (After a reload that shortens a TTL, entries behind a longer-lived one wait for a
    // later sweep; reads already treat them as expired, and maxBindings still bounds the map.)
    for (const map of [this.backend.sessions, this.backend.responses]) {
      for (const [key, b] of map) {
        if (b.expiresAtMs > now) break;
        map.delete(key);
      }
    }
    for (const accountId of [...this.backend.leases.keys()]) {
      if (this.liveLeases(accountId, now).size === 0) this.backend.leases.delete(accountId);
    }
    for (const accountId of [...this.backend.waiting.keys()]) this.totalWaiting(accountId, now);
    for (const [accountId, raw] of this.backend.flags) {
      const flags = liveFlags(rawOf(raw), now);
      if (!flags.disabled && flags.cooldownUntilMs === 0 && flags.wsUnsupportedUntilMs === 0) {
        this.backend.flags.delete(accountId);
      }
    }
  }

  private guard(): void {
    if (this.closed) throw new StoreUnavailableError('memory store is closed');
  }

  private getBinding(map: Map<string, Binding>, key: string): string | null {
    this.guard();
    const b = map.get(key);
    if (!b) return null;
    if (b.expiresAtMs > this.clock.now()) return b.accountId;
    map.delete(key);
    return null;
  }

  private setBinding(map: Map<string, Binding>, key: string, accountId: string, ttlMs: number): void {
    this.guard();
    // Re-inserting moves the key to the end, so Map order is write order and eviction drops the
    // entry written longest ago.
    map.delete(key);
    if (map.size >= this.maxBindings) {
      const oldest = map.keys().next();
      if (!oldest.done) map.delete(oldest.value);
    }
    map.set(key, { accountId, expiresAtMs: this.clock.now() + ttlMs });
  }

  /** The account's lease map (member → expiry), created empty on first use. */
  private leaseMap(accountId: string): Map<string, number> {
    let leases = this.backend.leases.get(accountId);
    if (!leases) {
      leases = new Map();
      this.backend.leases.set(accountId, leases);
    }
    return leases;
  }

  /** The account's lease map with expired leases (owners that stopped renewing) removed. */
  private liveLeases(accountId: string, now: number): Map<string, number> {
    const leases = this.leaseMap(accountId);
    for (const [member, expiresAtMs] of leases) if (expiresAtMs <= now) leases.delete(member);
    return leases;
  }

  /**
   * Expired leases are only looked for when the account looks full: below `max` entries there is
   * room whatever their age, and the sweep drops them anyway. (Scanning on every acquire cost one
   * pass over the account's in-flight turns per turn: 125 of them per account at 1,000 sessions.)
   */
  private acquireAt(accountId: string, leaseId: string, max: number, now: number): boolean {
    const leases = this.leaseMap(accountId);
    const member = leaseMember(this.instanceId, leaseId);
    if (!leases.has(member) && leases.size >= max && this.liveLeases(accountId, now).size >= max) return false;
    leases.set(member, now + this.leaseTtlMs);
    this.own.addLease(accountId, leaseId, max);
    return true;
  }

  private countLive(accountId: string, now: number): number {
    const leases = this.backend.leases.get(accountId);
    if (!leases) return 0;
    let n = 0;
    for (const expiresAtMs of leases.values()) if (expiresAtMs > now) n++;
    return n;
  }

  private waitEntries(accountId: string): Map<string, WaitEntry> {
    let entries = this.backend.waiting.get(accountId);
    if (!entries) {
      entries = new Map();
      this.backend.waiting.set(accountId, entries);
    }
    return entries;
  }

  /** Sum of unexpired per-instance counts; drops expired ones on the way. */
  private totalWaiting(accountId: string, now: number): number {
    const entries = this.backend.waiting.get(accountId);
    if (!entries) return 0;
    let total = 0;
    for (const [instanceId, e] of entries) {
      if (e.expiresAtMs > now) total += e.n;
      else entries.delete(instanceId);
    }
    if (entries.size === 0) this.backend.waiting.delete(accountId);
    return total;
  }

  private flagsOf(accountId: string, now: number): AccountFlags {
    const raw = this.backend.flags.get(accountId);
    return raw ? liveFlags(rawOf(raw), now) : NO_FLAGS;
  }

  private updateFlags(accountId: string, patch: Partial<AccountFlags>): void {
    this.guard();
    const current = this.backend.flags.get(accountId) ?? { ...NO_FLAGS };
    this.backend.flags.set(accountId, { ...current, ...patch });
  }
}

function bindingKey(group: string, id: string): string {
  // JSON keeps (group, id) pairs distinct even when either contains a separator character.
  return JSON.stringify([group, id]);
}

function rawOf(flags: AccountFlags): RawFlags {
  return {
    cooldownUntil: flags.cooldownUntilMs,
    cooldownReason: flags.cooldownReason,
    disabled: flags.disabled,
    wsUnsupportedUntil: flags.wsUnsupportedUntilMs,
  };
}
