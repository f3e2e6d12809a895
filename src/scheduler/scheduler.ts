// Shell: the account scheduler callers use (SPEC §4–5). It reads bindings and one batched load
// snapshot from the store, lets the pure core (select.ts) decide, acquires slots in the planned
// order, executes wait plans, writes bindings, and emits typed events. All time comes from the
// injected clock; all randomness from the injected source.
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Clock } from '../clock.js';
import type { AccountConfig, SchedulerConfig, WebsocketConfig } from '../config/schema.js';
import type { EventBus } from '../observability/events.js';
import type { AccountFlags, AccountSnapshot, CooldownReason, StateStore } from '../state/store.js';
import {
  decisionFor,
  emptyPlan,
  planBoundFastPath,
  planForAccount,
  planSelection,
  sessionBindingAction,
  type PlannedCandidate,
  type SelectInput,
  type SelectionPlan,
} from './select.js';
import { buildView, type GroupView, type SchedulerView } from './account-index.js';
import { CooldownTracker } from './cooldown-tracker.js';
import { RuntimeStats } from './stats.js';
import { resolveTransport } from './transport.js';
import type {
  AccountStats,
  Decision,
  PinnedSlot,
  RefusalReason,
  ScheduleOutcome,
  ScheduleRequest,
  Scheduler,
  SlotLease,
  Transport,
  TransportDecision,
  TransportReason,
  WaitSignal,
} from './types.js';
import { runWaitPlan, timerSleep, type Sleep, type WaitDeps } from './wait.js';

/** A transport decision that lets the account serve. */
type ServingTransport = TransportDecision & { transport: Transport };

export interface AccountSchedulerOptions {
  store: StateStore;
  clock: Clock;
  bus: EventBus;
  accounts: readonly AccountConfig[];
  scheduler: SchedulerConfig;
  websocket: WebsocketConfig;
  /** Uniform [0, 1): jitter and the entropy of anonymous requests. Default Math.random. */
  random?: () => number;
  /** Pause between wait-plan retries. Default: a timer that ends early on abort. */
  sleep?: Sleep;
}

/** Retry-After for capacity refusals: about one backoff cap. */
export const CAPACITY_RETRY_AFTER_MS = 2_000;

const REFUSAL_MESSAGES: Record<RefusalReason, string> = {
  no_compatible_account: 'No upstream account can serve this request right now.',
  queue_full: 'Every suitable upstream account is busy and its wait queue is full.',
  wait_timeout: 'Timed out waiting for a free upstream account.',
  aborted: 'The request was cancelled while waiting for an upstream account.',
};

/**
 * Lease ids: a random prefix per process and a counter. Unique within the process, which is all a
 * lease id needs (the store keys it under this instance's id); a UUID per turn cost a trip into
 * the crypto pool on the path between a client's frame and its upstream send.
 */
const LEASE_PREFIX = randomBytes(6).toString('base64url');
let leaseSeq = 0;
function nextLeaseId(): string {
  return `${LEASE_PREFIX}.${(++leaseSeq).toString(36)}`;
}

/** One select / acquireOn call in progress. */
interface Run {
  started: number;
  /** Its `select` event was emitted. */
  reported: boolean;
}

/** A held slot; release() runs the store call once, whatever the number of callers. */
class StoreLease implements SlotLease {
  private released: Promise<void> | null = null;
  constructor(readonly accountId: string, readonly leaseId: string, private readonly store: StateStore) {}
  release(): Promise<void> {
    this.released ??= this.store.releaseSlot(this.accountId, this.leaseId);
    return this.released;
  }
}

export class AccountScheduler implements Scheduler {
  private readonly store: StateStore;
  private readonly clock: Clock;
  private readonly bus: EventBus;
  private readonly random: () => number;
  private readonly sleep: Sleep;
  private readonly runtime: RuntimeStats;
  private readonly waitDeps: WaitDeps;
  private cfg: SchedulerView;
  private readonly cooldowns: CooldownTracker;
  private seq = 0;

  constructor(opts: AccountSchedulerOptions) {
    this.store = opts.store;
    this.clock = opts.clock;
    this.bus = opts.bus;
    this.random = opts.random ?? Math.random;
    this.sleep = opts.sleep ?? timerSleep;
    this.cooldowns = new CooldownTracker(opts.clock, opts.bus);
    this.cfg = buildView(opts.accounts, opts.scheduler, opts.websocket);
    this.runtime = new RuntimeStats({
      clock: opts.clock,
      halfLifeMs: opts.scheduler.statsHalfLifeMs,
      accountIds: opts.accounts.map((a) => a.id),
    });
    this.waitDeps = {
      store: this.store,
      clock: this.clock,
      sleep: this.sleep,
      random: this.random,
      tryAcquire: (id, max) => this.tryAcquire(id, max),
      onStoreError: (op) => this.bus.emit({ type: 'store_error', op }),
    };
  }

  async select(req: ScheduleRequest, signal?: WaitSignal): Promise<ScheduleOutcome> {
    const run: Run = { started: performance.now(), reported: false };
    const cfg = this.cfg;
    this.sweepCooldowns();
    if (signal?.aborted) return this.refused('aborted', 0, decisionFor(emptyPlan(), null, 0));
    try {
      const group = cfg.byGroup.get(req.group) ?? { accounts: [], refs: [] };
      const [previousAccount, sessionAccount] = await Promise.all([
        req.previousResponseId ? this.store.getResponseBinding(req.group, req.previousResponseId) : null,
        req.sessionHash ? this.store.getSessionBinding(req.group, req.sessionHash) : null,
      ]);

      const bound = this.boundView(cfg, req.group, previousAccount, sessionAccount);
      if (bound.refs.length > 0) {
        const load = await this.store.snapshot(bound.refs);
        const fast = planBoundFastPath(this.input(cfg, req, bound, load, previousAccount, sessionAccount));
        if (fast) {
          // The binding is written while the slot is being acquired (one round trip for both).
          // Harmless if the slot is not granted: the full plan then either picks the same bound
          // account again or rebinds the session to whatever it chooses.
          const binding = this.applyBinding(req, fast.candidates[0]);
          const got = await this.tryCandidates(fast);
          await binding;
          if (got) return this.acquired(req, run, fast, got.candidate, got.lease, true);
        }
      }

      const load = await this.store.snapshot(group.refs);
      const plan = planSelection(this.input(cfg, req, group, load, previousAccount, sessionAccount));
      if (plan.deleteSessionBinding && req.sessionHash) {
        const hash = req.sessionHash;
        await this.bestEffort('deleteSessionBinding', () => this.store.deleteSessionBinding(req.group, hash));
      }
      if (plan.refusal) {
        const decision = decisionFor(plan, null, performance.now() - run.started);
        const { reason, retryAfterMs, message, rateLimited } = plan.refusal;
        this.emitRefusal(run, req, decision, reason);
        return { kind: 'refused', reason, retryAfterMs, decision, message, rateLimited };
      }
      return await this.execute(req, run, plan, signal);
    } catch (err) {
      if (!run.reported) this.emitSelect(run, decisionFor(emptyPlan(), null, performance.now() - run.started), 'error');
      throw err;
    }
  }

  async acquireOn(accountId: string, req: ScheduleRequest, signal?: WaitSignal): Promise<ScheduleOutcome> {
    const run: Run = { started: performance.now(), reported: false };
    const cfg = this.cfg;
    const account = cfg.byId.get(accountId);
    const refuse = (): ScheduleOutcome => {
      const decision = decisionFor(emptyPlan(), null, performance.now() - run.started);
      this.emitSelect(run, decision, 'error');
      return this.refused('no_compatible_account', 0, decision);
    };
    if (!account || account.group !== req.group) return refuse();
    if (signal?.aborted) return this.refused('aborted', 0, decisionFor(emptyPlan(), null, 0));
    // Every turn of a pinned session comes here, and its account is almost always usable and free:
    // read the flags and take the slot together (one round trip on Redis, not two), and give the
    // slot back if the flags say the account may not serve.
    const leaseId = nextLeaseId();
    const [flagsRead, slotRead] = await Promise.allSettled([
      this.store.getFlags(accountId),
      this.store.acquireSlot(accountId, leaseId, account.concurrency),
    ]);
    const granted = slotRead.status === 'fulfilled' && slotRead.value;
    const giveBack = async () => {
      if (granted) await this.bestEffort('releaseSlot', () => this.store.releaseSlot(accountId, leaseId));
    };
    if (flagsRead.status === 'rejected' || slotRead.status === 'rejected') {
      await giveBack();
      throw flagsRead.status === 'rejected' ? flagsRead.reason : (slotRead as PromiseRejectedResult).reason;
    }
    const resolved = this.servingTransport(cfg, account, flagsRead.value);
    if (resolved === null) {
      await giveBack();
      return refuse();
    }
    const plan = this.pinnedPlan(cfg, account, req, resolved);
    if (granted) return this.pinnedAcquired(req, run, plan, leaseId);
    return this.execute(req, run, plan, signal);
  }

  acquireOnNow(accountId: string, group: string): PinnedSlot | null {
    if (!this.store.acquireSlotNow) return null;
    const started = performance.now();
    const cfg = this.cfg;
    const account = cfg.byId.get(accountId);
    if (!account || account.group !== group) return null;
    const leaseId = nextLeaseId();
    let answer: { flags: AccountFlags; granted: boolean };
    try {
      answer = this.store.acquireSlotNow(accountId, leaseId, account.concurrency);
    } catch {
      return null;
    }
    if (!answer.granted) return null;
    const resolved = this.servingTransport(cfg, account, answer.flags);
    if (resolved === null) {
      void this.bestEffort('releaseSlot', () => this.store.releaseSlot(accountId, leaseId));
      return null;
    }
    // The decision's latency is the slot's: what follows is the caller's send.
    const run: Run = { started, reported: false };
    const latencyMs = performance.now() - started;
    return {
      account,
      outcome: (req) => this.pinnedAcquired(req, run, this.pinnedPlan(cfg, account, req, resolved), leaseId, latencyMs),
    };
  }

  /** The account's transport under its flags, or null when the flags say it may not serve. */
  private servingTransport(cfg: SchedulerView, account: AccountConfig, flags: AccountFlags): ServingTransport | null {
    const resolved = resolveTransport(account, cfg.websocket, flags, this.clock.now());
    return resolved.transport === null ? null : (resolved as ServingTransport);
  }

  /** The one-account plan of a pinned turn on an account that may serve over `resolved`. */
  private pinnedPlan(cfg: SchedulerView, account: AccountConfig, req: ScheduleRequest, resolved: ServingTransport): SelectionPlan {
    // The live upstream socket decides the transport of a chained turn, not the resolver.
    const candidate: PlannedCandidate = {
      account,
      transport: req.requiredTransport === 'ws' ? 'ws' : resolved.transport,
      transportReason: resolved.reason as TransportReason,
      layer: 'previous_response_id',
    };
    const { timeoutMs, maxWaiting } = cfg.scheduler.stickyWait;
    return planForAccount(candidate, { timeoutMs, maxWaiting });
  }

  /** A pinned turn got its slot (lease `leaseId` on the plan's one account). */
  private pinnedAcquired(req: ScheduleRequest, run: Run, plan: SelectionPlan, leaseId: string, latencyMs?: number): Extract<ScheduleOutcome, { kind: 'acquired' }> {
    const candidate = plan.candidates[0];
    // The session is normally bound to this account already: the write (a TTL refresh in effect)
    // is best-effort and need not hold up the turn, nor need the decision's metrics. Both run
    // once the caller's synchronous part is over, so with an in-process store the frame goes
    // upstream before them.
    const lease = new StoreLease(candidate.account.id, leaseId, this.store);
    return this.acquiredNow(run, plan, candidate, lease, () => void this.applyBinding(req, candidate), latencyMs);
  }

  /**
   * One finished turn. Callers report account failures only: a 4xx caused by the request itself
   * (bad input) is the client's fault and must not be reported as `success: false`.
   */
  reportResult(accountId: string, success: boolean, ttftMs: number | null): void {
    const s = this.runtime.report(accountId, success, ttftMs);
    if (s) this.bus.emit({ type: 'account_stats', account: accountId, errorRate: s.errorRate, ttftMs: s.ttftMs });
  }

  reportSwitch(fromAccount: string): void {
    this.bus.emit({ type: 'switch', fromAccount });
  }

  async bindResponse(group: string, responseId: string, accountId: string): Promise<void> {
    await this.store.setResponseBinding(group, responseId, accountId, this.cfg.scheduler.responseBindingTtlSeconds * 1000);
  }

  async resolveTransport(accountId: string): Promise<TransportDecision> {
    const account = this.cfg.byId.get(accountId);
    if (!account) return { transport: null, reason: 'account_disabled' };
    return resolveTransport(account, this.cfg.websocket, await this.store.getFlags(accountId), this.clock.now());
  }

  async markRateLimited(accountId: string, untilMs: number | null): Promise<void> {
    const now = this.clock.now();
    const until = untilMs !== null && untilMs > now ? untilMs : now + this.cfg.scheduler.cooldown.rateLimitMs;
    await this.setCooldown(accountId, until, 'rate_limited');
  }

  async markServerError(accountId: string): Promise<void> {
    await this.setCooldown(accountId, this.clock.now() + this.cfg.scheduler.cooldown.serverErrorMs, 'server_error');
  }

  /** Disabled until an operator enables it again (setAccountEnabled). */
  async markUnauthorized(accountId: string): Promise<void> {
    await this.store.setDisabled(accountId, true);
    this.cooldowns.set(accountId, 'unauthorized', 'unauthorized', Infinity);
  }

  async markWsUnsupported(accountId: string): Promise<void> {
    const until = this.clock.now() + this.cfg.scheduler.cooldown.wsUnsupportedMs;
    await this.store.setWsUnsupported(accountId, until);
    this.cooldowns.set(accountId, 'ws_unsupported', 'ws_unsupported', until);
  }

  /** Operator action (admin API): enabling also clears a run-time disable and any cooldown. */
  async setAccountEnabled(accountId: string, enabled: boolean): Promise<void> {
    await this.store.setDisabled(accountId, !enabled);
    if (!enabled) return;
    await this.store.clearCooldown(accountId);
    for (const kind of ['unauthorized', 'cooldown'] as const) this.cooldowns.lift(accountId, kind);
  }

  accounts(): readonly AccountConfig[] {
    return this.cfg.accounts;
  }

  updateConfig(accounts: readonly AccountConfig[], scheduler: SchedulerConfig, websocket: WebsocketConfig): void {
    this.cfg = buildView(accounts, scheduler, websocket);
    this.runtime.reconfigure(accounts.map((a) => a.id), scheduler.statsHalfLifeMs);
  }

  stats(accountId: string): AccountStats {
    return this.runtime.get(accountId);
  }

  /** Emits `cooldown active:false` for the cooldowns this instance set that have passed. */
  sweepCooldowns(): void {
    this.cooldowns.sweep();
  }

  // ---- internals ----------------------------------------------------------------------------

  private input(
    cfg: SchedulerView,
    request: ScheduleRequest,
    group: GroupView,
    load: readonly AccountSnapshot[],
    previousResponseAccount: string | null,
    sessionAccount: string | null,
  ): SelectInput {
    return {
      request,
      snapshot: {
        accounts: group.accounts,
        load,
        positions: group.positions,
        stats: this.runtime.snapshot(),
        previousResponseAccount,
        sessionAccount,
      },
      scheduler: cfg.scheduler,
      websocket: cfg.websocket,
      nowMs: this.clock.now(),
      entropy: this.entropy(),
      accountIndex: cfg.byId,
    };
  }

  /** Time, a counter and randomness: anonymous requests must not all start on one account. */
  private entropy(): bigint {
    const now = BigInt(Math.floor(this.clock.now()));
    const noise = BigInt(Math.floor(this.random() * 0x1_0000_0000));
    this.seq = (this.seq + 1) & 0xffff;
    return ((now << 16n) ^ BigInt(this.seq) ^ (noise << 40n)) & 0xffff_ffff_ffff_ffffn;
  }

  /** The bound accounts of the request's group, for the fast path's one small snapshot. */
  private boundView(cfg: SchedulerView, group: string, ...ids: (string | null)[]): GroupView {
    const view: GroupView = { accounts: [], refs: [] };
    for (const id of ids) {
      if (id === null || view.refs.some((r) => r.id === id)) continue;
      const a = cfg.byId.get(id);
      if (a && a.group === group) {
        view.accounts.push(a);
        view.refs.push({ id, max: a.concurrency });
      }
    }
    return view;
  }

  private async tryAcquire(accountId: string, max: number): Promise<SlotLease | null> {
    const leaseId = nextLeaseId();
    const ok = await this.store.acquireSlot(accountId, leaseId, max);
    return ok ? new StoreLease(accountId, leaseId, this.store) : null;
  }

  private async tryCandidates(plan: SelectionPlan): Promise<{ candidate: PlannedCandidate; lease: SlotLease } | null> {
    for (const candidate of plan.candidates) {
      const lease = await this.tryAcquire(candidate.account.id, candidate.account.concurrency);
      if (lease) return { candidate, lease };
    }
    return null;
  }

  /** Acquire in plan order; none free → the wait plan. */
  private async execute(req: ScheduleRequest, run: Run, plan: SelectionPlan, signal?: WaitSignal): Promise<ScheduleOutcome> {
    const got = await this.tryCandidates(plan);
    if (got) return this.acquired(req, run, plan, got.candidate, got.lease, false);
    const wait = plan.waitPlan;
    const decision = decisionFor(plan, wait?.candidate ?? null, performance.now() - run.started);
    if (!wait) {
      this.emitRefusal(run, req, decision, 'no_compatible_account');
      return this.refused('no_compatible_account', 0, decision);
    }
    // From here the decision names the account waited on, whatever the wait's outcome.
    this.emitSelect(run, decision, 'wait');
    const result = await runWaitPlan(this.waitDeps, wait, signal);
    if (result.kind === 'refused') {
      return this.refused(result.reason, result.reason === 'aborted' ? 0 : CAPACITY_RETRY_AFTER_MS, decision);
    }
    await this.applyBinding(req, wait.candidate);
    return { kind: 'acquired', account: wait.candidate.account, transport: wait.candidate.transport, lease: result.lease, decision, waitedMs: result.waitedMs };
  }

  private async acquired(
    req: ScheduleRequest,
    run: Run,
    plan: SelectionPlan,
    candidate: PlannedCandidate,
    lease: SlotLease,
    alreadyBound: boolean,
  ): Promise<ScheduleOutcome> {
    if (!alreadyBound) await this.applyBinding(req, candidate);
    return this.acquiredNow(run, plan, candidate, lease);
  }

  /** With `later`, the select event is emitted in a microtask, followed by `later`. */
  private acquiredNow(
    run: Run,
    plan: SelectionPlan,
    candidate: PlannedCandidate,
    lease: SlotLease,
    later?: () => void,
    latencyMs = performance.now() - run.started,
  ): Extract<ScheduleOutcome, { kind: 'acquired' }> {
    const decision = decisionFor(plan, candidate, latencyMs);
    if (later) {
      queueMicrotask(() => {
        this.emitSelect(run, decision, 'acquired');
        later();
      });
    } else {
      this.emitSelect(run, decision, 'acquired');
    }
    return { kind: 'acquired', account: candidate.account, transport: candidate.transport, lease, decision, waitedMs: 0 };
  }

  /** The session follows the account that got the slot; a sticky hit only extends its TTL. */
  private async applyBinding(req: ScheduleRequest, candidate: PlannedCandidate): Promise<void> {
    const hash = req.sessionHash;
    if (!hash) return;
    const ttlMs = this.cfg.scheduler.stickySessionTtlSeconds * 1000;
    if (sessionBindingAction(candidate.layer) === 'refresh') {
      await this.bestEffort('refreshSessionBinding', () => this.store.refreshSessionBinding(req.group, hash, ttlMs));
    } else {
      await this.bestEffort('setSessionBinding', () => this.store.setSessionBinding(req.group, hash, candidate.account.id, ttlMs));
    }
  }

  /** Binding writes never fail a turn: the slot is held, the binding is an optimisation. */
  private async bestEffort(op: string, fn: () => Promise<unknown>): Promise<void> {
    try {
      await fn();
    } catch {
      this.bus.emit({ type: 'store_error', op });
    }
  }

  private refused(reason: RefusalReason, retryAfterMs: number, decision: Decision): ScheduleOutcome {
    return { kind: 'refused', reason, retryAfterMs, decision, message: REFUSAL_MESSAGES[reason] };
  }

  /** A refusal is a select `error`, unless the caller serves the turn over HTTP instead. */
  private emitRefusal(run: Run, req: ScheduleRequest, d: Decision, reason: RefusalReason): void {
    if (reason === 'no_compatible_account' && req.fallsBackToHttp === true) {
      run.reported = true;
      return;
    }
    this.emitSelect(run, d, 'error');
  }

  /** One `select` event per call: the outcome of the deciding phase, before any waiting. */
  private emitSelect(run: Run, d: Decision, result: 'acquired' | 'wait' | 'error'): void {
    run.reported = true;
    this.bus.emit({
      type: 'select',
      layer: d.layer,
      result,
      durationMs: d.latencyMs,
      candidateCount: d.candidateCount,
      loadSkew: d.loadSkew,
      stickyPreviousHit: d.stickyPreviousHit,
      stickySessionHit: d.stickySessionHit,
    });
  }

  private async setCooldown(accountId: string, untilMs: number, reason: CooldownReason): Promise<void> {
    await this.store.setCooldown(accountId, untilMs, reason);
    this.cooldowns.set(accountId, 'cooldown', reason, untilMs);
  }
}
