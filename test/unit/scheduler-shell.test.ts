import { afterEach, describe, expect, it } from 'vitest';
import type { ScheduleOutcome } from '../../src/scheduler/types.js';
import type { StateStore } from '../../src/state/store.js';
import { account, request, schedulerConfig, websocketConfig } from './scheduler-fixtures.js';
import { countingStore, harness } from './scheduler-harness.js';

type Harness = ReturnType<typeof harness>;
let h: Harness;
afterEach(async () => h?.close());

function acquired(o: ScheduleOutcome) {
  if (o.kind !== 'acquired') throw new Error(`expected acquired, got ${o.kind}: ${o.reason}`);
  return o;
}

describe('scheduler shell: layers against the store', () => {
  it('previous response bound to X → X, layer previous_response_id, session re-bound to X', async () => {
    h = harness();
    await h.scheduler.bindResponse('default', 'resp_1', 'b');
    await h.memory.setSessionBinding('default', 'sess', 'c', 60_000);
    const o = acquired(await h.scheduler.select(request({ previousResponseId: 'resp_1', sessionHash: 'sess' })));
    expect(o.account.id).toBe('b');
    expect(o.decision).toMatchObject({ layer: 'previous_response_id', stickyPreviousHit: true, selectedAccount: 'b' });
    expect(await h.memory.getSessionBinding('default', 'sess')).toBe('b');
    await o.lease.release();
  });

  it('session sticky hit with a free slot → the sticky account, binding TTL refreshed', async () => {
    h = harness({ scheduler: { stickySessionTtlSeconds: 100 } });
    await h.memory.setSessionBinding('default', 'sess', 'c', 100_000);
    h.clock.advance(90_000);
    const o = acquired(await h.scheduler.select(request({ sessionHash: 'sess' })));
    expect(o.account.id).toBe('c');
    expect(o.decision).toMatchObject({ layer: 'session_hash', stickySessionHit: true });
    h.clock.advance(50_000); // past the original expiry, within the refreshed one
    expect(await h.memory.getSessionBinding('default', 'sess')).toBe('c');
    await o.lease.release();
  });

  it('load balance binds the session to the chosen account', async () => {
    h = harness();
    const o = acquired(await h.scheduler.select(request({ sessionHash: 'new' })));
    expect(o.decision.layer).toBe('load_balance');
    expect(await h.memory.getSessionBinding('default', 'new')).toBe(o.account.id);
    const again = acquired(await h.scheduler.select(request({ sessionHash: 'new' })));
    expect(again.account.id).toBe(o.account.id);
    expect(again.decision.layer).toBe('session_hash');
  });

  it('a sticky account in cooldown: binding deleted and the session moves', async () => {
    h = harness();
    await h.memory.setSessionBinding('default', 'sess', 'b', 60_000);
    await h.scheduler.markRateLimited('b', null);
    const o = acquired(await h.scheduler.select(request({ sessionHash: 'sess' })));
    expect(o.account.id).not.toBe('b');
    expect(o.decision.sessionMiss).toBe('cooldown');
    expect(await h.memory.getSessionBinding('default', 'sess')).toBe(o.account.id);
  });

  it('a disabled sticky account with nothing else left: binding deleted, refused as no compatible account', async () => {
    h = harness({ accounts: [account('only')] });
    await h.memory.setSessionBinding('default', 'sess', 'only', 60_000);
    await h.scheduler.markUnauthorized('only');
    const o = await h.scheduler.select(request({ sessionHash: 'sess' }));
    expect(o).toMatchObject({ kind: 'refused', reason: 'no_compatible_account' });
    expect(await h.memory.getSessionBinding('default', 'sess')).toBeNull();
  });

  it('an escaped sticky account keeps its binding until load balance picks another, then the session moves', async () => {
    h = harness({ scheduler: { topK: 1 } });
    await h.memory.setSessionBinding('default', 'sess', 'b', 60_000);
    for (let i = 0; i < 4; i++) h.scheduler.reportResult('b', false, null);
    expect(h.scheduler.stats('b').errorRate).toBeGreaterThan(0.5);
    const o = acquired(await h.scheduler.select(request({ sessionHash: 'sess' })));
    expect(o.account.id).not.toBe('b');
    expect(o.decision).toMatchObject({ layer: 'load_balance', sessionMiss: 'escaped' });
    expect(await h.memory.getSessionBinding('default', 'sess')).toBe(o.account.id);
  });

  it('a cooled-down account is excluded from every layer until its cooldown passes', async () => {
    h = harness({ accounts: [account('x')], scheduler: { cooldown: { serverErrorMs: 5000 } } });
    await h.scheduler.bindResponse('default', 'resp_1', 'x');
    await h.scheduler.markServerError('x');
    const during = await h.scheduler.select(request({ previousResponseId: 'resp_1' }));
    expect(during).toMatchObject({ kind: 'refused', reason: 'no_compatible_account', retryAfterMs: 5000 });
    h.clock.advance(5000);
    const after = acquired(await h.scheduler.select(request({ previousResponseId: 'resp_1' })));
    expect(after.decision.layer).toBe('previous_response_id');
  });

  it('a rate limit uses the reset time when given, else cooldown.rateLimitMs', async () => {
    h = harness();
    const now = h.clock.now();
    await h.scheduler.markRateLimited('a', now + 12_345);
    expect((await h.memory.getFlags('a')).cooldownUntilMs).toBe(now + 12_345);
    await h.scheduler.markRateLimited('b', null);
    expect(await h.memory.getFlags('b')).toMatchObject({ cooldownUntilMs: now + 60_000, cooldownReason: 'rate_limited' });
    await h.scheduler.markRateLimited('c', now - 1);
    expect((await h.memory.getFlags('c')).cooldownUntilMs).toBe(now + 60_000);
  });

  it('an unauthorized account stays disabled until an operator enables it', async () => {
    h = harness({ accounts: [account('x')] });
    await h.scheduler.markUnauthorized('x');
    h.clock.advance(24 * 3600_000);
    expect((await h.scheduler.select(request())).kind).toBe('refused');
    await h.scheduler.setAccountEnabled('x', true);
    acquired(await h.scheduler.select(request()));
  });

  it('an account marked WS-unsupported serves only HTTP requests until the mark expires', async () => {
    h = harness({ accounts: [account('x')], scheduler: { cooldown: { wsUnsupportedMs: 1000 } } });
    await h.scheduler.markWsUnsupported('x');
    expect(await h.scheduler.resolveTransport('x')).toEqual({ transport: 'http', reason: 'ws_unsupported' });
    expect(await h.scheduler.select(request({ requiredTransport: 'ws' }))).toMatchObject({ kind: 'refused', reason: 'no_compatible_account' });
    const http = acquired(await h.scheduler.select(request({ requiredTransport: 'any' })));
    expect(http).toMatchObject({ transport: 'http', decision: { transportReason: 'ws_unsupported' } });
    await http.lease.release();
    h.clock.advance(1000);
    expect(acquired(await h.scheduler.select(request({ requiredTransport: 'ws' }))).transport).toBe('ws');
  });

  it('a live reload applies new accounts; a binding to a removed account is dropped', async () => {
    h = harness({ accounts: [account('old')] });
    await h.memory.setSessionBinding('default', 'sess', 'old', 60_000);
    h.scheduler.reportResult('old', false, 100);
    h.scheduler.updateConfig([account('new')], schedulerConfig(), websocketConfig());
    const o = acquired(await h.scheduler.select(request({ sessionHash: 'sess' })));
    expect(o.account.id).toBe('new');
    expect(o.decision.sessionMiss).toBe('unknown_account');
    expect(h.scheduler.accounts().map((a) => a.id)).toEqual(['new']);
    expect(h.scheduler.stats('old')).toEqual({ errorRate: 0, ttftMs: null });
  });
});

describe('scheduler shell: leases, stats, events, store round trips', () => {
  it('release() is idempotent and frees the slot once', async () => {
    let calls!: Map<string, number>;
    h = harness({
      accounts: [account('x', { concurrency: 1 })],
      wrapStore: (s) => {
        const c = countingStore(s);
        calls = c.calls;
        return c.store;
      },
    });
    const o = acquired(await h.scheduler.select(request()));
    // A lease id is stored inside `instance|lease` members: it must not contain the separator.
    expect(o.lease.leaseId).toMatch(/^[A-Za-z0-9_.-]+$/);
    await Promise.all([o.lease.release(), o.lease.release()]);
    await o.lease.release();
    expect(calls.get('releaseSlot')).toBe(1);
    expect(await h.memory.slotCount('x')).toBe(0);
    // The slot is free again, under a new lease id.
    const again = acquired(await h.scheduler.select(request()));
    expect(again.lease.leaseId).not.toBe(o.lease.leaseId);
    await again.lease.release();
  });

  it('a load-balance select without a session key costs one snapshot and one acquire', async () => {
    let calls!: Map<string, number>;
    h = harness({
      wrapStore: (s: StateStore) => {
        const c = countingStore(s);
        calls = c.calls;
        return c.store;
      },
    });
    const o = acquired(await h.scheduler.select(request()));
    expect(Object.fromEntries(calls)).toEqual({ snapshot: 1, acquireSlot: 1 });
    await o.lease.release();
  });

  it('a sticky hit costs a binding read, a one-account snapshot, and an acquire sent with the TTL refresh', async () => {
    let calls!: Map<string, number>;
    h = harness({
      wrapStore: (s: StateStore) => {
        const c = countingStore(s);
        calls = c.calls;
        return c.store;
      },
    });
    await h.memory.setSessionBinding('default', 'sess', 'b', 60_000);
    const snapshotSizes: number[] = [];
    const snapshot = h.memory.snapshot.bind(h.memory);
    h.memory.snapshot = async (refs) => {
      snapshotSizes.push(refs.length);
      return snapshot(refs);
    };
    const o = acquired(await h.scheduler.select(request({ sessionHash: 'sess' })));
    expect(o.account.id).toBe('b');
    expect(Object.fromEntries(calls)).toEqual({ getSessionBinding: 1, snapshot: 1, acquireSlot: 1, refreshSessionBinding: 1 });
    expect(snapshotSizes).toEqual([1]);
  });

  it('a store failure rejects the select and emits a single select error', async () => {
    h = harness({
      wrapStore: (s) =>
        new Proxy(s, {
          get(target, prop, receiver) {
            if (prop === 'snapshot') return async () => Promise.reject(new Error('store down'));
            const v = Reflect.get(target, prop, receiver) as unknown;
            return typeof v === 'function' ? v.bind(target) : v;
          },
        }),
    });
    await expect(h.scheduler.select(request())).rejects.toThrow('store down');
    expect(h.events.filter((e) => e.type === 'select')).toEqual([expect.objectContaining({ result: 'error' })]);
  });

  it('a pinned turn (acquireOn) asks for the flags and the slot together, then binds the session', async () => {
    let calls!: Map<string, number>;
    let releaseFlags!: () => void;
    const flagsGate = new Promise<void>((r) => (releaseFlags = r));
    h = harness({
      wrapStore: (s: StateStore) => {
        const c = countingStore(s);
        calls = c.calls;
        return new Proxy(c.store, {
          get(target, prop, receiver) {
            const v = Reflect.get(target, prop, receiver) as unknown;
            if (prop === 'getFlags') return async (id: string) => (await flagsGate, (v as (id: string) => unknown)(id));
            return v;
          },
        });
      },
    });
    const pending = h.scheduler.acquireOn('b', request({ sessionHash: 'sess' }));
    // The flags have not answered yet, and the slot has already been asked for.
    await Promise.resolve();
    expect(calls.get('acquireSlot')).toBe(1);
    releaseFlags();
    const o = acquired(await pending);
    expect(o).toMatchObject({ account: { id: 'b' }, decision: { layer: 'previous_response_id' } });
    expect(Object.fromEntries(calls)).toEqual({ getFlags: 1, acquireSlot: 1, setSessionBinding: 1 });
    expect(await h.memory.getSessionBinding('default', 'sess')).toBe('b');
    await o.lease.release();
  });

  it('acquireOn gives the slot back when the account may not serve or the flags cannot be read', async () => {
    h = harness();
    await h.scheduler.markUnauthorized('b');
    expect(await h.scheduler.acquireOn('b', request())).toMatchObject({ kind: 'refused', reason: 'no_compatible_account' });
    expect(await h.memory.slotCount('b')).toBe(0);

    h.close();
    let flagsFail = true;
    h = harness({
      wrapStore: (s) =>
        new Proxy(s, {
          get(target, prop, receiver) {
            if (prop === 'getFlags' && flagsFail) return async () => Promise.reject(new Error('store down'));
            const v = Reflect.get(target, prop, receiver) as unknown;
            return typeof v === 'function' ? v.bind(target) : v;
          },
        }),
    });
    await expect(h.scheduler.acquireOn('a', request())).rejects.toThrow('store down');
    expect(await h.memory.slotCount('a')).toBe(0);
    flagsFail = false;
    acquired(await h.scheduler.acquireOn('a', request()));
    expect(await h.memory.slotCount('a')).toBe(1);
  });

  it('acquireOnNow answers a pinned turn synchronously from an in-process store, else leaves it to acquireOn', async () => {
    h = harness({ accounts: [account('a', { concurrency: 1 }), account('b')] });
    const slot = h.scheduler.acquireOnNow('a', 'default');
    expect(slot?.account.id).toBe('a');
    // The slot is held from here, before the turn's outcome (and its events) exist.
    expect(await h.memory.slotCount('a')).toBe(1);
    expect(h.events.filter((e) => e.type === 'select')).toEqual([]);
    const o = slot!.outcome(request({ sessionHash: 'sess' }));
    expect(o).toMatchObject({ kind: 'acquired', account: { id: 'a' }, transport: 'ws', decision: { layer: 'previous_response_id', selectedAccount: 'a' } });
    expect(o.decision.latencyMs).toBeGreaterThanOrEqual(0);
    // The select event and the binding's refresh come once the caller's synchronous part is over.
    await new Promise((r) => setImmediate(r));
    expect(await h.memory.getSessionBinding('default', 'sess')).toBe('a');
    expect(h.events.filter((e) => e.type === 'select')).toEqual([expect.objectContaining({ layer: 'previous_response_id', result: 'acquired' })]);
    // Full: no answer now (acquireOn would wait), and nothing held on the way.
    expect(h.scheduler.acquireOnNow('a', 'default')).toBeNull();
    expect(await h.memory.slotCount('a')).toBe(1);
    await o.lease.release();
    expect(await h.memory.slotCount('a')).toBe(0);
    // Disabled: no answer now (acquireOn refuses it), and the slot taken to find out is given back.
    await h.scheduler.markUnauthorized('b');
    expect(h.scheduler.acquireOnNow('b', 'default')).toBeNull();
    expect(await h.memory.slotCount('b')).toBe(0);
    expect(h.scheduler.acquireOnNow('nope', 'default')).toBeNull();
    // Another group's account: never.
    expect(h.scheduler.acquireOnNow('a', 'other-group')).toBeNull();
    expect(await h.memory.slotCount('a')).toBe(0);

    h.close();
    // A remote store (no acquireSlotNow): always left to acquireOn.
    h = harness({ wrapStore: (s) => new Proxy(s, { get: (t, p, r) => (p === 'acquireSlotNow' ? undefined : (Reflect.get(t, p, r) as unknown)) }) });
    expect(h.scheduler.acquireOnNow('a', 'default')).toBeNull();
    expect(await h.memory.slotCount('a')).toBe(0);
  });

  it('reportResult feeds the stats and emits account_stats; unknown accounts are ignored', async () => {
    h = harness();
    h.scheduler.reportResult('a', false, 800);
    h.scheduler.reportResult('ghost', false, 800);
    expect(h.scheduler.stats('a')).toMatchObject({ errorRate: 0.2, ttftMs: 800 });
    expect(h.events.filter((e) => e.type === 'account_stats')).toEqual([
      { type: 'account_stats', account: 'a', errorRate: 0.2, ttftMs: 800 },
    ]);
  });

  it('emits select events with layer, result and sticky hits, and switch events', async () => {
    h = harness();
    const first = acquired(await h.scheduler.select(request({ sessionHash: 's' })));
    const second = acquired(await h.scheduler.select(request({ sessionHash: 's' })));
    h.scheduler.reportSwitch(second.account.id);
    const selects = h.events.filter((e) => e.type === 'select');
    expect(selects[0]).toMatchObject({ layer: 'load_balance', result: 'acquired', candidateCount: 3, stickySessionHit: false });
    expect(selects[1]).toMatchObject({ layer: 'session_hash', result: 'acquired', stickySessionHit: true });
    expect(selects.every((e) => e.type === 'select' && e.durationMs >= 0)).toBe(true);
    expect(h.events.at(-1)).toEqual({ type: 'switch', fromAccount: second.account.id });
    await first.lease.release();
  });

  it('emits cooldown active on a mark and inactive once it has passed', async () => {
    h = harness({ scheduler: { cooldown: { serverErrorMs: 1000 } } });
    await h.scheduler.markServerError('a');
    expect(h.events).toContainEqual({ type: 'cooldown', account: 'a', reason: 'server_error', active: true });
    h.clock.advance(1000);
    await h.scheduler.select(request());
    expect(h.events).toContainEqual({ type: 'cooldown', account: 'a', reason: 'server_error', active: false });
  });

  it('a refused request emits a select error', async () => {
    h = harness({ accounts: [account('x', { transport: 'http' })] });
    await h.scheduler.select(request({ requiredTransport: 'ws' }));
    expect(h.events).toContainEqual(expect.objectContaining({ type: 'select', result: 'error', layer: 'load_balance' }));
  });
});
