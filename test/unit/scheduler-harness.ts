// A scheduler shell over the memory store, a manual clock and a recording event bus.
import { ManualClock } from '../../src/clock.js';
import type { AccountConfig } from '../../src/config/schema.js';
import { EventBus, type RelayEvent } from '../../src/observability/events.js';
import { AccountScheduler } from '../../src/scheduler/scheduler.js';
import { MemoryStore } from '../../src/state/memory-store.js';
import type { StateStore } from '../../src/state/store.js';
import { account, schedulerConfig, websocketConfig } from './scheduler-fixtures.js';

export interface HarnessOptions {
  accounts?: AccountConfig[];
  scheduler?: Record<string, unknown>;
  websocket?: Record<string, unknown>;
  /** Called after each wait-plan pause (the clock has already moved by it). */
  onSleep?: (ms: number, n: number) => void | Promise<void>;
  wrapStore?: (s: MemoryStore) => StateStore;
}

export function harness(o: HarnessOptions = {}) {
  const clock = new ManualClock();
  const memory = new MemoryStore({ clock, instanceId: 'test-1', leaseTtlMs: 3_600_000 });
  const store = o.wrapStore ? o.wrapStore(memory) : memory;
  const bus = new EventBus();
  const events: RelayEvent[] = [];
  bus.on((e) => events.push(e));
  const sleeps: number[] = [];
  const accounts = o.accounts ?? [account('a'), account('b'), account('c')];
  const scheduler = new AccountScheduler({
    store,
    clock,
    bus,
    accounts,
    scheduler: schedulerConfig(o.scheduler),
    websocket: websocketConfig(o.websocket),
    random: () => 0.5,
    sleep: async (ms) => {
      sleeps.push(ms);
      clock.advance(ms);
      await o.onSleep?.(ms, sleeps.length);
    },
  });
  const waitingOn = async (id: string) => (await memory.snapshot([{ id, max: 1 }]))[0].waiting;
  return { clock, memory, store, bus, events, sleeps, scheduler, waitingOn, close: () => memory.close() };
}

/** Counts calls per StateStore method. */
export function countingStore(inner: StateStore): { store: StateStore; calls: Map<string, number> } {
  const calls = new Map<string, number>();
  const store = new Proxy(inner, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v !== 'function') return v;
      return (...args: unknown[]) => {
        calls.set(String(prop), (calls.get(String(prop)) ?? 0) + 1);
        return (v as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  return { store, calls };
}
