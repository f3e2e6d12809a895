// Shell: throttles repeated authentication failures per client address (issue 8, security basics).
// An address that fails `failureLimit` times within `failureWindowMs` is refused with 429 for
// `blockMs`, before any key is checked: checking keys while blocked would let a guesser keep
// going and tell a right guess from a wrong one, so a right key from a blocked address is refused
// too. Memory is bounded: at most `maxTrackedAddresses` entries, the least recently failed evicted first.
import { isIPv6 } from 'node:net';

export interface AuthThrottleConfig {
  /** 0 = throttling off. */
  failureLimit: number;
  failureWindowMs: number;
  blockMs: number;
  maxTrackedAddresses: number;
}

interface Entry {
  failures: number;
  windowStart: number;
  blockedUntil: number;
}

/**
 * Pure: the identity an address is throttled under. IPv4-mapped IPv6 is the IPv4 address; other
 * IPv6 addresses count per /64, since one host usually owns a whole /64 and could rotate within it.
 */
export function throttleKey(address: string | undefined): string {
  if (!address) return 'unknown';
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1];
  if (!isIPv6(address)) return address;
  const [head, tail = ''] = address.toLowerCase().split('::');
  const headGroups = head ? head.split(':') : [];
  const tailGroups = tail ? tail.split(':') : [];
  const missing = 8 - headGroups.length - tailGroups.length;
  const groups = address.includes('::') ? [...headGroups, ...Array<string>(Math.max(0, missing)).fill('0'), ...tailGroups] : headGroups;
  return `${groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, '')).join(':')}::/64`;
}

export class AuthThrottle {
  private readonly entries = new Map<string, Entry>();

  constructor(private readonly config: () => AuthThrottleConfig, private readonly now: () => number) {}

  /** Milliseconds until the address may try again, or null when it is not blocked. */
  blockedFor(address: string | undefined): number | null {
    const cfg = this.config();
    if (cfg.failureLimit === 0) return null;
    const e = this.entries.get(throttleKey(address));
    if (!e) return null;
    const left = e.blockedUntil - this.now();
    return left > 0 ? left : null;
  }

  /** Records one failed authentication; returns true when this failure started a block. */
  recordFailure(address: string | undefined): boolean {
    const cfg = this.config();
    if (cfg.failureLimit === 0) return false;
    const key = throttleKey(address);
    const now = this.now();
    let e = this.entries.get(key);
    if (e) {
      // Re-inserted so Map order stays "least recently failed first" for eviction.
      this.entries.delete(key);
      if (now - e.windowStart >= cfg.failureWindowMs && e.blockedUntil <= now) e = { failures: 0, windowStart: now, blockedUntil: 0 };
    } else {
      e = { failures: 0, windowStart: now, blockedUntil: 0 };
      this.evictFor(cfg.maxTrackedAddresses - 1);
    }
    e.failures++;
    let started = false;
    if (e.failures >= cfg.failureLimit && e.blockedUntil <= now) {
      e.blockedUntil = now + cfg.blockMs;
      e.failures = 0;
      e.windowStart = now;
      started = true;
    }
    this.entries.set(key, e);
    return started;
  }

  /** Addresses currently tracked (for tests and the bound). */
  get size(): number {
    return this.entries.size;
  }

  /**
   * Makes room for one more entry by evicting the least recently failed addresses (Map order).
   * Constant work per failure, so a flood from many addresses cannot make this slow; the price is
   * that such a flood can push an old block out early.
   */
  private evictFor(limit: number): void {
    for (const k of this.entries.keys()) {
      if (this.entries.size <= limit) break;
      this.entries.delete(k);
    }
  }
}
