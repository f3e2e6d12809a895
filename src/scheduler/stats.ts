// Runtime stats per account: error-rate EWMA and TTFT EWMA (α = 0.2, first TTFT sample as is).
// Improvement on the seed: entries exist only for configured accounts, and evidence decays toward
// neutral (error 0, no TTFT) with a half-life, so an account that was bad once and then got no
// traffic is not starved forever. The math is pure; RuntimeStats only holds the entries and reads
// the injected clock. Every method is synchronous, so updates are atomic on the event loop.
import type { Clock } from '../clock.js';
import type { AccountStats } from './types.js';

export const EWMA_ALPHA = 0.2;
/** Below this confidence a TTFT is forgotten (6 half-lives ≈ 1 h at the default). */
export const MIN_TTFT_WEIGHT = 1 / 64;

export interface StatsEntry {
  /** Error EWMA as of lastSampleMs. */
  errorRate: number;
  ttftMs: number | null;
  /** Confidence in ttftMs as of lastSampleMs. */
  ttftWeight: number;
  lastSampleMs: number;
}

export const NEUTRAL_STATS: Readonly<AccountStats> = Object.freeze({ errorRate: 0, ttftMs: null });

/** 1 at age 0, ½ after one half-life. */
export function decayFactor(ageMs: number, halfLifeMs: number): number {
  if (!(ageMs > 0)) return 1;
  if (!(halfLifeMs > 0)) return 0;
  return 0.5 ** (ageMs / halfLifeMs);
}

/** The entry as seen at nowMs. Pure. */
export function decayedStats(entry: StatsEntry, nowMs: number, halfLifeMs: number): AccountStats {
  const d = decayFactor(nowMs - entry.lastSampleMs, halfLifeMs);
  const weight = entry.ttftWeight * d;
  if (entry.ttftMs === null || weight < MIN_TTFT_WEIGHT) return { errorRate: entry.errorRate * d, ttftMs: null };
  return { errorRate: entry.errorRate * d, ttftMs: entry.ttftMs, ttftWeight: weight };
}

function validTtft(ttftMs: number | null): ttftMs is number {
  return ttftMs !== null && Number.isFinite(ttftMs) && ttftMs > 0;
}

/**
 * One finished turn applied to an entry (or to nothing yet). Pure: returns a new entry.
 * A stale TTFT gives the new sample more pull (α' = 1 − (1−α)·weight), so at zero confidence
 * the sample is taken as is, exactly like a first sample.
 */
export function applySample(
  prev: StatsEntry | undefined,
  success: boolean,
  ttftMs: number | null,
  nowMs: number,
  halfLifeMs: number,
): StatsEntry {
  const d = prev ? decayFactor(nowMs - prev.lastSampleMs, halfLifeMs) : 1;
  const errorBefore = prev ? prev.errorRate * d : 0;
  let ttft = prev?.ttftMs ?? null;
  let weight = prev ? prev.ttftWeight * d : 0;
  if (ttft !== null && weight < MIN_TTFT_WEIGHT) {
    ttft = null;
    weight = 0;
  }
  const errorRate = EWMA_ALPHA * (success ? 0 : 1) + (1 - EWMA_ALPHA) * errorBefore;
  if (validTtft(ttftMs)) {
    if (ttft === null) {
      ttft = ttftMs;
    } else {
      const alpha = 1 - (1 - EWMA_ALPHA) * weight;
      ttft = alpha * ttftMs + (1 - alpha) * ttft;
    }
    weight = 1;
  }
  return { errorRate, ttftMs: ttft, ttftWeight: ttft === null ? 0 : weight, lastSampleMs: nowMs };
}

export interface RuntimeStatsOptions {
  clock: Clock;
  halfLifeMs: number;
  accountIds: Iterable<string>;
}

export class RuntimeStats {
  private readonly clock: Clock;
  private halfLifeMs: number;
  private configured: Set<string>;
  private readonly entries = new Map<string, StatsEntry>();

  constructor(opts: RuntimeStatsOptions) {
    this.clock = opts.clock;
    this.halfLifeMs = opts.halfLifeMs;
    this.configured = new Set(opts.accountIds);
  }

  /** Records a finished turn; returns the new stats, or null for an account not configured. */
  report(accountId: string, success: boolean, ttftMs: number | null): AccountStats | null {
    if (!this.configured.has(accountId)) return null;
    const now = this.clock.now();
    const next = applySample(this.entries.get(accountId), success, ttftMs, now, this.halfLifeMs);
    this.entries.set(accountId, next);
    return decayedStats(next, now, this.halfLifeMs);
  }

  get(accountId: string): AccountStats {
    const e = this.entries.get(accountId);
    return e ? decayedStats(e, this.clock.now(), this.halfLifeMs) : NEUTRAL_STATS;
  }

  /**
   * Stats of the accounts that have samples (absent = neutral), as of now. A lazy view, decayed
   * on read: a select reads only the accounts it considers, never the whole table up front.
   * Valid for the current decision only (it sees later reports).
   */
  snapshot(): ReadonlyMap<string, AccountStats> {
    return new DecayedStatsView(this.entries, this.clock.now(), this.halfLifeMs);
  }

  /** Live reload: forget accounts no longer configured, keep the others' history. */
  reconfigure(accountIds: Iterable<string>, halfLifeMs: number): void {
    this.configured = new Set(accountIds);
    this.halfLifeMs = halfLifeMs;
    for (const id of [...this.entries.keys()]) if (!this.configured.has(id)) this.entries.delete(id);
  }

  get size(): number {
    return this.entries.size;
  }
}

/** A read-only Map over the live entries, each decayed to `nowMs` when read. */
class DecayedStatsView implements ReadonlyMap<string, AccountStats> {
  constructor(
    private readonly table: ReadonlyMap<string, StatsEntry>,
    private readonly nowMs: number,
    private readonly halfLifeMs: number,
  ) {}

  get size(): number {
    return this.table.size;
  }

  get(id: string): AccountStats | undefined {
    const e = this.table.get(id);
    return e ? decayedStats(e, this.nowMs, this.halfLifeMs) : undefined;
  }

  has(id: string): boolean {
    return this.table.has(id);
  }

  // Whole-table reads (admin, metrics) are rare: they materialise a plain Map.
  private materialise(): Map<string, AccountStats> {
    const out = new Map<string, AccountStats>();
    for (const [id, e] of this.table) out.set(id, decayedStats(e, this.nowMs, this.halfLifeMs));
    return out;
  }

  forEach(fn: (value: AccountStats, key: string, map: ReadonlyMap<string, AccountStats>) => void): void {
    for (const [id, stats] of this.materialise()) fn(stats, id, this);
  }

  entries(): MapIterator<[string, AccountStats]> {
    return this.materialise().entries();
  }

  keys(): MapIterator<string> {
    return this.table.keys();
  }

  values(): MapIterator<AccountStats> {
    return this.materialise().values();
  }

  [Symbol.iterator](): MapIterator<[string, AccountStats]> {
    return this.entries();
  }
}
