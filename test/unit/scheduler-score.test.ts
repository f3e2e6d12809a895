import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  compareCandidates,
  loadSkewOf,
  scoreCandidates,
  selectTopK,
  weightedOrder,
  type Candidate,
} from '../../src/scheduler/score.js';
import { XorShift64Star } from '../../src/scheduler/rng.js';
import type { AccountStats } from '../../src/scheduler/types.js';
import { account, schedulerConfig } from './scheduler-fixtures.js';

const weights = schedulerConfig().weights;

function cand(
  id: string,
  o: { priority?: number; loadRate?: number; waiting?: number; inflight?: number; stats?: AccountStats; score?: number } = {},
): Candidate {
  return {
    account: account(id, { priority: o.priority ?? 1 }),
    load: { inflight: o.inflight ?? 0, waiting: o.waiting ?? 0, loadRate: o.loadRate ?? 0 },
    stats: o.stats ?? { errorRate: 0, ttftMs: null },
    score: o.score ?? 0,
  };
}

describe('load-balance score (SPEC §5)', () => {
  it('an idle, error-free account without TTFT samples scores every weight, TTFT at half', () => {
    const c = [cand('a')];
    scoreCandidates(c, weights);
    expect(c[0].score).toBeCloseTo(1 + 1 + 0.7 + 0.8 + 0.5 * 0.5, 10);
  });

  it('each factor follows the formula', () => {
    const c = [
      cand('a', { priority: 1, loadRate: 50, waiting: 2, stats: { errorRate: 0.25, ttftMs: 1000 } }),
      cand('b', { priority: 3, loadRate: 0, waiting: 4, stats: { errorRate: 0, ttftMs: 3000 } }),
      cand('c', { priority: 2, loadRate: 150, waiting: 0, stats: { errorRate: 1, ttftMs: 2000 } }),
    ];
    scoreCandidates(c, weights);
    // priority: 1 − (p − 1)/2; load: 1 − clamp(loadRate/100); queue: 1 − waiting/4; ttft: 1 − (t − 1000)/2000
    expect(c[0].score).toBeCloseTo(1 * 1 + 1 * 0.5 + 0.7 * 0.5 + 0.8 * 0.75 + 0.5 * 1, 10);
    expect(c[1].score).toBeCloseTo(1 * 0 + 1 * 1 + 0.7 * 0 + 0.8 * 1 + 0.5 * 0, 10);
    expect(c[2].score).toBeCloseTo(1 * 0.5 + 1 * 0 + 0.7 * 1 + 0.8 * 0 + 0.5 * 0.5, 10);
  });

  it('a TTFT with decayed confidence is blended toward the neutral factor', () => {
    const c = [
      cand('fast', { stats: { errorRate: 0, ttftMs: 1000 } }),
      cand('slow', { stats: { errorRate: 0, ttftMs: 3000, ttftWeight: 0.5 } }),
    ];
    scoreCandidates(c, { priority: 0, load: 0, queue: 0, errorRate: 0, ttft: 1 });
    expect(c[0].score).toBeCloseTo(1, 10);
    expect(c[1].score).toBeCloseTo(0.5 * 0 + 0.5 * 0.5, 10);
  });

  it('load skew is the population standard deviation of load rates', () => {
    expect(loadSkewOf([cand('a', { loadRate: 50 })])).toBe(0);
    expect(loadSkewOf([cand('a', { loadRate: 0 }), cand('b', { loadRate: 100 })])).toBeCloseTo(50, 10);
    expect(loadSkewOf([cand('a', { loadRate: 30 }), cand('b', { loadRate: 30 })])).toBe(0);
  });
});

describe('ordering and top-K', () => {
  it('ties break by priority, then load rate, then waiting, then id', () => {
    const byPriority = [cand('a', { priority: 2 }), cand('b', { priority: 1 })];
    expect(byPriority.sort(compareCandidates).map((c) => c.account.id)).toEqual(['b', 'a']);
    const byLoad = [cand('a', { loadRate: 20 }), cand('b', { loadRate: 10 })];
    expect(byLoad.sort(compareCandidates).map((c) => c.account.id)).toEqual(['b', 'a']);
    const byWaiting = [cand('a', { waiting: 2 }), cand('b', { waiting: 1 })];
    expect(byWaiting.sort(compareCandidates).map((c) => c.account.id)).toEqual(['b', 'a']);
    const byId = [cand('b'), cand('a')];
    expect(byId.sort(compareCandidates).map((c) => c.account.id)).toEqual(['a', 'b']);
    const byScore = [cand('a', { score: 1, priority: 1 }), cand('b', { score: 2, priority: 9 })];
    expect(byScore.sort(compareCandidates).map((c) => c.account.id)).toEqual(['b', 'a']);
  });

  it('NaN scores sort last', () => {
    const c = [cand('a', { score: Number.NaN }), cand('b', { score: -5 })];
    expect(c.sort(compareCandidates).map((x) => x.account.id)).toEqual(['b', 'a']);
  });

  it('the bounded heap returns exactly the best k of a full sort, best first', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ score: fc.integer({ min: 0, max: 5 }), priority: fc.integer({ min: 1, max: 3 }), load: fc.integer({ min: 0, max: 3 }) }), {
          maxLength: 40,
        }),
        fc.integer({ min: 1, max: 10 }),
        (rows, k) => {
          const cs = rows.map((r, i) => cand(`acc-${String(i).padStart(2, '0')}`, { score: r.score, priority: r.priority, loadRate: r.load }));
          const expected = cs.slice().sort(compareCandidates).slice(0, k).map((c) => c.account.id);
          expect(selectTopK(cs, k).map((c) => c.account.id)).toEqual(expected);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('weighted order without replacement', () => {
  it('returns every candidate exactly once', () => {
    const cs = [cand('a', { score: 3 }), cand('b', { score: 2 }), cand('c', { score: 1 })];
    const order = weightedOrder(cs, new XorShift64Star(99n));
    expect(order.map((c) => c.account.id).sort()).toEqual(['a', 'b', 'c']);
  });

  it('picks in proportion to score − min + 1', () => {
    const cs = [cand('a', { score: 3 }), cand('b', { score: 1 })];
    const rng = new XorShift64Star(1234n);
    let aFirst = 0;
    const runs = 4000;
    for (let i = 0; i < runs; i++) if (weightedOrder(cs, rng)[0].account.id === 'a') aFirst++;
    // weights 3 and 1 → a first with probability 3/4
    expect(aFirst / runs).toBeGreaterThan(0.7);
    expect(aFirst / runs).toBeLessThan(0.8);
  });

  it('NaN and infinite scores get weight 1', () => {
    const cs = [cand('nan', { score: Number.NaN }), cand('inf', { score: Infinity }), cand('ok', { score: 0 })];
    const rng = new XorShift64Star(5n);
    const firsts = new Map<string, number>();
    const runs = 3000;
    for (let i = 0; i < runs; i++) {
      const id = weightedOrder(cs, rng)[0].account.id;
      firsts.set(id, (firsts.get(id) ?? 0) + 1);
    }
    // all three weigh 1: each first about a third of the time
    for (const id of ['nan', 'inf', 'ok']) {
      expect((firsts.get(id) ?? 0) / runs).toBeGreaterThan(0.28);
      expect((firsts.get(id) ?? 0) / runs).toBeLessThan(0.39);
    }
  });

  it('the same seed gives the same order', () => {
    const cs = Array.from({ length: 7 }, (_, i) => cand(`a${i}`, { score: i % 3 }));
    const a = weightedOrder(cs, new XorShift64Star(777n)).map((c) => c.account.id);
    const b = weightedOrder(cs, new XorShift64Star(777n)).map((c) => c.account.id);
    expect(a).toEqual(b);
  });
});
