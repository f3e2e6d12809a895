// Pure load-balance scoring (SPEC §5): factors, weights, top-K by a bounded heap, and the
// weighted-random try order. No I/O, no clock; randomness comes in as a seeded generator.
import type { AccountConfig, SchedulerConfig } from '../config/schema.js';
import type { AccountLoad } from '../state/store.js';
import type { AccountStats } from './types.js';

export type Weights = SchedulerConfig['weights'];

export interface Candidate {
  account: AccountConfig;
  load: AccountLoad;
  stats: AccountStats;
  /** Filled in by scoreCandidates. */
  score: number;
}

/** Neutral TTFT factor: no sample, or every sample equal. */
export const NEUTRAL_TTFT_FACTOR = 0.5;

function clamp01(v: number): number {
  if (v < 0) return 0;
  if (v > 1) return 1;
  return v;
}

function ttftWeight(stats: AccountStats): number {
  return stats.ttftWeight === undefined ? 1 : clamp01(stats.ttftWeight);
}

/** Population standard deviation from the running sums of load rates (Σx, Σx², n). */
export function loadSkewFromMoments(sum: number, sumSquares: number, n: number): number {
  if (n <= 1) return 0;
  const mean = sum / n;
  return Math.sqrt(Math.max(0, sumSquares / n - mean * mean));
}

/** How unevenly the compatible set is loaded: the standard deviation of its load rates. */
export function loadSkewOf(candidates: readonly Candidate[]): number {
  let sum = 0;
  let sumSq = 0;
  for (const c of candidates) {
    sum += c.load.loadRate;
    sumSq += c.load.loadRate * c.load.loadRate;
  }
  return loadSkewFromMoments(sum, sumSq, candidates.length);
}

/** The set-wide figures the relative factors (priority, queue, TTFT) are normalised by. */
export interface ScoreBounds {
  pMin: number;
  pMax: number;
  /** Largest waiting count in the set, at least 1. */
  maxWaiting: number;
  tMin: number;
  tMax: number;
}

export function emptyBounds(): ScoreBounds {
  return { pMin: Infinity, pMax: -Infinity, maxWaiting: 1, tMin: Infinity, tMax: -Infinity };
}

export function widenBounds(b: ScoreBounds, account: AccountConfig, load: AccountLoad, stats: AccountStats): void {
  const p = account.priority;
  if (p < b.pMin) b.pMin = p;
  if (p > b.pMax) b.pMax = p;
  if (load.waiting > b.maxWaiting) b.maxWaiting = load.waiting;
  const t = stats.ttftMs;
  if (t !== null && t > 0) {
    if (t < b.tMin) b.tMin = t;
    if (t > b.tMax) b.tMax = t;
  }
}

/**
 * The score function of one select, with the set-wide figures and the weights folded in:
 *   priority·(1−(p−pmin)/(pmax−pmin))  (1 when all equal)
 * + load·(1−loadRate/100) + queue·(1−waiting/maxWaiting) + errorRate·(1−errEWMA)
 * + ttft·ttftFactor  (0.5 without samples, else 1−(t−tmin)/(tmax−tmin)).
 * maxWaiting is the largest waiting count in the set (at least 1), as in the seed: the queue
 * factor ranks accounts against each other, like the priority and TTFT factors do.
 * A TTFT whose confidence has decayed (stats.ttftWeight < 1) is blended toward the neutral 0.5.
 */
export function scorer(b: ScoreBounds, weights: Weights): (account: AccountConfig, load: AccountLoad, stats: AccountStats) => number {
  const pMin = b.pMin;
  const pSpan = b.pMax > b.pMin ? b.pMax - b.pMin : 0;
  const maxWaiting = b.maxWaiting;
  const tMin = b.tMin;
  const tSpan = b.tMax > b.tMin ? b.tMax - b.tMin : 0;
  const wPriority = weights.priority;
  const wLoad = weights.load;
  const wQueue = weights.queue;
  const wError = weights.errorRate;
  const wTtft = weights.ttft;
  return (account, load, stats) => {
    const priorityFactor = pSpan > 0 ? 1 - (account.priority - pMin) / pSpan : 1;
    const loadFactor = 1 - clamp01(load.loadRate / 100);
    const queueFactor = 1 - clamp01(load.waiting / maxWaiting);
    const errorFactor = 1 - clamp01(stats.errorRate);
    let ttftFactor = NEUTRAL_TTFT_FACTOR;
    const t = stats.ttftMs;
    if (t !== null && t > 0 && tSpan > 0) {
      const raw = 1 - clamp01((t - tMin) / tSpan);
      const w = ttftWeight(stats);
      ttftFactor = w * raw + (1 - w) * NEUTRAL_TTFT_FACTOR;
    }
    return wPriority * priorityFactor + wLoad * loadFactor + wQueue * queueFactor + wError * errorFactor + wTtft * ttftFactor;
  };
}

/** Sets `score` on every candidate (the whole set is the normalisation basis). */
export function scoreCandidates(candidates: Candidate[], weights: Weights): void {
  const b = emptyBounds();
  for (const c of candidates) widenBounds(b, c.account, c.load, c.stats);
  const score = scorer(b, weights);
  for (const c of candidates) c.score = score(c.account, c.load, c.stats);
}

/** NaN sorts as the worst score so the comparison stays a total order. */
function orderable(score: number): number {
  return Number.isNaN(score) ? -Infinity : score;
}

/** Negative when `a` is better: score desc, priority asc, loadRate asc, waiting asc, id asc. */
export function compareCandidates(a: Candidate, b: Candidate): number {
  return compareKeys(a.score, a.account, a.load, b.score, b.account, b.load);
}

/** compareCandidates on the raw keys, so a candidate need not exist to be compared. */
function compareKeys(scoreA: number, accA: AccountConfig, loadA: AccountLoad, scoreB: number, accB: AccountConfig, loadB: AccountLoad): number {
  const sa = orderable(scoreA);
  const sb = orderable(scoreB);
  if (sa !== sb) return sa > sb ? -1 : 1;
  if (accA.priority !== accB.priority) return accA.priority - accB.priority;
  if (loadA.loadRate !== loadB.loadRate) return loadA.loadRate - loadB.loadRate;
  if (loadA.waiting !== loadB.waiting) return loadA.waiting - loadB.waiting;
  if (accA.id === accB.id) return 0;
  return accA.id < accB.id ? -1 : 1;
}

/**
 * Keeps the best `k` candidates offered, in O(log k) per offer: a bounded heap whose root is the
 * worst candidate kept so far, replaced whenever a better one comes by.
 */
export class TopK<T extends Candidate> {
  private readonly heap: T[] = [];
  private readonly limit: number;
  constructor(k: number) {
    this.limit = Math.max(1, Math.floor(k));
  }

  /** Whether a candidate with these keys would be kept: callers build it only then. */
  accepts(score: number, account: AccountConfig, load: AccountLoad): boolean {
    if (this.heap.length < this.limit) return true;
    const worst = this.heap[0];
    return compareKeys(score, account, load, worst.score, worst.account, worst.load) < 0;
  }

  offer(c: T): void {
    const heap = this.heap;
    if (heap.length < this.limit) {
      heap.push(c);
      this.siftUp(heap.length - 1);
    } else if (compareCandidates(c, heap[0]) < 0) {
      heap[0] = c;
      this.siftDown(0);
    }
  }

  /** The kept candidates, best first. */
  ranked(): T[] {
    return this.heap.slice().sort(compareCandidates);
  }

  // In this heap a parent is worse than its children, so heap[0] is the worst kept.
  private worse(i: number, j: number): boolean {
    return compareCandidates(this.heap[i], this.heap[j]) > 0;
  }

  private swap(i: number, j: number): void {
    const t = this.heap[i];
    this.heap[i] = this.heap[j];
    this.heap[j] = t;
  }

  private siftUp(start: number): void {
    let i = start;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.worse(i, parent)) return;
      this.swap(i, parent);
      i = parent;
    }
  }

  private siftDown(start: number): void {
    const n = this.heap.length;
    let i = start;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let worst = i;
      if (l < n && this.worse(l, worst)) worst = l;
      if (r < n && this.worse(r, worst)) worst = r;
      if (worst === i) return;
      this.swap(i, worst);
      i = worst;
    }
  }
}

/** The best `k` candidates, best first, in O(n log k). */
export function selectTopK<T extends Candidate>(candidates: Iterable<T>, k: number): T[] {
  const top = new TopK<T>(k);
  for (const c of candidates) top.offer(c);
  return top.ranked();
}

/** Something that draws uniform floats in [0, 1). */
export interface FloatSource {
  nextFloat(): number;
}

/**
 * Weighted random order without replacement, weight = score − min + 1, so the best of the top-K
 * is favoured without monopolising. A non-finite or non-positive weight (NaN/∞ scores) counts 1.
 */
export function weightedOrder<T extends { score: number }>(ranked: readonly T[], rng: FloatSource): T[] {
  if (ranked.length <= 1) return ranked.slice();
  let min = Infinity;
  for (const c of ranked) if (Number.isFinite(c.score) && c.score < min) min = c.score;
  const pool = ranked.slice();
  const weights = pool.map((c) => {
    const w = c.score - min + 1;
    return Number.isFinite(w) && w > 0 ? w : 1;
  });
  const order: T[] = [];
  while (pool.length > 0) {
    let total = 0;
    for (const w of weights) total += w;
    const r = rng.nextFloat() * total;
    let pick = pool.length - 1;
    let acc = 0;
    for (let i = 0; i < weights.length; i++) {
      acc += weights[i];
      if (r < acc) {
        pick = i;
        break;
      }
    }
    order.push(pool[pick]);
    pool.splice(pick, 1);
    weights.splice(pick, 1);
  }
  return order;
}
