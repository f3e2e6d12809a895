// Scheduler benchmark (`npm run bench:scheduler`). Prints one JSON line per case:
//   select latency with the memory store at 10, 100, 1,000 and 10,000 accounts, for the
//   load-balance path (no session key) and the sticky path (a bound session), each slot released
//   after its select so the pool never fills; then store round trips per select with Redis.
// Then `part_*` lines split a load-balance select into the store's snapshot and the pure plan.
// Targets (issue 3): memory p50 ≤ 150 µs at 1,000 accounts and ≤ 2 ms at 10,000; Redis ≤ 2 round
// trips per load-balance select without a session key.
import net from 'node:net';
import { Redis } from 'ioredis';
import { systemClock } from '../../src/clock.js';
import { accountSchema, schedulerSchema, websocketSchema, type AccountConfig } from '../../src/config/schema.js';
import { EventBus } from '../../src/observability/events.js';
import { AccountScheduler } from '../../src/scheduler/scheduler.js';
import { planSelection } from '../../src/scheduler/select.js';
import type { ScheduleOutcome, ScheduleRequest } from '../../src/scheduler/types.js';
import { MemoryStore } from '../../src/state/memory-store.js';
import { RedisStore } from '../../src/state/redis-store.js';
import type { StateStore } from '../../src/state/store.js';
import { redisAvailable, startRedis } from '../../test/helpers/redis-server.js';

const SIZES = [10, 100, 1_000, 10_000];
const REDIS_ACCOUNTS = 100;
const REDIS_SELECTS = 200;

function accounts(n: number): AccountConfig[] {
  return Array.from({ length: n }, (_, i) =>
    accountSchema.parse({
      id: `acc-${i}`,
      baseUrl: 'https://upstream.test/v1',
      apiKey: 'sk-bench',
      priority: 1 + (i % 3),
      concurrency: 64,
    }),
  );
}

function schedulerFor(store: StateStore, accs: AccountConfig[]): AccountScheduler {
  return new AccountScheduler({
    store,
    clock: systemClock,
    bus: new EventBus(),
    accounts: accs,
    scheduler: schedulerSchema.parse({}),
    websocket: websocketSchema.parse({}),
  });
}

function request(sessionHash: string | null): ScheduleRequest {
  return { group: 'default', sessionHash, previousResponseId: null, model: 'gpt-5.1', requiredTransport: 'ws', excluded: new Set() };
}

function mustAcquire(o: ScheduleOutcome): Extract<ScheduleOutcome, { kind: 'acquired' }> {
  if (o.kind !== 'acquired') throw new Error(`select refused: ${o.reason}`);
  return o;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

const round = (v: number, digits = 1): number => Math.round(v * 10 ** digits) / 10 ** digits;

async function latencyCase(name: string, n: number, sessionHash: string | null): Promise<void> {
  const store = new MemoryStore({ clock: systemClock, instanceId: `bench-${name}-${n}` });
  const scheduler = schedulerFor(store, accounts(n));
  const iterations = n >= 10_000 ? 1_000 : n >= 1_000 ? 4_000 : 10_000;
  const warmup = Math.min(500, iterations / 4);
  const samples: number[] = [];
  const wall = process.hrtime.bigint();
  for (let i = 0; i < warmup + iterations; i++) {
    const t0 = process.hrtime.bigint();
    const o = mustAcquire(await scheduler.select(request(sessionHash)));
    const t1 = process.hrtime.bigint();
    await o.lease.release();
    if (i >= warmup) samples.push(Number(t1 - t0) / 1_000);
  }
  const wallUs = Number(process.hrtime.bigint() - wall) / 1_000;
  samples.sort((a, b) => a - b);
  const line = {
    case: name,
    accounts: n,
    p50_us: round(percentile(samples, 50)),
    p99_us: round(percentile(samples, 99)),
    // select + release, including the warm-up: what one caller can do back to back
    ops_per_s: Math.round(((warmup + iterations) * 1_000_000) / wallUs),
  };
  console.log(JSON.stringify(line));
  await store.close();
}

/** Time a synchronous or async step alone, to show where a select's time goes. */
async function partCase(name: string, n: number, step: (i: number) => unknown): Promise<void> {
  const iterations = n >= 10_000 ? 1_000 : 4_000;
  const samples: number[] = [];
  for (let i = 0; i < iterations + 200; i++) {
    const t0 = process.hrtime.bigint();
    await step(i);
    if (i >= 200) samples.push(Number(process.hrtime.bigint() - t0) / 1_000);
  }
  samples.sort((a, b) => a - b);
  console.log(JSON.stringify({ case: name, accounts: n, p50_us: round(percentile(samples, 50)), p99_us: round(percentile(samples, 99)) }));
}

/** The two halves of a load-balance select: the memory store's batched snapshot, the pure plan. */
async function breakdown(n: number): Promise<void> {
  const accs = accounts(n);
  const refs = accs.map((a) => ({ id: a.id, max: a.concurrency }));
  const store = new MemoryStore({ clock: systemClock, instanceId: `bench-parts-${n}` });
  await partCase('part_memory_store_snapshot', n, () => store.snapshot(refs));
  const load = await store.snapshot(refs);
  const scheduler = schedulerSchema.parse({});
  const websocket = websocketSchema.parse({});
  const accountIndex = new Map(accs.map((a) => [a.id, a] as const));
  const snapshot = { accounts: accs, load, stats: new Map(), previousResponseAccount: null, sessionAccount: null };
  await partCase('part_pure_plan', n, (i) =>
    planSelection({ request: request(null), snapshot, scheduler, websocket, nowMs: Date.now(), entropy: BigInt(i), accountIndex }),
  );
  await store.close();
}

/**
 * Counts what the Redis client puts on the wire: commands (ioredis sendCommand) and round trips
 * (bursts of writes on a socket to Redis between two replies; commands sent together before any
 * reply arrives share one round trip).
 */
class WireCounter {
  commands = 0;
  roundTrips = 0;
  enabled = false;
  private readonly awaiting = new WeakSet<net.Socket>();

  install(redisPort: number): void {
    const self = this;
    const proto = Redis.prototype as unknown as { sendCommand: (...a: unknown[]) => unknown };
    const sendCommand = proto.sendCommand;
    proto.sendCommand = function (this: unknown, ...args: unknown[]) {
      if (self.enabled) self.commands++;
      return sendCommand.apply(this, args);
    };
    const write = net.Socket.prototype.write;
    net.Socket.prototype.write = function (this: net.Socket, ...args: unknown[]) {
      if (self.enabled && this.remotePort === redisPort && !self.awaiting.has(this)) {
        self.awaiting.add(this);
        self.roundTrips++;
      }
      return (write as (...a: unknown[]) => boolean).apply(this, args);
    } as typeof write;
    const emit = net.Socket.prototype.emit;
    net.Socket.prototype.emit = function (this: net.Socket, event: string | symbol, ...args: unknown[]) {
      if (event === 'data' && this.remotePort === redisPort) self.awaiting.delete(this);
      return (emit as (...a: unknown[]) => boolean).apply(this, [event, ...args]);
    } as typeof emit;
  }

  reset(): void {
    this.commands = 0;
    this.roundTrips = 0;
  }
}

async function redisCases(): Promise<void> {
  if (!redisAvailable()) {
    console.log(JSON.stringify({ case: 'redis_round_trips', skipped: 'redis-server not on PATH' }));
    return;
  }
  const server = await startRedis();
  const counter = new WireCounter();
  counter.install(server.port);
  const store = new RedisStore({ url: server.url, keyPrefix: 'bench:', instanceId: 'bench-redis' });
  try {
    await store.ready();
    const scheduler = schedulerFor(store, accounts(REDIS_ACCOUNTS));
    const sticky = 'bench-sticky-session';
    await mustAcquire(await scheduler.select(request(sticky))).lease.release();
    const cases: [string, (i: number) => string | null][] = [
      ['load_balance_no_session_key', () => null],
      ['load_balance_new_session_key', (i) => `bench-new-${i}`],
      ['sticky_hit', () => sticky],
    ];
    for (const [path, key] of cases) {
      counter.reset();
      const samples: number[] = [];
      for (let i = 0; i < REDIS_SELECTS; i++) {
        counter.enabled = true;
        const t0 = process.hrtime.bigint();
        const o = mustAcquire(await scheduler.select(request(key(i))));
        samples.push(Number(process.hrtime.bigint() - t0) / 1_000);
        counter.enabled = false;
        await o.lease.release();
      }
      samples.sort((a, b) => a - b);
      console.log(
        JSON.stringify({
          case: 'redis_round_trips',
          path,
          accounts: REDIS_ACCOUNTS,
          round_trips_per_select: round(counter.roundTrips / REDIS_SELECTS, 2),
          commands_per_select: round(counter.commands / REDIS_SELECTS, 2),
          p50_us: round(percentile(samples, 50)),
          p99_us: round(percentile(samples, 99)),
        }),
      );
    }
  } finally {
    await store.close();
    await server.stop();
  }
}

async function main(): Promise<void> {
  for (const n of SIZES) {
    await latencyCase('load_balance', n, null);
    await latencyCase('sticky', n, 'bench-session');
    await breakdown(n);
  }
  await redisCases();
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
