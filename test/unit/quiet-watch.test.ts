// The sliced idle timeout (quiet-watch.ts): activity resets it, QUIET_SLICES quiet checks in a
// row end it, and the slices together are never shorter than the timeout.
import { describe, expect, it } from 'vitest';
import { QUIET_SLICES, quietAfterCheck, quietSliceMs, type QuietWatch } from '../../src/session/quiet-watch.js';

describe('quiet watch', () => {
  it('is quiet only after QUIET_SLICES checks in a row without activity', () => {
    const w: QuietWatch = { seenAtCheck: 0, quietSlices: 0 };
    for (let i = 1; i < QUIET_SLICES; i++) expect(quietAfterCheck(w, 0)).toBe(false);
    expect(quietAfterCheck(w, 0)).toBe(true);
  });

  it('starts counting again from any activity between checks', () => {
    const w: QuietWatch = { seenAtCheck: 0, quietSlices: 0 };
    for (let i = 1; i < QUIET_SLICES; i++) expect(quietAfterCheck(w, 0)).toBe(false);
    expect(quietAfterCheck(w, 3)).toBe(false);
    for (let i = 1; i < QUIET_SLICES; i++) expect(quietAfterCheck(w, 3)).toBe(false);
    expect(quietAfterCheck(w, 3)).toBe(true);
  });

  it('slices add up to at least the timeout and at most one slice more', () => {
    for (const t of [1, 7, 8, 1200, 300_000, 300_001]) {
      const slice = quietSliceMs(t);
      expect(slice * QUIET_SLICES).toBeGreaterThanOrEqual(t);
      expect(slice * QUIET_SLICES).toBeLessThan(t + QUIET_SLICES + slice);
    }
  });
});
