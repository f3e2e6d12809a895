// The one StateStore contract suite; state-store.test.ts runs it against every backend. A harness
// opens "instances": stores that share state like relay instances sharing one Redis (memory: one
// MemoryBackend per namespace; Redis: one key prefix per namespace). Every TTL is checked against a
// ManualClock given to every store.
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { MemoryBackend, MemoryStore } from '../../src/state/memory-store.js';
import { RedisStore } from '../../src/state/redis-store.js';
import { NO_FLAGS, StoreUnavailableError, type AccountRef, type StateStore } from '../../src/state/store.js';
import { startRedis, type RedisServer } from '../helpers/redis-server.js';

/** The lease TTL every harness must give its stores. */
export const LEASE_TTL = 30_000;

export interface Harness {
  clock: ManualClock;
  /** A store for one relay instance; stores of the same namespace share all state. */
  open(instanceId: string, namespace?: string): StateStore;
}

export type HarnessFactory = (clock: ManualClock) => Harness;

/** How a harness turns the store it opened into the one under test (identity by default). */
export type Wrap = (store: MemoryStore | RedisStore, clock: ManualClock, instanceId: string) => StateStore;
const asIs: Wrap = (store) => store;

/** Memory stores: one MemoryBackend per namespace, shared by that namespace's instances. */
export function memoryHarness(wrap: Wrap = asIs): HarnessFactory {
  return (clock) => {
    const backends = new Map<string, MemoryBackend>();
    return {
      clock,
      open(instanceId, namespace = 'default') {
        let backend = backends.get(namespace);
        if (!backend) backends.set(namespace, (backend = new MemoryBackend()));
        return wrap(new MemoryStore({ clock, instanceId, leaseTtlMs: LEASE_TTL, backend }), clock, instanceId);
      },
    };
  };
}

/**
 * Redis stores on one redis-server started for the enclosing describe block. A fresh key prefix
 * per test (`prefix` + run number + namespace) keeps tests independent without flushing.
 */
export function redisHarness(prefix: string, wrap: Wrap = asIs): HarnessFactory & { server(): RedisServer } {
  let server: RedisServer;
  let run = 0;
  beforeAll(async () => {
    server = await startRedis();
  });
  afterAll(async () => {
    await server?.stop();
  });
  const factory: HarnessFactory = (clock) => {
    run++;
    const keyPrefix = `${prefix}${run}:`;
    return {
      clock,
      open: (instanceId, namespace = 'default') =>
        wrap(new RedisStore({ url: server.url, keyPrefix: `${keyPrefix}${namespace}:`, clock, instanceId, leaseTtlMs: LEASE_TTL }), clock, instanceId),
    };
  };
  return Object.assign(factory, { server: () => server });
}

export function stateStoreContract(makeHarness: HarnessFactory): void {
  let clock: ManualClock;
  let h: Harness;
  const opened: StateStore[] = [];

  beforeEach(() => {
    clock = new ManualClock();
    const inner = makeHarness(clock);
    h = {
      clock,
      open: (instanceId, namespace) => {
        const store = inner.open(instanceId, namespace);
        opened.push(store);
        return store;
      },
    };
  });

  afterEach(async () => {
    await Promise.all(opened.splice(0).map((s) => s.close()));
  });

  describe('concurrency slots', () => {
    it('grants exactly max of 200 concurrent acquires from two instances', async () => {
      const a = h.open('inst-a');
      const b = h.open('inst-b');
      const max = 7;
      const granted = await Promise.all(
        Array.from({ length: 200 }, (_, i) => (i % 2 === 0 ? a : b).acquireSlot('acc', `lease-${i}`, max)),
      );
      expect(granted.filter(Boolean)).toHaveLength(max);
      expect(await a.slotCount('acc')).toBe(max);
      expect(await b.slotCount('acc')).toBe(max);
    });

    it('never holds more than max at any moment under acquire/release churn', async () => {
      const a = h.open('inst-a');
      const b = h.open('inst-b');
      const max = 3;
      let held = 0;
      let peak = 0;
      let grants = 0;
      // `held` rises only after a grant and falls before the release is sent, so it can only
      // under-count what the store holds: any value above max is a real over-admission.
      const worker = async (store: StateStore, w: number): Promise<void> => {
        for (let round = 0; round < 5; round++) {
          const leaseId = `w${w}-r${round}`;
          if (!(await store.acquireSlot('acc', leaseId, max))) continue;
          grants++;
          held++;
          peak = Math.max(peak, held);
          expect(await store.slotCount('acc')).toBeLessThanOrEqual(max);
          held--;
          await store.releaseSlot('acc', leaseId);
        }
      };
      await Promise.all(Array.from({ length: 200 }, (_, w) => worker(w % 2 === 0 ? a : b, w)));
      expect(peak).toBeLessThanOrEqual(max);
      expect(grants).toBeGreaterThan(max);
      expect(await a.slotCount('acc')).toBe(0);
    });

    it('re-acquiring a held lease is granted again, counts once and renews it', async () => {
      const a = h.open('inst-a');
      expect(await a.acquireSlot('acc', 'l1', 1)).toBe(true);
      expect(await a.acquireSlot('acc', 'l1', 1)).toBe(true);
      expect(await a.slotCount('acc')).toBe(1);
      expect(await a.acquireSlot('acc', 'l2', 1)).toBe(false);
      clock.advance(20_000);
      expect(await a.acquireSlot('acc', 'l1', 1)).toBe(true);
      clock.advance(20_000);
      expect(await a.slotCount('acc')).toBe(1);
    });

    it('releasing twice, or a lease never held, is harmless', async () => {
      const a = h.open('inst-a');
      await a.acquireSlot('acc', 'l1', 1);
      await a.releaseSlot('acc', 'l1');
      await a.releaseSlot('acc', 'l1');
      await a.releaseSlot('acc', 'never-held');
      await a.releaseSlot('other-acc', 'l1');
      expect(await a.slotCount('acc')).toBe(0);
      expect(await a.acquireSlot('acc', 'l2', 1)).toBe(true);
      expect(await a.slotCount('acc')).toBe(1);
    });

    it('an instance cannot release another instance\'s lease, even with the same lease id', async () => {
      const a = h.open('inst-a');
      const b = h.open('inst-b');
      await a.acquireSlot('acc', 'shared-id', 2);
      await b.releaseSlot('acc', 'shared-id');
      expect(await a.slotCount('acc')).toBe(1);
    });

    it('a lease not renewed expires after the lease TTL and frees its slot', async () => {
      const a = h.open('inst-a');
      const b = h.open('inst-b');
      expect(await a.acquireSlot('acc', 'l1', 1)).toBe(true);
      clock.advance(LEASE_TTL - 1);
      expect(await b.slotCount('acc')).toBe(1);
      expect(await b.acquireSlot('acc', 'l2', 1)).toBe(false);
      clock.advance(2);
      expect(await b.slotCount('acc')).toBe(0);
      expect(await b.acquireSlot('acc', 'l2', 1)).toBe(true);
    });

    it('renewLeases keeps a lease alive past its original TTL', async () => {
      const a = h.open('inst-a');
      const b = h.open('inst-b');
      await a.acquireSlot('acc', 'l1', 1);
      clock.advance(20_000);
      await a.renewLeases();
      clock.advance(20_000);
      expect(await b.slotCount('acc')).toBe(1);
      expect(await b.acquireSlot('acc', 'l2', 1)).toBe(false);
      clock.advance(LEASE_TTL - 20_000);
      expect(await b.slotCount('acc')).toBe(0);
    });

    it('renewLeases re-asserts a lapsed own lease only while the account has room', async () => {
      const a = h.open('inst-a');
      const b = h.open('inst-b');
      await a.acquireSlot('roomy', 'l1', 2);
      await a.acquireSlot('tight', 'l2', 1);
      clock.advance(LEASE_TTL + 1);
      expect(await b.acquireSlot('tight', 'l3', 1)).toBe(true);
      await a.renewLeases();
      expect(await a.slotCount('roomy')).toBe(1);
      expect(await a.slotCount('tight')).toBe(1);
      // a's tight lease is gone for good; b's holder is the one that stays.
      await b.releaseSlot('tight', 'l3');
      await a.renewLeases();
      expect(await a.slotCount('tight')).toBe(0);
    });

    it('releaseAllOwnLeases leaves another instance\'s live leases alone', async () => {
      const a = h.open('inst-a');
      const b = h.open('inst-b');
      await a.acquireSlot('acc', 'a1', 5);
      await a.acquireSlot('acc', 'a2', 5);
      await a.acquireSlot('acc2', 'a3', 5);
      await b.acquireSlot('acc', 'b1', 5);
      await a.releaseAllOwnLeases();
      expect(await b.slotCount('acc')).toBe(1);
      expect(await b.slotCount('acc2')).toBe(0);
      clock.advance(20_000);
      await a.renewLeases();
      await b.renewLeases();
      clock.advance(20_000);
      expect(await a.slotCount('acc')).toBe(1);
      await b.releaseSlot('acc', 'b1');
      expect(await a.slotCount('acc')).toBe(0);
    });
  });

  describe('waiting counters', () => {
    it('refuses past max across instances', async () => {
      const a = h.open('inst-a');
      const b = h.open('inst-b');
      expect(await a.incrementWaiting('acc', 2)).toBe(true);
      expect(await b.incrementWaiting('acc', 2)).toBe(true);
      expect(await a.incrementWaiting('acc', 2)).toBe(false);
      expect(await b.incrementWaiting('acc', 2)).toBe(false);
      expect((await a.snapshot([{ id: 'acc', max: 2 }]))[0].waiting).toBe(2);
    });

    it('never goes below zero', async () => {
      const a = h.open('inst-a');
      const b = h.open('inst-b');
      await a.decrementWaiting('acc');
      await a.incrementWaiting('acc', 5);
      await a.decrementWaiting('acc');
      await a.decrementWaiting('acc');
      await b.decrementWaiting('acc');
      expect((await a.snapshot([{ id: 'acc', max: 1 }]))[0].waiting).toBe(0);
      expect(await a.incrementWaiting('acc', 1)).toBe(true);
      expect(await b.incrementWaiting('acc', 1)).toBe(false);
    });

    it('concurrent increments stop exactly at max', async () => {
      const a = h.open('inst-a');
      const b = h.open('inst-b');
      const ok = await Promise.all(
        Array.from({ length: 100 }, (_, i) => (i % 2 === 0 ? a : b).incrementWaiting('acc', 10)),
      );
      expect(ok.filter(Boolean)).toHaveLength(10);
    });

    it('an instance\'s count expires unless renewed, and shutdown clears only its own', async () => {
      const a = h.open('inst-a');
      const b = h.open('inst-b');
      await a.incrementWaiting('acc', 5);
      await b.incrementWaiting('acc', 5);
      clock.advance(20_000);
      await b.renewLeases();
      clock.advance(20_000);
      expect((await b.snapshot([{ id: 'acc', max: 5 }]))[0].waiting).toBe(1);
      await a.incrementWaiting('acc', 5);
      await b.releaseAllOwnLeases();
      expect((await a.snapshot([{ id: 'acc', max: 5 }]))[0].waiting).toBe(1);
    });
  });

  describe('bindings', () => {
    it('sticky session bindings expire after their TTL and are seen by other instances', async () => {
      const a = h.open('inst-a');
      const b = h.open('inst-b');
      await a.setSessionBinding('g', 'hash1', 'acc-1', 60_000);
      expect(await b.getSessionBinding('g', 'hash1')).toBe('acc-1');
      clock.advance(59_999);
      expect(await b.getSessionBinding('g', 'hash1')).toBe('acc-1');
      clock.advance(1);
      expect(await b.getSessionBinding('g', 'hash1')).toBeNull();
    });

    it('response bindings expire after their TTL and are seen by other instances', async () => {
      const a = h.open('inst-a');
      const b = h.open('inst-b');
      await a.setResponseBinding('g', 'resp_1', 'acc-2', 3_600_000);
      expect(await b.getResponseBinding('g', 'resp_1')).toBe('acc-2');
      clock.advance(3_600_000);
      expect(await b.getResponseBinding('g', 'resp_1')).toBeNull();
    });

    it('refreshSessionBinding extends the TTL and is false when there is no binding', async () => {
      const a = h.open('inst-a');
      expect(await a.refreshSessionBinding('g', 'missing', 1_000)).toBe(false);
      await a.setSessionBinding('g', 'h', 'acc-1', 1_000);
      clock.advance(900);
      expect(await a.refreshSessionBinding('g', 'h', 1_000)).toBe(true);
      clock.advance(900);
      expect(await a.getSessionBinding('g', 'h')).toBe('acc-1');
      clock.advance(100);
      expect(await a.getSessionBinding('g', 'h')).toBeNull();
      expect(await a.refreshSessionBinding('g', 'h', 1_000)).toBe(false);
      expect(await a.getSessionBinding('g', 'h')).toBeNull();
    });

    it('set overwrites, delete removes, and groups are separate', async () => {
      const a = h.open('inst-a');
      await a.setSessionBinding('g1', 'h', 'acc-1', 60_000);
      await a.setSessionBinding('g1', 'h', 'acc-2', 60_000);
      expect(await a.getSessionBinding('g1', 'h')).toBe('acc-2');
      expect(await a.getSessionBinding('g2', 'h')).toBeNull();
      await a.deleteSessionBinding('g1', 'h');
      await a.deleteSessionBinding('g1', 'h');
      expect(await a.getSessionBinding('g1', 'h')).toBeNull();
    });

    it('session and response bindings are separate namespaces', async () => {
      const a = h.open('inst-a');
      await a.setSessionBinding('g', 'same-id', 'acc-session', 60_000);
      expect(await a.getResponseBinding('g', 'same-id')).toBeNull();
      await a.setResponseBinding('g', 'same-id', 'acc-response', 60_000);
      expect(await a.getSessionBinding('g', 'same-id')).toBe('acc-session');
      expect(await a.getResponseBinding('g', 'same-id')).toBe('acc-response');
      await a.deleteSessionBinding('g', 'same-id');
      expect(await a.getResponseBinding('g', 'same-id')).toBe('acc-response');
    });
  });

  describe('account flags', () => {
    it('a cooldown with its reason is seen by other instances until it passes', async () => {
      const a = h.open('inst-a');
      const b = h.open('inst-b');
      const until = clock.now() + 10_000;
      await a.setCooldown('acc', until, 'rate_limited');
      expect(await b.getFlags('acc')).toEqual({ ...NO_FLAGS, cooldownUntilMs: until, cooldownReason: 'rate_limited' });
      clock.advance(10_000);
      expect(await b.getFlags('acc')).toEqual(NO_FLAGS);
      await a.setCooldown('acc', clock.now() + 5_000, 'server_error');
      await b.clearCooldown('acc');
      expect(await a.getFlags('acc')).toEqual(NO_FLAGS);
    });

    it('disabled stays until cleared; ws-unsupported lasts until its time', async () => {
      const a = h.open('inst-a');
      const b = h.open('inst-b');
      await a.setDisabled('acc', true);
      const wsUntil = clock.now() + 600_000;
      await a.setWsUnsupported('acc', wsUntil);
      expect(await b.getFlags('acc')).toEqual({ ...NO_FLAGS, disabled: true, wsUnsupportedUntilMs: wsUntil });
      clock.advance(600_000);
      expect(await b.getFlags('acc')).toEqual({ ...NO_FLAGS, disabled: true });
      await b.setDisabled('acc', false);
      expect(await a.getFlags('acc')).toEqual(NO_FLAGS);
      expect(await a.getFlags('never-seen')).toEqual(NO_FLAGS);
    });
  });

  describe('snapshot', () => {
    it('reads load and flags of 1,000 accounts, unknown ones as zero', async () => {
      const a = h.open('inst-a');
      const b = h.open('inst-b');
      const accounts: AccountRef[] = Array.from({ length: 1_000 }, (_, i) => ({ id: `acc-${i}`, max: 3 }));
      const until = clock.now() + 60_000;
      const writes: Promise<unknown>[] = [];
      for (let i = 0; i < 1_000; i += 10) writes.push(a.acquireSlot(`acc-${i}`, 'l1', 3));
      for (let i = 0; i < 1_000; i += 20) writes.push(b.acquireSlot(`acc-${i}`, 'l2', 3));
      for (let i = 0; i < 1_000; i += 25) writes.push(b.incrementWaiting(`acc-${i}`, 10));
      for (let i = 0; i < 1_000; i += 100) writes.push(a.setCooldown(`acc-${i}`, until, 'server_error'));
      writes.push(b.setDisabled('acc-7', true));
      await Promise.all(writes);

      const snap = await a.snapshot(accounts);
      // Index-aligned with the request: entry i is accounts[i].
      expect(snap).toHaveLength(1_000);
      for (let i = 0; i < 1_000; i++) {
        const inflight = (i % 10 === 0 ? 1 : 0) + (i % 20 === 0 ? 1 : 0);
        const waiting = i % 25 === 0 ? 1 : 0;
        expect(snap[i]).toEqual({
          inflight,
          waiting,
          loadRate: Math.floor(((inflight + waiting) * 100) / 3),
          flags: {
            ...NO_FLAGS,
            ...(i % 100 === 0 ? { cooldownUntilMs: until, cooldownReason: 'server_error' } : {}),
            disabled: i === 7,
          },
        });
      }
      expect(snap[0].loadRate).toBe(100);
      expect(await a.snapshot([])).toEqual([]);
      // Any order, unknown accounts included: entry i answers accounts[i].
      const mixed = await a.snapshot([{ id: 'acc-40', max: 3 }, { id: 'nope', max: 3 }, { id: 'acc-0', max: 3 }]);
      expect(mixed.map((x) => x.inflight)).toEqual([2, 0, 2]);
      expect(mixed[1]).toEqual({ inflight: 0, waiting: 0, loadRate: 0, flags: NO_FLAGS });
    });
  });

  describe('isolation and lifecycle', () => {
    it('stores with different key prefixes share nothing', async () => {
      const one = h.open('inst-a', 'ns1');
      const two = h.open('inst-b', 'ns2');
      await one.setSessionBinding('g', 'h', 'acc-1', 60_000);
      await one.setResponseBinding('g', 'r', 'acc-1', 60_000);
      await one.setDisabled('acc', true);
      await one.incrementWaiting('acc', 1);
      expect(await one.acquireSlot('acc', 'l1', 1)).toBe(true);
      expect(await two.getSessionBinding('g', 'h')).toBeNull();
      expect(await two.getResponseBinding('g', 'r')).toBeNull();
      expect(await two.getFlags('acc')).toEqual(NO_FLAGS);
      expect(await two.incrementWaiting('acc', 1)).toBe(true);
      expect(await two.acquireSlot('acc', 'l2', 1)).toBe(true);
    });

    it('close() is idempotent and later calls reject as unavailable', async () => {
      const a = h.open('inst-a');
      await a.setSessionBinding('g', 'h', 'acc-1', 60_000);
      await a.close();
      await a.close();
      await expect(a.getSessionBinding('g', 'h')).rejects.toBeInstanceOf(StoreUnavailableError);
      await expect(a.acquireSlot('acc', 'l1', 1)).rejects.toBeInstanceOf(StoreUnavailableError);
    });
  });
}
