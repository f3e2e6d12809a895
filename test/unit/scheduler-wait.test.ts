import { afterEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/clock.js';
import { EventBus } from '../../src/observability/events.js';
import { AccountScheduler } from '../../src/scheduler/scheduler.js';
import type { ScheduleOutcome, SlotLease } from '../../src/scheduler/types.js';
import { MemoryStore } from '../../src/state/memory-store.js';
import { account, request, schedulerConfig, websocketConfig } from './scheduler-fixtures.js';
import { harness } from './scheduler-harness.js';

type Harness = ReturnType<typeof harness>;
let h: Harness;
afterEach(async () => h?.close());

const one = () => [account('x', { concurrency: 1 })];

function acquired(o: ScheduleOutcome) {
  if (o.kind !== 'acquired') throw new Error(`expected acquired, got ${o.kind}: ${o.reason}`);
  return o;
}

async function holdSlot(hh: Harness): Promise<SlotLease> {
  return acquired(await hh.scheduler.select(request())).lease;
}

describe('wait plans', () => {
  it('a slot that frees within the timeout is acquired after waiting; waiting counter back to 0', async () => {
    let held: SlotLease | null = null;
    const seenWaiting: number[] = [];
    h = harness({
      accounts: one(),
      onSleep: async (_ms, n) => {
        seenWaiting.push(await h.waitingOn('x'));
        if (n === 3) await held!.release();
      },
    });
    held = await holdSlot(h);
    const o = acquired(await h.scheduler.select(request()));
    expect(o.account.id).toBe('x');
    expect(o.waitedMs).toBeGreaterThan(0);
    expect(seenWaiting).toEqual([1, 1, 1]);
    expect(await h.waitingOn('x')).toBe(0);
    expect(h.events.filter((e) => e.type === 'select').at(-1)).toMatchObject({ result: 'wait', layer: 'load_balance' });
    await o.lease.release();
  });

  it('backs off from 100 ms by ×1.5 up to 2 s, with ±20 % jitter', async () => {
    h = harness({ accounts: one(), scheduler: { fallbackWait: { timeoutMs: 12_000 } } });
    await holdSlot(h);
    const o = await h.scheduler.select(request());
    expect(o).toMatchObject({ kind: 'refused', reason: 'wait_timeout' });
    // random() = 0.5 in the harness → jitter factor exactly 1
    expect(h.sleeps.slice(0, 4)).toEqual([100, 150, 225, 337.5]);
    expect(Math.max(...h.sleeps)).toBe(2000);
    expect(h.sleeps.reduce((a, b) => a + b, 0)).toBe(12_000);
  });

  it('a full queue is refused at once, without waiting', async () => {
    h = harness({ accounts: one(), scheduler: { fallbackWait: { maxWaiting: 0 } } });
    await holdSlot(h);
    const o = await h.scheduler.select(request());
    expect(o).toMatchObject({ kind: 'refused', reason: 'queue_full' });
    expect(o.kind === 'refused' && o.retryAfterMs).toBeGreaterThan(0);
    expect(h.sleeps).toEqual([]);
    expect(await h.waitingOn('x')).toBe(0);
  });

  it('the queue bound counts other waiters: the second waiter over maxWaiting 1 is refused', async () => {
    let second: ScheduleOutcome | null = null;
    h = harness({
      accounts: one(),
      scheduler: { fallbackWait: { maxWaiting: 1, timeoutMs: 1000 } },
      onSleep: async (_ms, n) => {
        if (n === 1) second = await h.scheduler.select(request());
      },
    });
    await holdSlot(h);
    const first = await h.scheduler.select(request());
    expect(second).toMatchObject({ kind: 'refused', reason: 'queue_full' });
    expect(first).toMatchObject({ kind: 'refused', reason: 'wait_timeout' });
    expect(await h.waitingOn('x')).toBe(0);
  });

  it('a wait that times out is refused with a retry hint; waiting counter back to 0', async () => {
    h = harness({ accounts: one(), scheduler: { fallbackWait: { timeoutMs: 500 } } });
    await holdSlot(h);
    const o = await h.scheduler.select(request());
    expect(o).toMatchObject({ kind: 'refused', reason: 'wait_timeout', decision: { layer: 'load_balance' } });
    expect(o.kind === 'refused' && o.retryAfterMs).toBeGreaterThan(0);
    expect(await h.waitingOn('x')).toBe(0);
  });

  it('an aborted wait is refused as aborted; waiting counter back to 0', async () => {
    const ac = new AbortController();
    h = harness({ accounts: one(), onSleep: (_ms, n) => void (n === 2 && ac.abort()) });
    await holdSlot(h);
    const o = await h.scheduler.select(request(), ac.signal);
    expect(o).toMatchObject({ kind: 'refused', reason: 'aborted' });
    expect(await h.waitingOn('x')).toBe(0);
    expect(await h.scheduler.select(request(), ac.signal)).toMatchObject({ kind: 'refused', reason: 'aborted' });
  });

  it('a store failure while waiting still gives the waiting count back', async () => {
    let failAcquire = false;
    h = harness({
      accounts: one(),
      wrapStore: (s) =>
        new Proxy(s, {
          get(target, prop, receiver) {
            if (prop === 'acquireSlot' && failAcquire) return async () => Promise.reject(new Error('store down'));
            const v = Reflect.get(target, prop, receiver) as unknown;
            return typeof v === 'function' ? v.bind(target) : v;
          },
        }),
      onSleep: () => {
        failAcquire = true;
      },
    });
    await holdSlot(h);
    await expect(h.scheduler.select(request())).rejects.toThrow('store down');
    expect(await h.waitingOn('x')).toBe(0);
  });

  it('a busy sticky account is waited on with stickyWait when no other account is free', async () => {
    h = harness({ accounts: [account('x', { concurrency: 1 }), account('y', { concurrency: 1 })], scheduler: { stickyWait: { timeoutMs: 300, maxWaiting: 1 } } });
    await h.memory.setSessionBinding('default', 'sess', 'x', 60_000);
    const sticky = acquired(await h.scheduler.select(request({ sessionHash: 'sess' })));
    const other = acquired(await h.scheduler.select(request()));
    expect(other.account.id).toBe('y');
    const o = await h.scheduler.select(request({ sessionHash: 'sess' }));
    expect(o).toMatchObject({ kind: 'refused', reason: 'wait_timeout', decision: { layer: 'session_hash', selectedAccount: 'x' } });
    expect(h.sleeps.reduce((a, b) => a + b, 0)).toBe(300);
    await sticky.lease.release();
  });

  it('a busy sticky account yields to another account with a free slot', async () => {
    h = harness({ accounts: [account('x', { concurrency: 1 }), account('y')] });
    await h.memory.setSessionBinding('default', 'sess', 'x', 60_000);
    acquired(await h.scheduler.select(request({ sessionHash: 'sess' })));
    const o = acquired(await h.scheduler.select(request({ sessionHash: 'sess' })));
    expect(o.account.id).toBe('y');
    expect(o.decision).toMatchObject({ layer: 'load_balance', sessionMiss: 'busy' });
    expect(h.sleeps).toEqual([]);
  });

  it('acquireOn waits on the given account, ignores its cooldown, refuses it when disabled', async () => {
    let held: SlotLease | null = null;
    h = harness({ accounts: [account('x', { concurrency: 1 }), account('y')], onSleep: (_ms, n) => void (n === 2 && held!.release()) });
    held = acquired(await h.scheduler.acquireOn('x', request())).lease;
    await h.scheduler.markServerError('x');
    const o = acquired(await h.scheduler.acquireOn('x', request({ requiredTransport: 'ws' })));
    expect(o).toMatchObject({ account: { id: 'x' }, transport: 'ws', decision: { layer: 'previous_response_id' } });
    expect(h.sleeps.length).toBe(2);
    await h.scheduler.markUnauthorized('x');
    expect(await h.scheduler.acquireOn('x', request())).toMatchObject({ kind: 'refused', reason: 'no_compatible_account' });
    expect(await h.scheduler.acquireOn('nope', request())).toMatchObject({ kind: 'refused', reason: 'no_compatible_account' });
  });
});

describe('wait plans with real timers', () => {
  it('times out after about timeoutMs and frees the waiting count', async () => {
    const store = new MemoryStore({ clock: systemClock, instanceId: 'real-1' });
    const scheduler = new AccountScheduler({
      store,
      clock: systemClock,
      bus: new EventBus(),
      accounts: one(),
      scheduler: schedulerConfig({ fallbackWait: { timeoutMs: 250 } }),
      websocket: websocketConfig(),
    });
    try {
      acquired(await scheduler.select(request()));
      const t0 = Date.now();
      const o = await scheduler.select(request());
      const took = Date.now() - t0;
      expect(o).toMatchObject({ kind: 'refused', reason: 'wait_timeout' });
      expect(took).toBeGreaterThanOrEqual(240);
      expect(took).toBeLessThan(1500);
      expect((await store.snapshot([{ id: 'x', max: 1 }]))[0].waiting).toBe(0);
    } finally {
      await store.close();
    }
  });

  it('an abort ends a real-timer wait promptly', async () => {
    const store = new MemoryStore({ clock: systemClock, instanceId: 'real-2' });
    const scheduler = new AccountScheduler({
      store,
      clock: systemClock,
      bus: new EventBus(),
      accounts: one(),
      scheduler: schedulerConfig({ fallbackWait: { timeoutMs: 10_000 } }),
      websocket: websocketConfig(),
    });
    try {
      acquired(await scheduler.select(request()));
      const ac = new AbortController();
      setTimeout(() => ac.abort(), 150);
      const t0 = Date.now();
      const o = await scheduler.select(request(), ac.signal);
      expect(o).toMatchObject({ kind: 'refused', reason: 'aborted' });
      expect(Date.now() - t0).toBeLessThan(1000);
      expect((await store.snapshot([{ id: 'x', max: 1 }]))[0].waiting).toBe(0);
    } finally {
      await store.close();
    }
  });
});
