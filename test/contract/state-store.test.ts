// The StateStore contract run against both backends, plus what only Redis can show: the batch
// load read is one command on the wire.
import { describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { ManualClock } from '../../src/clock.js';
import { RedisStore } from '../../src/state/redis-store.js';
import { redisAvailable } from '../helpers/redis-server.js';
import { LEASE_TTL, memoryHarness, redisHarness, stateStoreContract } from './state-store-contract.js';

describe('StateStore contract: memory', () => {
  stateStoreContract(memoryHarness());
});

const runRedis = redisAvailable();
if (!runRedis) console.warn('redis-server is not on PATH: skipping the Redis StateStore contract (set REQUIRE_REDIS=1 to fail instead)');

describe.skipIf(!runRedis)('StateStore contract: redis', () => {
  const harness = redisHarness('t');
  stateStoreContract(harness);

  it('snapshot of 1,000 accounts is one command on the wire, cold and warm', async () => {
    const server = harness.server();
    const clock = new ManualClock();
    const store = new RedisStore({ url: server.url, keyPrefix: 'rt:', clock, instanceId: 'inst-a', leaseTtlMs: LEASE_TTL });
    const counter = await commandCounter(server.url);
    try {
      const accounts = Array.from({ length: 1_000 }, (_, i) => ({ id: `acc-${i}`, max: 4 }));
      for (let i = 0; i < 1_000; i += 50) await store.acquireSlot(`acc-${i}`, 'l1', 4);
      // Cold: the first use of the script on a connection sends EVAL with its body; warm: EVALSHA.
      for (const phase of ['cold', 'warm']) {
        const { commands, scriptCalls, result } = await counter.count(() => store.snapshot(accounts));
        console.info(`snapshot of 1,000 accounts (${phase}): ${commands.length} client command(s) [${commands.join(', ')}]`);
        expect(commands).toHaveLength(1);
        expect(['evalsha', 'eval']).toContain(commands[0]);
        expect(scriptCalls).toBe(1);
        expect(result[0].inflight).toBe(1);
        expect(result[1].inflight).toBe(0);
      }
    } finally {
      counter.close();
      await store.close();
    }
  });
});

/**
 * Counts what clients send Redis while `fn` runs, two ways: MONITOR lines not issued by a script
 * (source "lua"), between two ECHO markers; and the EVAL + EVALSHA delta of INFO commandstats.
 */
async function commandCounter(url: string) {
  const probe = new Redis(url);
  const monitor = await new Redis(url).monitor();
  let recording = false;
  let seen: string[] = [];
  let markEnd: () => void = () => undefined;
  monitor.on('monitor', (_time: string, args: string[], source: string) => {
    const name = (args[0] ?? '').toLowerCase();
    if (name === 'echo' && args[1] === 'sy-begin') recording = true;
    else if (name === 'echo' && args[1] === 'sy-end') {
      recording = false;
      markEnd();
    } else if (recording && source !== 'lua') seen.push(name);
  });
  return {
    async count<T>(fn: () => Promise<T>): Promise<{ commands: string[]; scriptCalls: number; result: T }> {
      seen = [];
      const ended = new Promise<void>((resolve) => (markEnd = resolve));
      const before = scriptCallsOf(await probe.info('commandstats'));
      await probe.echo('sy-begin');
      const result = await fn();
      await probe.echo('sy-end');
      await ended;
      const after = scriptCallsOf(await probe.info('commandstats'));
      return { commands: seen, scriptCalls: after - before, result };
    },
    close(): void {
      monitor.disconnect();
      probe.disconnect();
    },
  };
}

/** EVAL + EVALSHA calls from INFO commandstats: each is one client command carrying a script. */
function scriptCallsOf(info: string): number {
  let total = 0;
  for (const m of info.matchAll(/^cmdstat_(eval|evalsha):calls=(\d+)/gm)) total += Number(m[2]);
  return total;
}
