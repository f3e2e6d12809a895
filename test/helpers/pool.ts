// A simulated upstream with named accounts and an in-process relay in front of it, plus the
// probes reliability tests read: slots and waiters held in the store, and bounded polling.
import { startSimUpstream, type SimAccountInit, type SimOptions, type SimUpstream } from '../../scripts/sim/upstream.js';
import { startRelay, type StartRelayOptions, type TestRelay } from './relay.js';

export interface Pool {
  sim: SimUpstream;
  relay: TestRelay;
  stop(): Promise<void>;
}

export type PoolAccount = SimAccountInit & { relay?: Record<string, unknown> };

/** Starts the sim, then a relay with one client key and one relay account per sim account. */
export async function startPool(
  accounts: PoolAccount[],
  opts: { clientKey: string; relay?: Record<string, unknown>; relayOptions?: StartRelayOptions; sim?: Omit<SimOptions, 'accounts'> },
): Promise<Pool> {
  const sim = await startSimUpstream({ ...(opts.sim ?? {}), accounts: accounts.map(({ relay: _r, ...a }) => a) });
  let relay: TestRelay;
  try {
    relay = await startRelay(
      {
        clients: [{ key: opts.clientKey, group: 'default' }],
        accounts: accounts.map((a) => ({
          id: a.name,
          baseUrl: sim.baseUrlFor(a.name),
          apiKey: a.key ?? `sk-sim-${a.name}`,
          concurrency: 4,
          ...(a.relay ?? {}),
        })),
        ...(opts.relay ?? {}),
      },
      opts.relayOptions,
    );
  } catch (err) {
    await sim.close();
    throw err;
  }
  return {
    sim,
    relay,
    async stop() {
      await relay.stop();
      await sim.close();
    },
  };
}

/** Slots (in-flight leases) and waiters the store holds over every configured account. */
export async function heldInStore(relay: TestRelay): Promise<{ slots: number; waiting: number }> {
  const refs = relay.app.scheduler.accounts().map((a) => ({ id: a.id, max: a.concurrency }));
  const snap = await relay.app.store.snapshot(refs);
  let slots = 0;
  let waiting = 0;
  for (const s of snap) {
    slots += s.inflight;
    waiting += s.waiting;
  }
  return { slots, waiting };
}

/** Polls `check` every 20 ms until it holds; throws after `timeoutMs`. */
export async function eventually(check: () => Promise<boolean> | boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`${what} not met within ${timeoutMs} ms`);
}

/** Waits until the store holds no slot and no waiter. */
export async function slotsReleased(relay: TestRelay, timeoutMs = 5000): Promise<void> {
  let last = { slots: -1, waiting: -1 };
  try {
    await eventually(async () => {
      last = await heldInStore(relay);
      return last.slots === 0 && last.waiting === 0;
    }, timeoutMs);
  } catch {
    throw new Error(`store still holds ${last.slots} slot(s) and ${last.waiting} waiter(s) after ${timeoutMs} ms`);
  }
}
