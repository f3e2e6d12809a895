// The Redis store under outage: every call settles within the command timeout (never hangs a
// session), and once Redis is back the store resumes and the owner's heartbeat restores what the
// restart lost. Uses its own server because it stops and restarts it.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server, type Socket } from 'node:net';
import { ManualClock } from '../../src/clock.js';
import { RedisStore } from '../../src/state/redis-store.js';
import { StoreUnavailableError, type StateStore } from '../../src/state/store.js';
import { redisAvailable, startRedis, type RedisServer } from '../helpers/redis-server.js';

const TIMEOUT_MS = 200;
/** Scheduling slack on a loaded 2-core CI machine. */
const SLACK_MS = 250;

const runRedis = redisAvailable();
if (!runRedis) console.warn('redis-server is not on PATH: skipping the Redis outage tests (set REQUIRE_REDIS=1 to fail instead)');

/** Every StateStore call once, each timed; all are expected to fail. They touch only account 'probe'. */
async function timeEveryCall(store: StateStore): Promise<Array<{ name: string; ms: number; error: unknown }>> {
  const calls: Record<string, () => Promise<unknown>> = {
    getSessionBinding: () => store.getSessionBinding('g', 'h'),
    setSessionBinding: () => store.setSessionBinding('g', 'h', 'probe', 1_000),
    refreshSessionBinding: () => store.refreshSessionBinding('g', 'h', 1_000),
    deleteSessionBinding: () => store.deleteSessionBinding('g', 'h'),
    getResponseBinding: () => store.getResponseBinding('g', 'r'),
    setResponseBinding: () => store.setResponseBinding('g', 'r', 'probe', 1_000),
    acquireSlot: () => store.acquireSlot('probe', 'l9', 2),
    releaseSlot: () => store.releaseSlot('probe', 'l9'),
    slotCount: () => store.slotCount('probe'),
    incrementWaiting: () => store.incrementWaiting('probe', 2),
    decrementWaiting: () => store.decrementWaiting('probe'),
    snapshot: () => store.snapshot([{ id: 'probe', max: 2 }]),
    setCooldown: () => store.setCooldown('probe', 1, 'rate_limited'),
    clearCooldown: () => store.clearCooldown('probe'),
    setDisabled: () => store.setDisabled('probe', true),
    setWsUnsupported: () => store.setWsUnsupported('probe', 1),
    getFlags: () => store.getFlags('probe'),
  };
  return Promise.all(
    Object.entries(calls).map(async ([name, call]) => {
      const t0 = performance.now();
      const error = await call().then(
        () => null,
        (e: unknown) => e,
      );
      return { name, ms: performance.now() - t0, error };
    }),
  );
}

function expectAllFailedFast(results: Array<{ name: string; ms: number; error: unknown }>): void {
  for (const r of results) {
    expect(r.error, r.name).toBeInstanceOf(StoreUnavailableError);
    expect(r.ms, r.name).toBeLessThan(TIMEOUT_MS + SLACK_MS);
  }
}

async function waitUntilReady(store: RedisStore, withinMs: number): Promise<void> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    try {
      await store.ready();
      return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

describe.skipIf(!runRedis)('RedisStore under outage', () => {
  let server: RedisServer;
  const stores: RedisStore[] = [];
  const open = (url: string): RedisStore => {
    const store = new RedisStore({ url, clock: new ManualClock(), instanceId: 'inst-a', commandTimeoutMs: TIMEOUT_MS });
    stores.push(store);
    return store;
  };

  beforeAll(async () => {
    server = await startRedis();
  });

  afterAll(async () => {
    await server?.stop();
  });

  afterEach(async () => {
    await Promise.all(stores.splice(0).map((s) => s.close()));
  });

  it('rejects every call within the command timeout while Redis is down, then resumes after a restart', async () => {
    const store = open(server.url);
    expect(await store.acquireSlot('acc', 'l1', 2)).toBe(true);
    expect(await store.incrementWaiting('acc', 5)).toBe(true);

    await server.kill();
    expectAllFailedFast(await timeEveryCall(store));
    // Still down a while later (reconnect attempts running): still fast.
    await new Promise((r) => setTimeout(r, 300));
    expectAllFailedFast(await timeEveryCall(store));

    await server.restart();
    await waitUntilReady(store, 5_000);
    // The restarted Redis is empty; the heartbeat puts back this instance's lease and waiter.
    expect(await store.slotCount('acc')).toBe(0);
    await store.renewLeases();
    expect(await store.slotCount('acc')).toBe(1);
    expect((await store.snapshot([{ id: 'acc', max: 2 }]))[0]).toMatchObject({ inflight: 1, waiting: 1 });
  });

  it('rejects within the timeout when nothing listens on the port', async () => {
    const port = await new Promise<number>((resolve) => {
      const srv = createServer().listen(0, '127.0.0.1', () => {
        const addr = srv.address();
        srv.close(() => resolve(typeof addr === 'object' && addr ? addr.port : 0));
      });
    });
    expectAllFailedFast(await timeEveryCall(open(`redis://127.0.0.1:${port}`)));
  });

  describe('a Redis that accepts connections but never answers', () => {
    let blackhole: Server;
    const sockets = new Set<Socket>();

    beforeAll(async () => {
      blackhole = createServer((socket) => {
        sockets.add(socket);
        socket.on('close', () => sockets.delete(socket));
      });
      await new Promise<void>((resolve) => blackhole.listen(0, '127.0.0.1', resolve));
    });

    afterAll(async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => blackhole.close(() => resolve()));
    });

    it('rejects every call within the timeout, and close() settles calls still waiting', async () => {
      const addr = blackhole.address();
      const store = open(`redis://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`);
      expectAllFailedFast(await timeEveryCall(store));

      const pending = store.getFlags('acc');
      const t0 = performance.now();
      await store.close();
      await expect(pending).rejects.toBeInstanceOf(StoreUnavailableError);
      expect(performance.now() - t0).toBeLessThan(TIMEOUT_MS);
    });
  });
});
