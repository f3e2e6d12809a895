// Degraded mode (SPEC §3, §5): a shared store (Redis) in front of a local one (memory). While the
// shared store answers, it is the truth and the local store only keeps a copy of what this instance
// knows (bindings and flags it wrote or read), so an outage does not start from nothing. When a
// shared call fails with StoreUnavailableError the instance turns degraded: that call and every
// later one are served locally at once (no call waits longer than the store timeout), and a probe
// asks the shared store every probeIntervalMs. When it answers, this instance's held leases are
// re-asserted there, the writes made locally are replayed, and new calls go back to shared state.
//
// While degraded each instance enforces every account's limit on its own, so N instances may
// together admit up to N × max. One instance alone never exceeds max: a lease is granted only while
// the leases it holds on both backends stay under the limit. A lease stays on the backend that
// granted it until released, so local leases taken during an outage stay local after recovery.
import { systemClock, type Clock } from '../clock.js';
import type { EventBus } from '../observability/events.js';
import { BackendLedger } from './backend-ledger.js';
import type { MemoryStore } from './memory-store.js';
import { PendingWrites, type PendingWrite } from './pending-writes.js';
import {
  NO_FLAGS,
  StoreUnavailableError,
  type AccountFlags,
  type AccountRef,
  type AccountSnapshot,
  type CooldownReason,
  type StateStore,
} from './store.js';

export const DEFAULT_PROBE_INTERVAL_MS = 1_000;
/** What /readyz shows; the underlying error goes to the logs only (it may name hosts). */
export const DEGRADED_REASON = 'store_unreachable';

/** A shared store that can be asked whether it answers (RedisStore). */
export interface PrimaryStore extends StateStore {
  ready(): Promise<void>;
}

export type StoreStateChange =
  | { degraded: true; op: string; error: string }
  | { degraded: false; degradedMs: number; replayed: number };

export interface ResilientStoreOptions {
  primary: PrimaryStore;
  /** Private to this instance; give it the same clock and lease TTL as the primary. */
  fallback: MemoryStore;
  /** Receives `store_error` for every shared call that failed (switchyard_store_errors_total). */
  bus?: Pick<EventBus, 'emit'>;
  clock?: Clock;
  probeIntervalMs?: number;
  /** Cap on local writes kept for replay. */
  maxPendingWrites?: number;
  /** Degraded ↔ shared transitions, for logs. */
  onStateChange?: (change: StoreStateChange) => void;
}

export class ResilientStore implements StateStore {
  readonly kind = 'redis' as const;
  readonly instanceId: string;
  private readonly primary: PrimaryStore;
  private readonly fallback: MemoryStore;
  private readonly bus: Pick<EventBus, 'emit'> | undefined;
  private readonly clock: Clock;
  private readonly probeIntervalMs: number;
  private readonly onStateChange: ((change: StoreStateChange) => void) | undefined;
  private readonly pending: PendingWrites;
  private readonly ledger = new BackendLedger();
  private degradedSince: number | null = null;
  private probeTimer: NodeJS.Timeout | null = null;
  private probeInFlight: Promise<boolean> | null = null;
  private closed = false;

  constructor(opts: ResilientStoreOptions) {
    this.primary = opts.primary;
    this.fallback = opts.fallback;
    this.instanceId = opts.primary.instanceId;
    this.bus = opts.bus;
    this.clock = opts.clock ?? systemClock;
    this.probeIntervalMs = opts.probeIntervalMs ?? DEFAULT_PROBE_INTERVAL_MS;
    this.onStateChange = opts.onStateChange;
    this.pending = new PendingWrites(opts.maxPendingWrites);
  }

  degraded(): boolean {
    return this.degradedSince !== null;
  }

  degradedReason(): string | null {
    return this.degradedSince === null ? null : DEGRADED_REASON;
  }

  /**
   * Asks the shared store now (startup, and the probe timer). Answers: recovers if degraded and
   * resolves true. No answer within the store timeout: turns degraded and resolves false.
   */
  probe(): Promise<boolean> {
    this.probeInFlight ??= this.runProbe().finally(() => (this.probeInFlight = null));
    return this.probeInFlight;
  }

  /** Connection-level failure reported by the shared store's client (refused, reset). */
  reportPrimaryError(err: Error): void {
    if (!this.closed) this.unavailable('connection', err);
  }

  // Sticky session bindings.

  getSessionBinding(group: string, sessionHash: string): Promise<string | null> {
    return this.read('getSessionBinding', (s) => s.getSessionBinding(group, sessionHash));
  }

  setSessionBinding(group: string, sessionHash: string, accountId: string, ttlMs: number): Promise<void> {
    const replay = this.replayBinding(ttlMs, (left) => this.primary.setSessionBinding(group, sessionHash, accountId, left));
    return this.write('setSessionBinding', pendingKey('sess', group, sessionHash), (s) => s.setSessionBinding(group, sessionHash, accountId, ttlMs), replay);
  }

  async refreshSessionBinding(group: string, sessionHash: string, ttlMs: number): Promise<boolean> {
    this.guard();
    if (this.degradedSince === null) {
      try {
        const refreshed = await this.primary.refreshSessionBinding(group, sessionHash, ttlMs);
        await this.fallback.refreshSessionBinding(group, sessionHash, ttlMs);
        return refreshed;
      } catch (err) {
        this.failedOrThrow('refreshSessionBinding', err);
      }
    }
    const accountId = await this.fallback.getSessionBinding(group, sessionHash);
    if (accountId === null) return false;
    await this.fallback.setSessionBinding(group, sessionHash, accountId, ttlMs);
    const replay = this.replayBinding(ttlMs, (left) => this.primary.setSessionBinding(group, sessionHash, accountId, left));
    this.pending.add(pendingKey('sess', group, sessionHash), replay);
    return true;
  }

  deleteSessionBinding(group: string, sessionHash: string): Promise<void> {
    return this.write('deleteSessionBinding', pendingKey('sess', group, sessionHash), (s) => s.deleteSessionBinding(group, sessionHash), () =>
      this.primary.deleteSessionBinding(group, sessionHash),
    );
  }

  // Response bindings.

  getResponseBinding(group: string, responseId: string): Promise<string | null> {
    return this.read('getResponseBinding', (s) => s.getResponseBinding(group, responseId));
  }

  setResponseBinding(group: string, responseId: string, accountId: string, ttlMs: number): Promise<void> {
    const replay = this.replayBinding(ttlMs, (left) => this.primary.setResponseBinding(group, responseId, accountId, left));
    return this.write('setResponseBinding', pendingKey('resp', group, responseId), (s) => s.setResponseBinding(group, responseId, accountId, ttlMs), replay);
  }

  // Concurrency slots.

  async acquireSlot(accountId: string, leaseId: string, max: number): Promise<boolean> {
    this.guard();
    const existing = this.ledger.leaseBackend(accountId, leaseId);
    if (existing === 'fallback') return this.fallback.acquireSlot(accountId, leaseId, max);
    if (existing === undefined && this.ledger.held(accountId) >= max) return false;
    if (this.degradedSince === null) {
      try {
        const granted = await this.primary.acquireSlot(accountId, leaseId, max - this.ledger.held(accountId, 'fallback'));
        if (granted) this.ledger.hold(accountId, leaseId, 'primary');
        return granted;
      } catch (err) {
        this.failedOrThrow('acquireSlot', err);
      }
    }
    // Still ours on the shared store; its heartbeat re-asserts it there once it answers.
    if (existing === 'primary') return true;
    const granted = await this.fallback.acquireSlot(accountId, leaseId, max - this.ledger.held(accountId, 'primary'));
    if (granted) this.ledger.hold(accountId, leaseId, 'fallback');
    return granted;
  }

  async releaseSlot(accountId: string, leaseId: string): Promise<void> {
    this.guard();
    const backend = this.ledger.leaseBackend(accountId, leaseId);
    this.ledger.unhold(accountId, leaseId);
    if (backend !== 'primary') await this.fallback.releaseSlot(accountId, leaseId);
    if (backend === 'fallback') return;
    // The shared store forgets the lease locally before its call, so a release that fails is not
    // renewed and the lease expires within the lease TTL: the caller never waits on an outage.
    await this.settle('releaseSlot', this.primary.releaseSlot(accountId, leaseId));
  }

  async slotCount(accountId: string): Promise<number> {
    return this.route(
      'slotCount',
      async () => (await this.primary.slotCount(accountId)) + this.ledger.held(accountId, 'fallback'),
      async () => (await this.fallback.slotCount(accountId)) + this.ledger.held(accountId, 'primary'),
    );
  }

  async renewLeases(): Promise<void> {
    this.guard();
    await this.fallback.renewLeases();
    if (this.degradedSince !== null) return;
    try {
      await this.primary.renewLeases();
    } catch (err) {
      this.failedOrThrow('renewLeases', err);
    }
  }

  async releaseAllOwnLeases(): Promise<void> {
    this.guard();
    this.ledger.clear();
    await this.fallback.releaseAllOwnLeases();
    await this.primary.releaseAllOwnLeases();
  }

  // Waiting counters: decremented on the backend that counted them, like leases.

  async incrementWaiting(accountId: string, max: number): Promise<boolean> {
    const entered = await this.route(
      'incrementWaiting',
      async () => ((await this.primary.incrementWaiting(accountId, max)) ? 'primary' : null),
      async () => ((await this.fallback.incrementWaiting(accountId, max)) ? 'fallback' : null),
    );
    if (entered) this.ledger.addWaiter(accountId, entered);
    return entered !== null;
  }

  async decrementWaiting(accountId: string): Promise<void> {
    this.guard();
    const backend = this.ledger.dropWaiter(accountId) ?? (this.degradedSince === null ? 'primary' : 'fallback');
    if (backend === 'fallback') return this.fallback.decrementWaiting(accountId);
    // As with releases: the count is forgotten locally first and expires in the store on its own.
    await this.settle('decrementWaiting', this.primary.decrementWaiting(accountId));
  }

  async snapshot(accounts: readonly AccountRef[]): Promise<AccountSnapshot[]> {
    return this.route(
      'snapshot',
      async () => {
        const shared = await this.primary.snapshot(accounts);
        for (let i = 0; i < accounts.length; i++) this.mirrorFlags(accounts[i].id, shared[i].flags);
        return this.ledger.withOwn(shared, accounts, 'fallback');
      },
      async () => this.ledger.withOwn(await this.fallback.snapshot(accounts), accounts, 'primary'),
    );
  }

  // Shared account flags.

  setCooldown(accountId: string, untilMs: number, reason: CooldownReason): Promise<void> {
    return this.write('setCooldown', pendingKey('cooldown', accountId), (s) => s.setCooldown(accountId, untilMs, reason), () =>
      this.primary.setCooldown(accountId, untilMs, reason),
    );
  }

  clearCooldown(accountId: string): Promise<void> {
    return this.write('clearCooldown', pendingKey('cooldown', accountId), (s) => s.clearCooldown(accountId), () => this.primary.clearCooldown(accountId));
  }

  setDisabled(accountId: string, disabled: boolean): Promise<void> {
    return this.write('setDisabled', pendingKey('disabled', accountId), (s) => s.setDisabled(accountId, disabled), () =>
      this.primary.setDisabled(accountId, disabled),
    );
  }

  setWsUnsupported(accountId: string, untilMs: number): Promise<void> {
    return this.write('setWsUnsupported', pendingKey('ws', accountId), (s) => s.setWsUnsupported(accountId, untilMs), () =>
      this.primary.setWsUnsupported(accountId, untilMs),
    );
  }

  getFlags(accountId: string): Promise<AccountFlags> {
    return this.route(
      'getFlags',
      async () => {
        const flags = await this.primary.getFlags(accountId);
        this.mirrorFlags(accountId, flags);
        return flags;
      },
      () => this.fallback.getFlags(accountId),
    );
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.probeTimer) clearTimeout(this.probeTimer);
    this.probeTimer = null;
    this.pending.clear();
    await Promise.all([this.primary.close(), this.fallback.close()]);
  }

  // ---- internals ----------------------------------------------------------------------------

  private guard(): void {
    if (this.closed) throw new StoreUnavailableError('store is closed');
  }

  /** The shared store while it answers, else the local one. */
  private async route<T>(op: string, shared: () => Promise<T>, local: () => Promise<T>): Promise<T> {
    this.guard();
    if (this.degradedSince === null) {
      try {
        return await shared();
      } catch (err) {
        this.failedOrThrow(op, err);
      }
    }
    return local();
  }

  private read<T>(op: string, call: (s: StateStore) => Promise<T>): Promise<T> {
    return this.route(op, () => call(this.primary), () => call(this.fallback));
  }

  /**
   * Shared store first, then the local copy. Served locally (degraded), the write is also kept
   * for replay under `key`, so shared state learns it on recovery.
   */
  private async write(op: string, key: string, call: (s: StateStore) => Promise<void>, replay: PendingWrite): Promise<void> {
    this.guard();
    if (this.degradedSince === null) {
      try {
        await call(this.primary);
        await call(this.fallback);
        return;
      } catch (err) {
        this.failedOrThrow(op, err);
      }
    }
    await call(this.fallback);
    this.pending.add(key, replay);
  }

  /** A binding is replayed with the TTL it has left; one that expired meanwhile is not written. */
  private replayBinding(ttlMs: number, write: (leftMs: number) => Promise<void>): PendingWrite {
    const untilMs = this.clock.now() + ttlMs;
    return async () => {
      const left = untilMs - this.clock.now();
      if (left > 0) await write(left);
    };
  }

  /**
   * A shared call whose failure the caller need not see (giving something back). Shared: awaited.
   * Degraded: left to finish in the background (it applies if the store answers in time).
   */
  private async settle(op: string, call: Promise<void>): Promise<void> {
    if (this.degradedSince === null) {
      try {
        await call;
      } catch (err) {
        this.failedOrThrow(op, err);
      }
      return;
    }
    call.catch((err: unknown) => {
      if (err instanceof StoreUnavailableError && !this.closed) this.unavailable(op, err);
    });
  }

  /** StoreUnavailableError → counted, degraded, swallowed (the caller goes local); others rethrown. */
  private failedOrThrow(op: string, err: unknown): void {
    if (!(err instanceof StoreUnavailableError) || this.closed) throw err;
    this.unavailable(op, err);
  }

  private unavailable(op: string, err: Error): void {
    this.bus?.emit({ type: 'store_error', op });
    if (this.degradedSince !== null) return;
    this.degradedSince = this.clock.now();
    this.onStateChange?.({ degraded: true, op, error: err.message });
    this.scheduleProbe();
  }

  private scheduleProbe(): void {
    if (this.closed || this.probeTimer !== null || this.degradedSince === null) return;
    this.probeTimer = setTimeout(() => {
      this.probeTimer = null;
      void this.probe().then(() => this.scheduleProbe());
    }, this.probeIntervalMs);
    this.probeTimer.unref();
  }

  private async runProbe(): Promise<boolean> {
    if (this.closed) return false;
    try {
      await this.primary.ready();
      if (this.degradedSince === null) return true;
      // Re-assert this instance's shared leases first (a restarted Redis lost them), so it never
      // takes new shared slots while its old ones are missing there; then replay local writes.
      await this.primary.renewLeases();
      const replayed = await this.pending.replay();
      if (this.closed || this.degradedSince === null) return !this.closed;
      const degradedMs = this.clock.now() - this.degradedSince;
      this.degradedSince = null;
      this.onStateChange?.({ degraded: false, degradedMs, replayed });
      return true;
    } catch (err) {
      if (this.closed) return false;
      this.unavailable('probe', err instanceof Error ? err : new Error(String(err)));
      return false;
    }
  }

  /** Keeps the local copy of an account's shared flags current, for use during an outage. */
  private mirrorFlags(accountId: string, flags: AccountFlags): void {
    const local = this.fallback.backend.flags;
    if (flags.cooldownUntilMs === 0 && !flags.disabled && flags.wsUnsupportedUntilMs === 0) {
      local.delete(accountId);
      return;
    }
    const current = local.get(accountId) ?? NO_FLAGS;
    if (
      current.cooldownUntilMs !== flags.cooldownUntilMs ||
      current.cooldownReason !== flags.cooldownReason ||
      current.disabled !== flags.disabled ||
      current.wsUnsupportedUntilMs !== flags.wsUnsupportedUntilMs
    ) {
      local.set(accountId, { ...flags });
    }
  }
}

function pendingKey(kind: string, ...parts: string[]): string {
  // JSON keeps the parts distinct whatever characters they contain.
  return JSON.stringify([kind, ...parts]);
}
