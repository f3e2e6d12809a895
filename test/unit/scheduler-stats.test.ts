import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { applySample, decayedStats, RuntimeStats } from '../../src/scheduler/stats.js';

const HALF_LIFE = 600_000;

function stats(ids = ['a', 'b']) {
  const clock = new ManualClock();
  return { clock, s: new RuntimeStats({ clock, halfLifeMs: HALF_LIFE, accountIds: ids }) };
}

describe('runtime stats (EWMA α = 0.2)', () => {
  it('an account without samples reads neutral', () => {
    expect(stats().s.get('a')).toEqual({ errorRate: 0, ttftMs: null });
  });

  it('error rate moves by α per finished turn', () => {
    const { s } = stats();
    s.report('a', false, null);
    expect(s.get('a').errorRate).toBeCloseTo(0.2, 12);
    s.report('a', false, null);
    expect(s.get('a').errorRate).toBeCloseTo(0.36, 12);
    s.report('a', true, null);
    expect(s.get('a').errorRate).toBeCloseTo(0.288, 12);
  });

  it('the first TTFT sample is taken as is, later ones are averaged', () => {
    const { s } = stats();
    s.report('a', true, 1000);
    expect(s.get('a').ttftMs).toBe(1000);
    s.report('a', true, 2000);
    expect(s.get('a').ttftMs).toBeCloseTo(1200, 9);
  });

  it('missing, zero, negative or non-finite TTFT samples are ignored', () => {
    const { s } = stats();
    s.report('a', true, 1000);
    for (const t of [null, 0, -5, Number.NaN, Infinity]) s.report('a', true, t);
    expect(s.get('a').ttftMs).toBe(1000);
  });

  it('entries are bounded to configured accounts, and a reload forgets removed ones', () => {
    const { s } = stats(['a']);
    expect(s.report('ghost', false, 10)).toBeNull();
    expect(s.size).toBe(0);
    s.report('a', false, 10);
    expect(s.size).toBe(1);
    s.reconfigure(['b'], HALF_LIFE);
    expect(s.size).toBe(0);
    expect(s.get('a')).toEqual({ errorRate: 0, ttftMs: null });
  });

  it('without samples for one half-life, the error rate halves and the TTFT confidence halves', () => {
    const { s, clock } = stats();
    for (let i = 0; i < 10; i++) s.report('a', false, 20_000);
    const before = s.get('a');
    clock.advance(HALF_LIFE);
    const after = s.get('a');
    expect(after.errorRate).toBeCloseTo(before.errorRate / 2, 12);
    expect(after.ttftMs).toBe(20_000);
    expect(after.ttftWeight).toBeCloseTo(0.5, 12);
  });

  it('a once-bad account decays back toward neutral and its old TTFT is eventually forgotten', () => {
    const { s, clock } = stats();
    for (let i = 0; i < 20; i++) s.report('a', false, 30_000);
    clock.advance(HALF_LIFE * 10);
    const st = s.get('a');
    expect(st.errorRate).toBeLessThan(0.001);
    expect(st.ttftMs).toBeNull();
  });

  it('a new TTFT after a long silence weighs more than α', () => {
    const stale = applySample(undefined, true, 10_000, 0, HALF_LIFE);
    const next = applySample(stale, true, 1000, HALF_LIFE, HALF_LIFE);
    // confidence 0.5 → α' = 1 − 0.8·0.5 = 0.6
    expect(next.ttftMs).toBeCloseTo(0.6 * 1000 + 0.4 * 10_000, 9);
    expect(decayedStats(next, HALF_LIFE, HALF_LIFE).ttftWeight).toBe(1);
  });

  it('the snapshot carries only accounts with samples, decayed as of when it was taken', () => {
    const { s, clock } = stats();
    s.report('b', false, 500);
    clock.advance(HALF_LIFE);
    const view = s.snapshot();
    expect([...view.keys()]).toEqual(['b']);
    expect(view.size).toBe(1);
    expect(view.get('a')).toBeUndefined();
    expect(view.get('b')?.errorRate).toBeCloseTo(0.1, 12);
    expect([...view]).toEqual([['b', view.get('b')]]);
  });
});
