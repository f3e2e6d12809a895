// Pure, deterministic randomness for the load-balance order: a FNV-1a 64 seed over the request's
// anchors and a xorshift64* generator. Same seed → same sequence, on every instance and restart,
// which is what keeps one session's order stable.

const MASK64 = (1n << 64n) - 1n;
/** Replaces a zero seed: xorshift has an all-zero fixed point. (2^64 / golden ratio.) */
export const ZERO_SEED_REPLACEMENT = 0x9e3779b97f4a7c15n;
const XORSHIFT_MULTIPLIER = 2685821657736338717n;

const utf8 = new TextEncoder();

/**
 * FNV-1a 64 over the UTF-8 bytes of each part, a 0 byte after each so ("ab","c") ≠ ("a","bc").
 * Arithmetic on four 16-bit limbs (lo → hi) keeps it off BigInt in the per-byte loop.
 */
export function fnv1a64(parts: readonly string[]): bigint {
  // offset basis 0xcbf29ce484222325
  let h0 = 0x2325;
  let h1 = 0x8422;
  let h2 = 0x9ce4;
  let h3 = 0xcbf2;
  const step = (byte: number): void => {
    h0 ^= byte;
    // × prime 0x100000001b3 = 0x1b3 + (1 << 40): limb 0 × 0x1b3, plus limb 2 gets × 0x100 shifted.
    const t0 = h0 * 0x1b3;
    const t1 = h1 * 0x1b3;
    const t2 = h2 * 0x1b3 + h0 * 0x100;
    const t3 = h3 * 0x1b3 + h1 * 0x100;
    h0 = t0 & 0xffff;
    const c1 = t1 + Math.floor(t0 / 0x10000);
    h1 = c1 & 0xffff;
    const c2 = t2 + Math.floor(c1 / 0x10000);
    h2 = c2 & 0xffff;
    h3 = (t3 + Math.floor(c2 / 0x10000)) & 0xffff;
  };
  for (const part of parts) {
    let ascii = true;
    for (let i = 0; i < part.length; i++) {
      if (part.charCodeAt(i) >= 0x80) {
        ascii = false;
        break;
      }
    }
    if (ascii) {
      for (let i = 0; i < part.length; i++) step(part.charCodeAt(i));
    } else {
      for (const b of utf8.encode(part)) step(b);
    }
    step(0);
  }
  return (BigInt(h3) << 48n) | (BigInt(h2) << 32n) | (BigInt(h1) << 16n) | BigInt(h0);
}

export interface SeedInput {
  group: string;
  sessionHash: string | null;
  previousResponseId: string | null;
  model: string;
}

/**
 * Deterministic per session anchor. A request with neither a session key nor a previous response
 * id mixes in `entropy` (the shell passes time + counter + randomness) so that anonymous traffic
 * does not always start with the same account.
 */
export function deriveSeed(req: SeedInput, entropy: bigint): bigint {
  const session = req.sessionHash?.trim() ?? '';
  const previous = req.previousResponseId?.trim() ?? '';
  let seed = fnv1a64([session, previous, req.model.trim(), req.group]);
  if (session === '' && previous === '') seed = (seed ^ entropy) & MASK64;
  return seed;
}

/** xorshift64* (Vigna). Not cryptographic; only spreads load. */
export class XorShift64Star {
  private state: bigint;
  constructor(seed: bigint) {
    const s = seed & MASK64;
    this.state = s === 0n ? ZERO_SEED_REPLACEMENT : s;
  }
  nextUint64(): bigint {
    let x = this.state;
    x ^= x >> 12n;
    x = (x ^ (x << 25n)) & MASK64;
    x ^= x >> 27n;
    this.state = x;
    return (x * XORSHIFT_MULTIPLIER) & MASK64;
  }
  /** Uniform in [0, 1) from the top 53 bits. */
  nextFloat(): number {
    return Number(this.nextUint64() >> 11n) / 2 ** 53;
  }
}
