// The StateStore contract holds for the degraded-mode wrapper while its shared store answers: it
// must be a drop-in for the store it wraps (memory as a stand-in, and real Redis).
import { describe } from 'vitest';
import { MemoryStore } from '../../src/state/memory-store.js';
import { ResilientStore, type PrimaryStore } from '../../src/state/resilient-store.js';
import { redisAvailable } from '../helpers/redis-server.js';
import { LEASE_TTL, memoryHarness, redisHarness, stateStoreContract, type Wrap } from './state-store-contract.js';

const wrap: Wrap = (primary, clock, instanceId) =>
  new ResilientStore({
    primary: primary as PrimaryStore,
    fallback: new MemoryStore({ clock, instanceId, leaseTtlMs: LEASE_TTL }),
    clock,
  });

describe('StateStore contract: resilient store over memory', () => {
  // A shared MemoryStore stands in for Redis: it needs the `ready()` a primary has.
  stateStoreContract(memoryHarness((store, clock, instanceId) => wrap(Object.assign(store, { ready: async () => {} }), clock, instanceId)));
});

const runRedis = redisAvailable();
if (!runRedis) console.warn('redis-server is not on PATH: skipping the resilient Redis contract (set REQUIRE_REDIS=1 to fail instead)');

describe.skipIf(!runRedis)('StateStore contract: resilient store over redis', () => {
  stateStoreContract(redisHarness('rs', wrap));
});
