// The StateStore edge (DESIGN rule 2): everything several relay instances must agree on.
// Two implementations: memory-store.ts (one process) and redis-store.ts (shared).
// Contract: every method is safe to call concurrently; TTLs are milliseconds; times are epoch ms.

/** Why an account is cooling down. */
export type CooldownReason = 'rate_limited' | 'server_error' | 'unauthorized' | 'connect_error';

/** Shared runtime flags of one account, visible to every instance. */
export interface AccountFlags {
  /** Epoch ms until which the account is cooling down; 0 = not cooling down. */
  cooldownUntilMs: number;
  cooldownReason: CooldownReason | null;
  /** Disabled at run time (a 401, or an operator). Stays until explicitly cleared. */
  disabled: boolean;
  /** Epoch ms until which the account resolves to HTTP because its upstream refused WebSocket; 0 = none. */
  wsUnsupportedUntilMs: number;
}

export const NO_FLAGS: Readonly<AccountFlags> = Object.freeze({
  cooldownUntilMs: 0,
  cooldownReason: null,
  disabled: false,
  wsUnsupportedUntilMs: 0,
});

export interface AccountLoad {
  inflight: number;
  waiting: number;
  /** (inflight + waiting) × 100 / max, an integer percentage (may exceed 100). */
  loadRate: number;
}

/** What the scheduler reads for each candidate account in one round trip. */
export interface AccountSnapshot extends AccountLoad {
  flags: AccountFlags;
}

export interface AccountRef {
  id: string;
  /** The account's concurrency limit (slots). */
  max: number;
}

export interface StateStore {
  readonly kind: 'memory' | 'redis';
  /** Identifies this relay instance; every lease it takes carries it. */
  readonly instanceId: string;

  // Sticky session bindings: (group, sessionHash) → accountId.
  getSessionBinding(group: string, sessionHash: string): Promise<string | null>;
  setSessionBinding(group: string, sessionHash: string, accountId: string, ttlMs: number): Promise<void>;
  /** Extends the TTL of an existing binding; false when there is none. */
  refreshSessionBinding(group: string, sessionHash: string, ttlMs: number): Promise<boolean>;
  deleteSessionBinding(group: string, sessionHash: string): Promise<void>;

  // Response bindings: (group, responseId) → accountId. A namespace separate from sessions.
  getResponseBinding(group: string, responseId: string): Promise<string | null>;
  setResponseBinding(group: string, responseId: string, accountId: string, ttlMs: number): Promise<void>;

  // Concurrency slots. A lease is owned by this instance and expires after the lease TTL unless renewed.
  /** Atomic: grants when fewer than `max` live leases exist. Re-acquiring a lease already held returns true (and renews it). */
  acquireSlot(accountId: string, leaseId: string, max: number): Promise<boolean>;
  /** Idempotent. */
  releaseSlot(accountId: string, leaseId: string): Promise<void>;
  /** Live leases on the account. */
  slotCount(accountId: string): Promise<number>;
  /** Heartbeat: extend every lease this instance holds. Called by the owner on a timer. */
  renewLeases(): Promise<void>;
  /** Releases every lease this instance holds (shutdown). Never touches other instances' leases. */
  releaseAllOwnLeases(): Promise<void>;
  /**
   * Optional, for a store in this process: getFlags + acquireSlot answered synchronously, same
   * semantics (throws StoreUnavailableError when closed). Remote stores leave it out.
   */
  acquireSlotNow?(accountId: string, leaseId: string, max: number): { flags: AccountFlags; granted: boolean };

  // Waiting counters (wait plans).
  /** Atomic: increments only while below `max`; false when full. The counter expires if left alone. */
  incrementWaiting(accountId: string, max: number): Promise<boolean>;
  /** Never goes below 0. */
  decrementWaiting(accountId: string): Promise<void>;

  /**
   * Load and flags of many accounts in ONE round trip, index-aligned with `accounts` (the
   * scheduler reads them by position, with no per-select map). Accounts unknown to the store read
   * as zero / NO_FLAGS.
   */
  snapshot(accounts: readonly AccountRef[]): Promise<AccountSnapshot[]>;

  // Shared account runtime flags.
  setCooldown(accountId: string, untilMs: number, reason: CooldownReason): Promise<void>;
  clearCooldown(accountId: string): Promise<void>;
  setDisabled(accountId: string, disabled: boolean): Promise<void>;
  setWsUnsupported(accountId: string, untilMs: number): Promise<void>;
  getFlags(accountId: string): Promise<AccountFlags>;

  /** Stops timers and closes connections. Does not release leases (call releaseAllOwnLeases first). */
  close(): Promise<void>;

  /**
   * Why calls are being served from local state instead of shared state (degraded mode, see
   * resilient-store.ts), or null while shared state answers. Absent: the store is never degraded.
   */
  degradedReason?(): string | null;
}

/**
 * A store call that could not complete: the backend is unreachable, too slow (past the command
 * timeout) or the store is closed. Callers treat it as "shared state unavailable" (degraded mode)
 * rather than as an answer.
 */
export class StoreUnavailableError extends Error {
  override readonly name = 'StoreUnavailableError';
  readonly code = 'SY_STORE_UNAVAILABLE';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}
