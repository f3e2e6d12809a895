// The StateStore contract holds for the degraded-mode wrapper while its shared store answers: it
// must be a drop-in for the store it wraps (memory as a stand-in, and real Redis).
import { afterAll, beforeAll, describe } from 'vitest';
import type { ManualClock } from '../../src/clock.js';
import { MemoryBackend, MemoryStore } from '../../src/state/memory-store.js';
import { RedisStore } from '../../src/state/redis-store.js';
import { ResilientStore, type PrimaryStore } from '../../src/state/resilient-store.js';
import { redisAvailable, startRedis, type RedisServer } from '../helpers/redis-server.js';
import { LEASE_TTL, stateStoreContract } from './state-store-contract.js';

function wrap(primary: PrimaryStore, clock: ManualClock, instanceId: string): ResilientStore {
  return new ResilientStore({ primary, fallback: new MemoryStore({ clock, instanceId, leaseTtlMs: LEASE_TTL }), clock });
}

describe('StateStore contract: resilient store over memory', () => {
  stateStoreContract((clock) => {
    const backends = new Map<string, MemoryBackend>();
    return {
      clock,
      open(instanceId, namespace = 'default') {
        let backend = backends.get(namespace);
        if (!backend) backends.set(namespace, (backend = new MemoryBackend()));
        const shared = new MemoryStore({ clock, instanceId, leaseTtlMs: LEASE_TTL, backend });
        return wrap(Object.assign(shared, { ready: async () => {} }), clock, instanceId);
      },
    };
  });
});

const runRedis = redisAvailable();
if (!runRedis) console.warn('redis-server is not on PATH: skipping the resilient Redis contract (set REQUIRE_REDIS=1 to fail instead)');

describe.skipIf(!runRedis)('StateStore contract: resilient store over redis', () => {
  let server: RedisServer;
  let run = 0;

  beforeAll(async () => {
    server = await startRedis();
  });

  afterAll(async () => {
    await server?.stop();
  });

  stateStoreContract((clock) => {
    run++;
    return {
      clock,
      open: (instanceId, namespace = 'default') =>
        wrap(new RedisStore({ url: server.url, keyPrefix: `rs${run}:${namespace}:`, clock, instanceId, leaseTtlMs: LEASE_TTL }), clock, instanceId),
    };
  });
});
