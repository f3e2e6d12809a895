// Memory-store specifics the shared contract cannot see: its maps stay bounded, and its
// synchronous slot path keeps acquireSlot's semantics.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { MemoryStore } from '../../src/state/memory-store.js';

describe('MemoryStore bounds', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('evicts the binding written longest ago past maxBindings', async () => {
    const store = new MemoryStore({ clock: new ManualClock(), maxBindings: 3 });
    for (const h of ['a', 'b', 'c']) await store.setSessionBinding('g', h, `acc-${h}`, 60_000);
    await store.refreshSessionBinding('g', 'a', 60_000);
    await store.setSessionBinding('g', 'd', 'acc-d', 60_000);
    expect(store.backend.sessions.size).toBe(3);
    expect(await store.getSessionBinding('g', 'b')).toBeNull();
    expect(await store.getSessionBinding('g', 'a')).toBe('acc-a');
    await store.close();
  });

  it('the periodic sweep drops expired entries nobody reads again, and close() stops it', async () => {
    vi.useFakeTimers();
    const clock = new ManualClock();
    const store = new MemoryStore({ clock, leaseTtlMs: 1_000, sweepIntervalMs: 5_000 });
    await store.setSessionBinding('g', 'h', 'acc', 1_000);
    await store.setResponseBinding('g', 'r', 'acc', 1_000);
    await store.acquireSlot('acc', 'l1', 1);
    await store.incrementWaiting('acc', 1);
    await store.setCooldown('acc', clock.now() + 1_000, 'rate_limited');
    clock.advance(1_001);
    vi.advanceTimersByTime(5_000);
    const { sessions, responses, leases, waiting, flags } = store.backend;
    expect([sessions.size, responses.size, leases.size, waiting.size, flags.size]).toEqual([0, 0, 0, 0, 0]);
    await store.close();
    expect(vi.getTimerCount()).toBe(0);
  });

  it('the sweep drops the expired bindings at the head of the write order and stops at the first live one', async () => {
    const clock = new ManualClock();
    const store = new MemoryStore({ clock, sweepIntervalMs: 3_600_000 });
    for (const r of ['r1', 'r2', 'r3']) await store.setResponseBinding('g', r, 'acc', 1_000);
    clock.advance(500);
    for (const r of ['r4', 'r5']) await store.setResponseBinding('g', r, 'acc', 1_000);
    clock.advance(600);
    store.sweep();
    expect(store.backend.responses.size).toBe(2);
    expect(await store.getResponseBinding('g', 'r4')).toBe('acc');
    expect(await store.getResponseBinding('g', 'r5')).toBe('acc');
    // A longer-lived binding written first shields the expired ones behind it from this sweep;
    // reads still see them as gone.
    await store.setSessionBinding('g', 'long', 'acc', 60_000);
    await store.setSessionBinding('g', 'short', 'acc', 100);
    clock.advance(200);
    store.sweep();
    expect(store.backend.sessions.size).toBe(2);
    expect(await store.getSessionBinding('g', 'short')).toBeNull();
    expect(await store.getSessionBinding('g', 'long')).toBe('acc');
    await store.close();
  });

  it('acquireSlotNow: getFlags + acquireSlot at once, same limits, idempotent per lease, shared with async leases', async () => {
    const clock = new ManualClock();
    const store = new MemoryStore({ clock });
    await store.setCooldown('acc', clock.now() + 5_000, 'server_error');
    const first = store.acquireSlotNow('acc', 'l1', 2);
    expect(first.granted).toBe(true);
    expect(first.flags).toMatchObject({ cooldownReason: 'server_error', cooldownUntilMs: clock.now() + 5_000 });
    expect(store.acquireSlotNow('acc', 'l1', 2).granted).toBe(true);
    expect(await store.acquireSlot('acc', 'l2', 2)).toBe(true);
    expect(store.acquireSlotNow('acc', 'l3', 2).granted).toBe(false);
    expect(await store.slotCount('acc')).toBe(2);
    await store.releaseSlot('acc', 'l1');
    expect(store.acquireSlotNow('acc', 'l3', 2).granted).toBe(true);
    await store.close();
    expect(() => store.acquireSlotNow('acc', 'l4', 2)).toThrow();
  });
});
