// Types shared by the pure scheduler core, its shell, and the callers (sessions, HTTP ingress).
import type { AccountConfig } from '../config/schema.js';
import type { Layer, Transport } from '../observability/events.js';
import type { AccountSnapshot } from '../state/store.js';

export type { Layer, Transport };

/** What a turn needs from its upstream: a WS client turn needs `ws`; HTTP clients and bridged turns take `any`. */
export type RequiredTransport = 'ws' | 'any';

export type TransportReason =
  | 'ws_enabled'
  | 'global_disabled'
  | 'account_force_http'
  | 'ws_unsupported';

/** Result of the pure transport resolver; `null` transport means the account is excluded (disabled). */
export interface TransportDecision {
  transport: Transport | null;
  reason: TransportReason | 'account_disabled';
}

export interface ScheduleRequest {
  /** Client key's group; only accounts of this group serve it. */
  group: string;
  /** Hash of (group, session key), or null when the request carries no session key. */
  sessionHash: string | null;
  previousResponseId: string | null;
  model: string;
  requiredTransport: RequiredTransport;
  /** Accounts already tried by this turn (failover). */
  excluded: ReadonlySet<string>;
  /**
   * A `no_compatible_account` refusal is not this turn's end: the caller serves it over HTTP/SSE
   * instead (the WebSocket bridge, SPEC §4), and that select records the turn's outcome. Such a
   * refusal emits no `select` event, so select_total{result="error"} counts only turns that failed.
   */
  fallsBackToHttp?: boolean;
}

/** Why a layer did not pick (recorded in the decision for logs / admin). */
export type LayerMiss =
  | 'no_key'
  | 'not_bound'
  | 'excluded'
  | 'disabled'
  | 'cooldown'
  | 'model_unsupported'
  | 'transport_incompatible'
  | 'unknown_account'
  | 'escaped'
  | 'busy';

/** The decision record (what the seed kept, plus transport and misses). */
export interface Decision {
  layer: Layer;
  stickyPreviousHit: boolean;
  stickySessionHit: boolean;
  candidateCount: number;
  topK: number;
  loadSkew: number;
  selectedAccount: string | null;
  transport: Transport | null;
  transportReason: TransportReason | null;
  previousResponseMiss: LayerMiss | null;
  sessionMiss: LayerMiss | null;
  /** Time spent deciding (not waiting), ms with sub-ms precision. */
  latencyMs: number;
}

/** Per-account runtime stats as read by the pure core. */
export interface AccountStats {
  errorRate: number;
  /** TTFT EWMA in ms, or null when there is no sample. */
  ttftMs: number | null;
  /**
   * Confidence in ttftMs: 1 right after a sample, halving every `scheduler.statsHalfLifeMs`
   * without one (scoring blends the TTFT factor toward neutral by it). Absent = 1.
   */
  ttftWeight?: number;
}

/** Everything the pure core needs, read in one go by the shell. */
export interface SchedulerSnapshot {
  accounts: readonly AccountConfig[];
  /** Load and flags, index-aligned with `accounts` (a missing entry reads as idle, no flags). */
  load: readonly AccountSnapshot[];
  /** id → index in `accounts`; without it a bound account is found by a linear scan. */
  positions?: ReadonlyMap<string, number>;
  stats: ReadonlyMap<string, AccountStats>;
  /** Account bound to previousResponseId, if any. */
  previousResponseAccount: string | null;
  /** Sticky account of the session, if any. */
  sessionAccount: string | null;
}

/** A held concurrency slot; release() is idempotent and must be called on every path. */
export interface SlotLease {
  readonly accountId: string;
  readonly leaseId: string;
  release(): Promise<void>;
}

export type RefusalReason =
  /** No account of the group can serve this model over the required transport right now. */
  | 'no_compatible_account'
  /** The wait queue of the chosen account is full. */
  | 'queue_full'
  /** Waited the whole timeout without a free slot. */
  | 'wait_timeout'
  /** The caller gave up (client gone, shutdown). */
  | 'aborted';

/** A pinned turn's slot, taken by `acquireOnNow`. */
export interface PinnedSlot {
  readonly account: AccountConfig;
  /**
   * The turn's acquired outcome (layer `previous_response_id`, holding the slot's lease). Called
   * once; its select event and the session binding's refresh follow the caller's synchronous part.
   */
  outcome(req: ScheduleRequest): Extract<ScheduleOutcome, { kind: 'acquired' }>;
}

export type ScheduleOutcome =
  | {
      kind: 'acquired';
      account: AccountConfig;
      transport: Transport;
      lease: SlotLease;
      decision: Decision;
      /** Waited on a wait plan before acquiring. */
      waitedMs: number;
    }
  | {
      kind: 'refused';
      reason: RefusalReason;
      /** Suggested Retry-After, ms. */
      retryAfterMs: number;
      decision: Decision;
      /** Human-readable, safe to show the client. */
      message: string;
      /**
       * no_compatible_account only because every account that could otherwise serve is cooling
       * down after an upstream rate limit: the client should hear 429, not 503.
       */
      rateLimited?: boolean;
    };

/**
 * What a scheduler wait watches to give up early (the client went away). An AbortSignal is one;
 * so is anything with its `aborted` and its abort listeners (the WebSocket session's ClientGone,
 * which makes an AbortSignal only when a wait listens).
 */
export interface WaitSignal {
  readonly aborted: boolean;
  addEventListener(type: 'abort', listener: () => void, options: { once: true }): void;
  removeEventListener(type: 'abort', listener: () => void): void;
}

/** The scheduler shell as callers see it. */
export interface Scheduler {
  /** Picks an account, acquires a slot (executing wait plans), binds the session. */
  select(req: ScheduleRequest, signal?: WaitSignal): Promise<ScheduleOutcome>;
  /**
   * Acquire a slot on one given account, waiting per `stickyWait` when it is busy. For a chained
   * `store:false` turn, which can only be served by the upstream socket (and so the account) that
   * holds its previous response: no other account is considered, cooldown does not exclude it
   * (the live socket may still work), only a disabled or unknown account is refused.
   * Decision layer is `previous_response_id`.
   */
  acquireOn(accountId: string, req: ScheduleRequest, signal?: WaitSignal): Promise<ScheduleOutcome>;
  /**
   * acquireOn answered at once, when the store lives in this process and the account (of `group`)
   * is usable and has a free slot; null otherwise (then call acquireOn, which waits or refuses).
   * The slot is held from here: the caller may send the turn's frame upstream first and build the
   * turn's request and outcome (`PinnedSlot.outcome`) after it, so a pinned turn reaches its
   * upstream socket in the same tick its frame arrived, ahead of its own bookkeeping.
   */
  acquireOnNow?(accountId: string, group: string): PinnedSlot | null;
  /** One finished turn: success or failure and TTFT (ms from sending upstream to first output event). */
  reportResult(accountId: string, success: boolean, ttftMs: number | null): void;
  /** A turn moved to another account. */
  reportSwitch(fromAccount: string): void;
  /** Response id produced by an account (layer 1). */
  bindResponse(group: string, responseId: string, accountId: string): Promise<void>;
  /** Resolve the transport an account uses now (for admin and for the bridge). */
  resolveTransport(accountId: string): Promise<TransportDecision>;
  /** Account failure handling (SPEC §5). untilMs from reset headers when known. */
  markRateLimited(accountId: string, untilMs: number | null): Promise<void>;
  markServerError(accountId: string): Promise<void>;
  markUnauthorized(accountId: string): Promise<void>;
  markWsUnsupported(accountId: string): Promise<void>;
  /** Operator action (admin API): disable, or enable again clearing a run-time disable and any cooldown. */
  setAccountEnabled(accountId: string, enabled: boolean): Promise<void>;
  /** Accounts currently configured (after reloads). */
  accounts(): readonly AccountConfig[];
  /** Live reload: new accounts and weights apply to the next decision. */
  updateConfig(accounts: readonly AccountConfig[], scheduler: import('../config/schema.js').SchedulerConfig, websocket: import('../config/schema.js').WebsocketConfig): void;
  /** Per-account runtime stats (admin, metrics). */
  stats(accountId: string): AccountStats;
}
