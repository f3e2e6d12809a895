// Pure selection (SPEC §4–5): (request, snapshot, config, now) → a plan the shell executes.
// The three layers — previous_response_id → session_hash → load_balance — decide which accounts
// to try acquiring, in order, and which one to wait on when none can be acquired. No I/O, no clock.
import type { AccountConfig, SchedulerConfig, WebsocketConfig } from '../config/schema.js';
import { NO_FLAGS, type AccountFlags, type AccountSnapshot } from '../state/store.js';
import { deriveSeed, XorShift64Star } from './rng.js';
import { emptyBounds, loadSkewFromMoments, scorer, TopK, weightedOrder, widenBounds, type Candidate } from './score.js';
import { NEUTRAL_STATS } from './stats.js';
import { isAccountDisabled, isTransportCompatible, resolveTransport } from './transport.js';
import type {
  AccountStats,
  Decision,
  Layer,
  LayerMiss,
  ScheduleRequest,
  SchedulerSnapshot,
  Transport,
  TransportDecision,
  TransportReason,
} from './types.js';

export interface SelectInput {
  request: ScheduleRequest;
  snapshot: SchedulerSnapshot;
  scheduler: SchedulerConfig;
  websocket: Pick<WebsocketConfig, 'enabled'>;
  nowMs: number;
  /** Mixed into the seed of requests with no session key and no previous response id. */
  entropy: bigint;
  /** id → account over every configured account; built from snapshot.accounts when absent. */
  accountIndex?: ReadonlyMap<string, AccountConfig>;
}

export interface PlannedCandidate {
  account: AccountConfig;
  transport: Transport;
  transportReason: TransportReason;
  /** The layer this candidate stands for: it becomes the decision's layer if acquired. */
  layer: Layer;
}

export interface WaitPlan {
  candidate: PlannedCandidate;
  timeoutMs: number;
  maxWaiting: number;
}

export interface Refusal {
  reason: 'no_compatible_account';
  retryAfterMs: number;
  message: string;
  /** Every account held back only by a cooldown is cooling down after a rate limit (and there is one). */
  rateLimited: boolean;
}

export interface SelectionPlan {
  /** Try to acquire a slot on each, in order; the first success wins. */
  candidates: PlannedCandidate[];
  /** When none was acquired: wait on this one. */
  waitPlan: WaitPlan | null;
  /** The session's binding points at an account that is gone, disabled or cooling down. */
  deleteSessionBinding: boolean;
  refusal: Refusal | null;
  /** Load-balance figures over the compatible set (0 when load balance was not run). */
  candidateCount: number;
  topK: number;
  loadSkew: number;
  /** Why layer 1 did not pick (null when it did). */
  previousResponseMiss: LayerMiss | null;
  /** Why layer 2 did not pick, recorded when the chosen candidate is from load balance. */
  sessionMiss: LayerMiss | null;
  /** Built from the bound accounts' snapshot only: when nothing is acquired, plan again in full. */
  partial: boolean;
}

/** Retry-After when no account fits and none is merely cooling down. */
export const NO_ACCOUNT_RETRY_AFTER_MS = 30_000;
const MIN_RETRY_AFTER_MS = 1_000;

const ZERO_LOAD: AccountSnapshot = Object.freeze({ inflight: 0, waiting: 0, loadRate: 0, flags: NO_FLAGS });

/**
 * The account's transport decision when the request may use it now, else why not (a LayerMiss).
 * Order: excluded, disabled, model, transport, cooldown. Allocates nothing: it runs per account.
 */
export function evaluateAccount(
  account: AccountConfig,
  flags: AccountFlags,
  req: ScheduleRequest,
  websocket: Pick<WebsocketConfig, 'enabled'>,
  nowMs: number,
): TransportDecision | LayerMiss {
  if (req.excluded.size > 0 && req.excluded.has(account.id)) return 'excluded';
  if (isAccountDisabled(account, flags)) return 'disabled';
  if (account.models !== undefined && !account.models.includes(req.model)) return 'model_unsupported';
  const decision = resolveTransport(account, websocket, flags, nowMs);
  if (!isTransportCompatible(decision, req.requiredTransport)) return 'transport_incompatible';
  if (flags.cooldownUntilMs > nowMs) return 'cooldown';
  return decision;
}

function planned(account: AccountConfig, decision: TransportDecision, layer: Layer): PlannedCandidate {
  // evaluateAccount only passes on decisions with a transport.
  return { account, transport: decision.transport as Transport, transportReason: decision.reason as TransportReason, layer };
}

/** Strict `>`: an account exactly at a threshold stays sticky. Decayed evidence weighs less. */
export function shouldEscape(stats: AccountStats, escape: SchedulerConfig['stickyEscape']): boolean {
  if (stats.errorRate > escape.errorRate) return true;
  if (stats.ttftMs === null) return false;
  return stats.ttftMs * (stats.ttftWeight ?? 1) > escape.ttftMs;
}

function isFree(account: AccountConfig, load: AccountSnapshot): boolean {
  return load.inflight < account.concurrency;
}

interface Ctx {
  input: SelectInput;
  index: ReadonlyMap<string, AccountConfig>;
}

function loadOf(ctx: Ctx, id: string): AccountSnapshot {
  const { accounts, load, positions } = ctx.input.snapshot;
  const i = positions ? positions.get(id) : accounts.findIndex((a) => a.id === id);
  return (i !== undefined && i >= 0 ? load[i] : undefined) ?? ZERO_LOAD;
}

function statsOf(ctx: Ctx, id: string): AccountStats {
  const stats = ctx.input.snapshot.stats;
  return (stats.size > 0 ? stats.get(id) : undefined) ?? NEUTRAL_STATS;
}

type LayerResult =
  | { kind: 'hit'; candidate: PlannedCandidate; free: boolean }
  | { kind: 'miss'; miss: LayerMiss; deleteBinding: boolean };

/** Shared by layers 1 and 2: the bound account, if the request may use it now. */
function boundAccount(ctx: Ctx, boundId: string | null, layer: Layer): LayerResult {
  if (boundId === null) return { kind: 'miss', miss: 'not_bound', deleteBinding: false };
  const { request: req, websocket, nowMs } = ctx.input;
  const account = ctx.index.get(boundId);
  if (account === undefined || account.group !== req.group) {
    return { kind: 'miss', miss: 'unknown_account', deleteBinding: true };
  }
  const load = loadOf(ctx, boundId);
  const ev = evaluateAccount(account, load.flags, req, websocket, nowMs);
  if (typeof ev === 'string') {
    // A binding to an account that cannot serve anyone now is dropped; one that cannot serve this
    // request only (model, transport, failover exclusion) is kept for the next turn.
    const unusable = isAccountDisabled(account, load.flags) || load.flags.cooldownUntilMs > nowMs;
    return { kind: 'miss', miss: ev, deleteBinding: unusable };
  }
  return { kind: 'hit', candidate: planned(account, ev, layer), free: isFree(account, load) };
}

function layerPrevious(ctx: Ctx): LayerResult {
  const id = ctx.input.request.previousResponseId?.trim();
  if (!id) return { kind: 'miss', miss: 'no_key', deleteBinding: false };
  return boundAccount(ctx, ctx.input.snapshot.previousResponseAccount, 'previous_response_id');
}

function layerSession(ctx: Ctx): LayerResult {
  if (!ctx.input.request.sessionHash) return { kind: 'miss', miss: 'no_key', deleteBinding: false };
  const result = boundAccount(ctx, ctx.input.snapshot.sessionAccount, 'session_hash');
  if (result.kind === 'hit' && shouldEscape(statsOf(ctx, result.candidate.account.id), ctx.input.scheduler.stickyEscape)) {
    return { kind: 'miss', miss: 'escaped', deleteBinding: false };
  }
  return result;
}

interface LbCandidate extends Candidate {
  decision: TransportDecision;
  free: boolean;
}

interface LoadBalance {
  count: number;
  topK: number;
  loadSkew: number;
  /** Weighted order of the top-K. */
  order: LbCandidate[];
  /** What to try: free accounts of the order; if none, the best free ones outside the top-K. */
  tryList: LbCandidate[];
  retryAfterMs: number;
  /** See Refusal.rateLimited (meaningful when count is 0). */
  rateLimited: boolean;
}

function toPlanned(c: LbCandidate): PlannedCandidate {
  return planned(c.account, c.decision, 'load_balance');
}

/**
 * Layer 3, in two passes over the group: filter + bounds, then score into a bounded heap.
 * `skipId` (a busy sticky account) is scored like the others but never tried again.
 */
function loadBalance(ctx: Ctx, skipId: string | null): LoadBalance {
  const { request: req, snapshot, scheduler, websocket, nowMs, entropy } = ctx.input;
  // Hot loops (per account per select): parallel arrays and locals, and a candidate object only
  // for the few that make the top-K, so a 10,000-account group allocates next to nothing.
  const accs: AccountConfig[] = [];
  const loads: AccountSnapshot[] = [];
  const stats: AccountStats[] = [];
  const decisions: TransportDecision[] = [];
  const bounds = emptyBounds();
  let loadSum = 0;
  let loadSumSq = 0;
  let earliestCooldownEnd = Infinity;
  let cooling = 0;
  let coolingRateLimited = 0;
  const all = snapshot.accounts;
  const loadAt = snapshot.load;
  const statsMap = snapshot.stats;
  const hasStats = statsMap.size > 0;
  const group = req.group;
  for (let j = 0; j < all.length; j++) {
    const account = all[j];
    if (account.group !== group) continue;
    const load = loadAt[j] ?? ZERO_LOAD;
    const ev = evaluateAccount(account, load.flags, req, websocket, nowMs);
    if (typeof ev === 'string') {
      if (ev === 'cooldown') {
        if (load.flags.cooldownUntilMs < earliestCooldownEnd) earliestCooldownEnd = load.flags.cooldownUntilMs;
        cooling++;
        if (load.flags.cooldownReason === 'rate_limited') coolingRateLimited++;
      }
      continue;
    }
    const st = (hasStats ? statsMap.get(account.id) : undefined) ?? NEUTRAL_STATS;
    widenBounds(bounds, account, load, st);
    loadSum += load.loadRate;
    loadSumSq += load.loadRate * load.loadRate;
    accs.push(account);
    loads.push(load);
    stats.push(st);
    decisions.push(ev);
  }
  const retryAfterMs = Number.isFinite(earliestCooldownEnd)
    ? Math.max(MIN_RETRY_AFTER_MS, earliestCooldownEnd - nowMs)
    : NO_ACCOUNT_RETRY_AFTER_MS;
  const n = accs.length;
  const rateLimited = cooling > 0 && coolingRateLimited === cooling;
  if (n === 0) return { count: 0, topK: 0, loadSkew: 0, order: [], tryList: [], retryAfterMs, rateLimited };

  const topK = Math.min(scheduler.topK, n);
  const score = scorer(bounds, scheduler.weights);
  const scores = new Float64Array(n);
  const candidateAt = (i: number): LbCandidate => ({
    account: accs[i],
    load: loads[i],
    stats: stats[i],
    score: scores[i],
    decision: decisions[i],
    free: loads[i].inflight < accs[i].concurrency,
  });
  const top = new TopK<LbCandidate>(topK);
  for (let i = 0; i < n; i++) {
    scores[i] = score(accs[i], loads[i], stats[i]);
    if (top.accepts(scores[i], accs[i], loads[i])) top.offer(candidateAt(i));
  }
  const ranked = top.ranked();
  const order = weightedOrder(ranked, new XorShift64Star(deriveSeed(req, entropy)));
  let tryList = order.filter((c) => c.free && c.account.id !== skipId);
  if (tryList.length === 0) {
    // A free slot beats waiting, even on an account that scored outside the top-K.
    const inTop = new Set(ranked.map((c) => c.account));
    const spare = new TopK<LbCandidate>(topK);
    for (let i = 0; i < n; i++) {
      const a = accs[i];
      if (loads[i].inflight >= a.concurrency || a.id === skipId || inTop.has(a)) continue;
      if (spare.accepts(scores[i], a, loads[i])) spare.offer(candidateAt(i));
    }
    tryList = spare.ranked();
  }
  return { count: n, topK, loadSkew: loadSkewFromMoments(loadSum, loadSumSq, n), order, tryList, retryAfterMs, rateLimited };
}

/** A plan with nothing to try (also the base of decisions made before any planning). */
export function emptyPlan(partial = false): SelectionPlan {
  return {
    candidates: [],
    waitPlan: null,
    deleteSessionBinding: false,
    refusal: null,
    candidateCount: 0,
    topK: 0,
    loadSkew: 0,
    previousResponseMiss: null,
    sessionMiss: null,
    partial,
  };
}

function contextOf(input: SelectInput): Ctx {
  const index = input.accountIndex ?? new Map(input.snapshot.accounts.map((a) => [a.id, a] as const));
  return { input, index };
}

/**
 * The full plan. Layer 1 hit: that account, or wait on it (a chained response lives there only).
 * Layer 2 hit: the sticky account if free, else another free account, else wait on the sticky
 * one (stickyWait). Otherwise load balance: free accounts in weighted order, else wait on the
 * first of the order (fallbackWait). No compatible account at all: a refusal that says so.
 */
export function planSelection(input: SelectInput): SelectionPlan {
  const ctx = contextOf(input);
  const { stickyWait, fallbackWait } = input.scheduler;
  const plan = emptyPlan(false);

  const prev = layerPrevious(ctx);
  if (prev.kind === 'hit') {
    plan.candidates = prev.free ? [prev.candidate] : [];
    plan.waitPlan = { candidate: prev.candidate, ...stickyWait };
    return plan;
  }
  plan.previousResponseMiss = prev.miss;

  const session = layerSession(ctx);
  const stickyId = session.kind === 'hit' ? session.candidate.account.id : null;
  const lb = loadBalance(ctx, stickyId);
  plan.candidateCount = lb.count;
  plan.topK = lb.topK;
  plan.loadSkew = lb.loadSkew;

  if (session.kind === 'hit') {
    // If a load-balance alternative is what gets acquired, the sticky account was busy.
    plan.sessionMiss = 'busy';
    const alternatives = lb.tryList.map(toPlanned);
    plan.candidates = session.free ? [session.candidate, ...alternatives] : alternatives;
    plan.waitPlan = { candidate: session.candidate, ...stickyWait };
    return plan;
  }
  plan.sessionMiss = session.miss;
  plan.deleteSessionBinding = session.deleteBinding;

  if (lb.count === 0) {
    plan.refusal = {
      reason: 'no_compatible_account',
      retryAfterMs: lb.retryAfterMs,
      rateLimited: lb.rateLimited,
      message: input.request.requiredTransport === 'ws'
        ? 'No WebSocket-capable upstream account can serve this model right now.'
        : 'No upstream account can serve this model right now.',
    };
    return plan;
  }
  plan.candidates = lb.tryList.map(toPlanned);
  plan.waitPlan = { candidate: toPlanned(lb.order[0]), ...fallbackWait };
  return plan;
}

/**
 * The cheap path for a bound session: `snapshot.load` holds only the bound accounts. Returns a
 * partial plan when layer 1 or 2 hits an account with a free slot, null when the full plan is
 * needed (no hit, a busy account, an escape, or a binding to clean up).
 */
export function planBoundFastPath(input: SelectInput): SelectionPlan | null {
  const ctx = contextOf(input);
  const prev = layerPrevious(ctx);
  if (prev.kind === 'hit') {
    if (!prev.free) return null;
    return { ...emptyPlan(true), candidates: [prev.candidate] };
  }
  const session = layerSession(ctx);
  if (session.kind !== 'hit' || !session.free) return null;
  return { ...emptyPlan(true), candidates: [session.candidate], previousResponseMiss: prev.miss };
}

/** One given account, waited on per `wait` when busy (a chained turn that cannot move). */
export function planForAccount(candidate: PlannedCandidate, wait: Omit<WaitPlan, 'candidate'>): SelectionPlan {
  return { ...emptyPlan(false), candidates: [candidate], waitPlan: { candidate, ...wait } };
}

/** The decision record once the shell knows which candidate (if any) it got. */
export function decisionFor(plan: SelectionPlan, chosen: PlannedCandidate | null, latencyMs: number): Decision {
  const layer: Layer = chosen?.layer ?? 'load_balance';
  const lb = layer === 'load_balance';
  return {
    layer,
    stickyPreviousHit: layer === 'previous_response_id',
    stickySessionHit: layer === 'session_hash',
    candidateCount: lb ? plan.candidateCount : 0,
    topK: lb ? plan.topK : 0,
    loadSkew: lb ? plan.loadSkew : 0,
    selectedAccount: chosen?.account.id ?? null,
    transport: chosen?.transport ?? null,
    transportReason: chosen?.transportReason ?? null,
    previousResponseMiss: layer === 'previous_response_id' ? null : plan.previousResponseMiss,
    sessionMiss: lb ? plan.sessionMiss : null,
    latencyMs,
  };
}

/** What the shell does to the session binding once `layer`'s candidate holds a slot. */
export function sessionBindingAction(layer: Layer): 'bind' | 'refresh' {
  return layer === 'session_hash' ? 'refresh' : 'bind';
}
