import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { deriveSeed, fnv1a64, XorShift64Star, ZERO_SEED_REPLACEMENT } from '../../src/scheduler/rng.js';

const MASK = (1n << 64n) - 1n;

/** Straightforward BigInt FNV-1a 64 over bytes: the reference the limb arithmetic must match. */
function fnvBytes(bytes: Iterable<number>): bigint {
  let h = 0xcbf29ce484222325n;
  for (const b of bytes) h = ((h ^ BigInt(b)) * 0x100000001b3n) & MASK;
  return h;
}

/** fnv1a64's framing: each part's UTF-8 bytes followed by a 0 byte. */
function referenceFnv(parts: string[]): bigint {
  return fnvBytes(parts.flatMap((p) => [...new TextEncoder().encode(p), 0]));
}

describe('seeded randomness', () => {
  it('FNV-1a 64 of nothing is the offset basis', () => {
    expect(fnv1a64([])).toBe(0xcbf29ce484222325n);
  });

  it('FNV-1a 64 on 16-bit limbs equals the BigInt reference for any strings', () => {
    fc.assert(
      fc.property(fc.array(fc.string({ unit: 'binary' }), { maxLength: 4 }), (parts) => {
        expect(fnv1a64(parts)).toBe(referenceFnv(parts));
      }),
      { numRuns: 300 },
    );
  });

  it('the reference matches the published vectors ("a", "foobar")', () => {
    expect(fnvBytes(new TextEncoder().encode('a'))).toBe(0xaf63dc4c8601ec8cn);
    expect(fnvBytes(new TextEncoder().encode('foobar'))).toBe(0x85944171f73967e8n);
  });

  it('the same seed yields the same sequence', () => {
    const a = new XorShift64Star(42n);
    const b = new XorShift64Star(42n);
    for (let i = 0; i < 10; i++) expect(a.nextUint64()).toBe(b.nextUint64());
  });

  it('a seed of 0 still works (replaced by a constant, no all-zero fixed point)', () => {
    const zero = new XorShift64Star(0n);
    const constant = new XorShift64Star(ZERO_SEED_REPLACEMENT);
    const draws = Array.from({ length: 5 }, () => zero.nextUint64());
    expect(draws.every((d) => d !== 0n)).toBe(true);
    expect(new Set(draws).size).toBe(5);
    expect(constant.nextUint64()).toBe(draws[0]);
  });

  it('floats are in [0, 1)', () => {
    const r = new XorShift64Star(7n);
    for (let i = 0; i < 1000; i++) {
      const f = r.nextFloat();
      expect(f).toBeGreaterThanOrEqual(0);
      expect(f).toBeLessThan(1);
    }
  });

  it('a session-anchored seed ignores entropy; an anonymous one mixes it in', () => {
    const anchored = { group: 'g', sessionHash: 'abc', previousResponseId: null, model: 'm' };
    expect(deriveSeed(anchored, 1n)).toBe(deriveSeed(anchored, 2n));
    const byPrevious = { group: 'g', sessionHash: null, previousResponseId: 'resp_1', model: 'm' };
    expect(deriveSeed(byPrevious, 1n)).toBe(deriveSeed(byPrevious, 2n));
    const anonymous = { group: 'g', sessionHash: null, previousResponseId: null, model: 'm' };
    expect(deriveSeed(anonymous, 1n)).not.toBe(deriveSeed(anonymous, 2n));
  });

  it('the seed depends on the group and the model', () => {
    const base = { group: 'g', sessionHash: 'abc', previousResponseId: null, model: 'm' };
    expect(deriveSeed(base, 0n)).not.toBe(deriveSeed({ ...base, group: 'h' }, 0n));
    expect(deriveSeed(base, 0n)).not.toBe(deriveSeed({ ...base, model: 'n' }, 0n));
  });
});
