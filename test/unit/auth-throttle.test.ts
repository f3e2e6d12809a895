import { describe, expect, it } from 'vitest';
import { AuthThrottle, throttleKey } from '../../src/ingress/auth-throttle.js';

function throttle(over: Partial<{ failureLimit: number; failureWindowMs: number; blockMs: number; maxTrackedAddresses: number }> = {}) {
  let now = 1_000_000;
  const cfg = { failureLimit: 3, failureWindowMs: 1000, blockMs: 5000, maxTrackedAddresses: 100, ...over };
  const t = new AuthThrottle(() => cfg, () => now);
  return { t, advance: (ms: number) => (now += ms) };
}

describe('auth failure throttle', () => {
  it('blocks an address after failureLimit failures within the window, for blockMs', () => {
    const { t, advance } = throttle();
    expect(t.recordFailure('10.0.0.1')).toBe(false);
    expect(t.recordFailure('10.0.0.1')).toBe(false);
    expect(t.blockedFor('10.0.0.1')).toBeNull();
    expect(t.recordFailure('10.0.0.1')).toBe(true);
    expect(t.blockedFor('10.0.0.1')).toBe(5000);
    expect(t.blockedFor('10.0.0.2')).toBeNull();
    advance(4999);
    expect(t.blockedFor('10.0.0.1')).toBe(1);
    advance(1);
    expect(t.blockedFor('10.0.0.1')).toBeNull();
  });

  it('forgets failures older than the window', () => {
    const { t, advance } = throttle();
    t.recordFailure('10.0.0.1');
    t.recordFailure('10.0.0.1');
    advance(1000);
    expect(t.recordFailure('10.0.0.1')).toBe(false);
    expect(t.blockedFor('10.0.0.1')).toBeNull();
  });

  it('failureLimit 0 turns throttling off', () => {
    const { t } = throttle({ failureLimit: 0 });
    for (let i = 0; i < 50; i++) t.recordFailure('10.0.0.1');
    expect(t.blockedFor('10.0.0.1')).toBeNull();
    expect(t.size).toBe(0);
  });

  it('tracks at most maxTrackedAddresses, forgetting the least recently failed first', () => {
    const { t } = throttle({ maxTrackedAddresses: 100 });
    for (let i = 0; i < 10_000; i++) t.recordFailure(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
    expect(t.size).toBe(100);
    for (let i = 0; i < 3; i++) t.recordFailure('192.0.2.1');
    expect(t.blockedFor('192.0.2.1')).not.toBeNull();
    expect(t.size).toBe(100);
  });

  it('counts IPv4-mapped addresses as IPv4 and IPv6 per /64', () => {
    expect(throttleKey('::ffff:127.0.0.1')).toBe('127.0.0.1');
    expect(throttleKey('127.0.0.1')).toBe('127.0.0.1');
    expect(throttleKey('2001:db8:1:2:3:4:5:6')).toBe('2001:db8:1:2::/64');
    expect(throttleKey('2001:db8:1:2::9')).toBe('2001:db8:1:2::/64');
    expect(throttleKey('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(throttleKey('::1')).toBe('0:0:0:0::/64');
    expect(throttleKey(undefined)).toBe('unknown');
    const { t } = throttle();
    for (let i = 0; i < 3; i++) t.recordFailure(`2001:db8:1:2::${i + 1}`);
    expect(t.blockedFor('2001:db8:1:2:ffff::1')).not.toBeNull();
    expect(t.blockedFor('2001:db8:1:3::1')).toBeNull();
  });
});
