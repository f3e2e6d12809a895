// Degraded mode of the ResilientStore, against a shared store that can be switched off: calls are
// served locally at once, limits hold per instance, leases go back where they came from, and
// shared state learns what happened locally once it answers again.
import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import type { RelayEvent } from '../../src/observability/events.js';
import { MemoryBackend, MemoryStore } from '../../src/state/memory-store.js';
import { DEGRADED_REASON, ResilientStore, type PrimaryStore, type StoreStateChange } from '../../src/state/resilient-store.js';
import { NO_FLAGS, StoreUnavailableError } from '../../src/state/store.js';

const TTL = 30_000;
/** How long the switched-off shared store takes to fail a call (its command timeout). */
const FAIL_AFTER_MS = 200;

/** A MemoryStore on a shared backend whose calls fail (after FAIL_AFTER_MS) while `down`. */
function switchable(backend: MemoryBackend, clock: ManualClock, instanceId: string) {
  const state = { down: false, calls: [] as string[] };
  const inner = new MemoryStore({ clock, instanceId, leaseTtlMs: TTL, backend });
  const fail = () => new Promise<never>((_, reject) => setTimeout(() => reject(new StoreUnavailableError('down')), FAIL_AFTER_MS));
  const store = new Proxy(inner, {
    get(target, prop, receiver) {
      if (prop === 'ready') {
        return () => {
          state.calls.push('ready');
          return state.down ? fail() : Promise.resolve();
        };
      }
      const value: unknown = Reflect.get(target, prop, receiver);
      if (typeof value !== 'function' || prop === 'close') return value;
      return (...args: unknown[]) => {
        state.calls.push(String(prop));
        return state.down ? fail() : (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
      };
    },
  }) as unknown as PrimaryStore;
  return { store, state };
}

async function waitFor(cond: () => boolean, timeoutMs = 3_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

interface Instance {
  store: ResilientStore;
  primary: ReturnType<typeof switchable>;
  events: RelayEvent[];
  changes: StoreStateChange[];
}

describe('ResilientStore degraded mode', () => {
  const open: ResilientStore[] = [];
  let clock: ManualClock;
  let backend: MemoryBackend;

  const instance = (id: string, probeIntervalMs = 10_000): Instance => {
    const primary = switchable(backend, clock, id);
    const events: RelayEvent[] = [];
    const changes: StoreStateChange[] = [];
    const store = new ResilientStore({
      primary: primary.store,
      fallback: new MemoryStore({ clock, instanceId: id, leaseTtlMs: TTL }),
      bus: { emit: (e) => events.push(e) },
      clock,
      probeIntervalMs,
      onStateChange: (c) => changes.push(c),
    });
    open.push(store);
    return { store, primary, events, changes };
  };

  const setup = () => {
    clock = new ManualClock();
    backend = new MemoryBackend();
  };

  afterEach(async () => {
    await Promise.all(open.splice(0).map((s) => s.close()));
  });

  it('turns degraded on the first failed call, serves it locally, and stops asking the shared store', async () => {
    setup();
    const a = instance('inst-a');
    a.primary.state.down = true;
    const t0 = performance.now();
    expect(await a.store.getSessionBinding('g', 'h')).toBeNull();
    expect(performance.now() - t0).toBeLessThan(FAIL_AFTER_MS + 150);
    expect(a.store.degraded()).toBe(true);
    expect(a.store.degradedReason()).toBe(DEGRADED_REASON);
    expect(a.events).toEqual([{ type: 'store_error', op: 'getSessionBinding' }]);
    expect(a.changes).toEqual([{ degraded: true, op: 'getSessionBinding', error: 'down' }]);

    a.primary.state.calls.length = 0;
    const t1 = performance.now();
    await a.store.setSessionBinding('g', 'h', 'acc-1', 60_000);
    expect(await a.store.getSessionBinding('g', 'h')).toBe('acc-1');
    expect(await a.store.acquireSlot('acc-1', 'l1', 2)).toBe(true);
    expect((await a.store.snapshot([{ id: 'acc-1', max: 2 }]))[0]).toMatchObject({ inflight: 1, loadRate: 50 });
    expect(performance.now() - t1).toBeLessThan(FAIL_AFTER_MS);
    expect(a.primary.state.calls).toEqual([]);
  });

  it('a process that starts while the shared store is down starts degraded', async () => {
    setup();
    const a = instance('inst-a');
    a.primary.state.down = true;
    expect(await a.store.probe()).toBe(false);
    expect(a.store.degraded()).toBe(true);
    expect(a.events).toEqual([{ type: 'store_error', op: 'probe' }]);
  });

  it('while degraded one instance never exceeds max, counting the shared leases it still holds', async () => {
    setup();
    const a = instance('inst-a');
    expect(await a.store.acquireSlot('acc', 'shared-1', 3)).toBe(true);
    a.primary.state.down = true;
    expect(await a.store.acquireSlot('acc', 'local-1', 3)).toBe(true);
    expect(a.store.degraded()).toBe(true);
    expect(await a.store.acquireSlot('acc', 'local-2', 3)).toBe(true);
    expect(await a.store.acquireSlot('acc', 'local-3', 3)).toBe(false);
    expect(await a.store.slotCount('acc')).toBe(3);
    // Another instance alone enforces the same limit on its own (N × max while degraded).
    const b = instance('inst-b');
    b.primary.state.down = true;
    expect(await b.store.acquireSlot('acc', 'b-1', 3)).toBe(true);
  });

  it('a lease granted locally is released locally, also after recovery; new leases go shared again', async () => {
    setup();
    const a = instance('inst-a');
    const other = instance('inst-b');
    a.primary.state.down = true;
    expect(await a.store.acquireSlot('acc', 'local-1', 2)).toBe(true);
    a.primary.state.down = false;
    expect(await a.store.probe()).toBe(true);
    expect(a.store.degraded()).toBe(false);

    // The local lease still counts against this instance's own limit, not in shared state.
    expect(await other.store.slotCount('acc')).toBe(0);
    expect(await a.store.slotCount('acc')).toBe(1);
    expect(await a.store.acquireSlot('acc', 'shared-1', 2)).toBe(true);
    expect(await a.store.acquireSlot('acc', 'shared-2', 2)).toBe(false);
    expect(await other.store.slotCount('acc')).toBe(1);

    a.primary.state.calls.length = 0;
    await a.store.releaseSlot('acc', 'local-1');
    expect(a.primary.state.calls).toEqual([]);
    expect(await a.store.acquireSlot('acc', 'shared-2', 2)).toBe(true);
    expect(await other.store.slotCount('acc')).toBe(2);
  });

  it('releasing a shared lease while degraded never waits for the shared store', async () => {
    setup();
    const a = instance('inst-a');
    expect(await a.store.acquireSlot('acc', 'shared-1', 2)).toBe(true);
    expect(await a.store.incrementWaiting('acc', 5)).toBe(true);
    a.primary.state.down = true;
    await a.store.getFlags('acc');
    const t0 = performance.now();
    await a.store.releaseSlot('acc', 'shared-1');
    await a.store.decrementWaiting('acc');
    expect(performance.now() - t0).toBeLessThan(FAIL_AFTER_MS);
    expect(await a.store.slotCount('acc')).toBe(0);
  });

  it('on recovery replays bindings and flags written locally, with the TTL they have left', async () => {
    setup();
    const a = instance('inst-a');
    const b = instance('inst-b');
    a.primary.state.down = true;
    await a.store.setSessionBinding('g', 'sess', 'acc-1', 60_000);
    await a.store.setResponseBinding('g', 'resp_1', 'acc-2', 60_000);
    await a.store.setResponseBinding('g', 'resp_short', 'acc-2', 5_000);
    await a.store.setCooldown('acc-3', clock.now() + 120_000, 'rate_limited');
    await a.store.setDisabled('acc-4', true);
    expect(await b.store.getSessionBinding('g', 'sess')).toBeNull();

    clock.advance(10_000);
    a.primary.state.down = false;
    expect(await a.store.probe()).toBe(true);
    expect(a.changes.at(-1)).toMatchObject({ degraded: false, degradedMs: 10_000, replayed: 5 });
    expect(await b.store.getSessionBinding('g', 'sess')).toBe('acc-1');
    expect(await b.store.getResponseBinding('g', 'resp_1')).toBe('acc-2');
    expect(await b.store.getResponseBinding('g', 'resp_short')).toBeNull();
    expect((await b.store.getFlags('acc-3')).cooldownReason).toBe('rate_limited');
    expect((await b.store.getFlags('acc-4')).disabled).toBe(true);
    // The replayed binding keeps its original expiry: 60 s from when it was written.
    clock.advance(50_001);
    expect(await b.store.getSessionBinding('g', 'sess')).toBeNull();
  });

  it('keeps what it last read from shared state for use during an outage', async () => {
    setup();
    const a = instance('inst-a');
    const b = instance('inst-b');
    await b.store.setDisabled('acc-1', true);
    await b.store.setCooldown('acc-2', clock.now() + 60_000, 'server_error');
    await a.store.setSessionBinding('g', 'sess', 'acc-3', 60_000);
    const refs = [1, 2, 3].map((i) => ({ id: `acc-${i}`, max: 2 }));
    await a.store.snapshot(refs);

    a.primary.state.down = true;
    const snap = await a.store.snapshot(refs);
    expect(a.store.degraded()).toBe(true);
    expect(snap[0].flags.disabled).toBe(true);
    expect(snap[1].flags).toMatchObject({ cooldownReason: 'server_error' });
    expect(snap[2].flags).toEqual(NO_FLAGS);
    expect(await a.store.getSessionBinding('g', 'sess')).toBe('acc-3');
  });

  it('probes on a timer and returns to shared state by itself', async () => {
    setup();
    const a = instance('inst-a', 20);
    a.primary.state.down = true;
    await a.store.getFlags('acc');
    await waitFor(() => a.events.some((e) => e.type === 'store_error' && e.op === 'probe'));
    expect(a.store.degraded()).toBe(true);
    a.primary.state.down = false;
    await waitFor(() => !a.store.degraded());
    expect(a.store.degradedReason()).toBeNull();
  });

  it('after close every call rejects as unavailable and nothing is served locally', async () => {
    setup();
    const a = instance('inst-a');
    a.primary.state.down = true;
    await a.store.getFlags('acc');
    await a.store.close();
    await expect(a.store.acquireSlot('acc', 'l1', 1)).rejects.toBeInstanceOf(StoreUnavailableError);
    await expect(a.store.setSessionBinding('g', 'h', 'acc', 1_000)).rejects.toBeInstanceOf(StoreUnavailableError);
  });
});
