// Soak driver (issue 8): N client sessions × M turns spread over T minutes through an in-process
// relay in front of the simulated upstream, with faults mixed in on request. Every turn must end
// with a terminal event or an explicit error; one that does neither within the deadline is LOST.
// Prints progress to stderr and one JSON summary line to stdout; exits 1 when a turn was lost or
// a slot or waiter is still held after the run.
//   npm run soak -- --sessions 20 --turns 60 --minutes 2 --faults [--redis redis://127.0.0.1:6379]
// `npm run soak` runs node with --expose-gc so the RSS figures (start, after warm-up, end) are
// read after a full collection (the peak is sampled every second without one), and with a small
// fixed young generation (2 MB semi-spaces): with large semi-spaces, RSS swings by up to twice
// their size as V8 hands new-space pages back to the kernel after a GC and touches them again.
import { Writable } from 'node:stream';
import { parseArgs } from 'node:util';
import { startSimUpstream } from './sim/upstream.js';
import { createApp } from '../src/app.js';
import { loadConfigValue } from '../src/config/load.js';
import { createLogger } from '../src/observability/logger.js';
import { MemoryStore } from '../src/state/memory-store.js';
import { RedisStore } from '../src/state/redis-store.js';
import type { StateStore } from '../src/state/store.js';
import { faultTag, MALFORMED_FRAMES, perTurnFaultScript, readOutcome, vanish, type TurnFault } from '../test/helpers/faults.js';
import { connect, userMessage, type TestWsClient } from '../test/helpers/ws-client.js';

const { values: args } = parseArgs({
  options: {
    sessions: { type: 'string', default: '20' },
    turns: { type: 'string', default: '30' },
    minutes: { type: 'string', default: '1' },
    faults: { type: 'boolean', default: false },
    'fault-rate': { type: 'string', default: '0.2' },
    redis: { type: 'string' },
    accounts: { type: 'string', default: '4' },
    seed: { type: 'string', default: '1' },
    'turn-deadline-ms': { type: 'string', default: '30000' },
  },
});

const SESSIONS = positive('sessions');
const TURNS = positive('turns');
const MINUTES = Number(args.minutes);
const ACCOUNTS = positive('accounts');
const FAULT_RATE = args.faults ? Number(args['fault-rate']) : 0;
const DEADLINE_MS = positive('turn-deadline-ms');
const KEY = 'sk-sy-soak-client';
const FAULTS: ReadonlyArray<TurnFault | 'client_vanish' | 'malformed'> = ['server_error', 'rate_limited', 'close_mid_stream', 'failed', 'client_vanish', 'malformed'];
if (!(MINUTES > 0) || !(FAULT_RATE >= 0 && FAULT_RATE <= 1)) fail('--minutes must be > 0 and --fault-rate within [0,1]');

function positive(name: 'sessions' | 'turns' | 'accounts' | 'turn-deadline-ms'): number {
  const n = Number(args[name]);
  if (!Number.isInteger(n) || n <= 0) fail(`--${name} must be a positive integer`);
  return n;
}

function fail(msg: string): never {
  process.stderr.write(`soak: ${msg}\n`);
  process.exit(2);
}

/** xorshift32: reproducible fault mix per seed. */
let state = (Number(args.seed) >>> 0) || 1;
function rand(): number {
  state ^= state << 13;
  state ^= state >>> 17;
  state ^= state << 5;
  return (state >>> 0) / 4294967296;
}

const gc = (globalThis as { gc?: () => void }).gc;
const mb = (bytes: number) => Math.round((bytes / 1048576) * 10) / 10;
function rssMb(collect: boolean): number {
  if (collect && gc) {
    gc();
    gc();
  }
  return mb(process.memoryUsage().rss);
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, Math.max(0, ms)));

interface Counts {
  started: number;
  completed: number;
  failedExplicit: number;
  lost: number;
  /** Turns whose client vanished on purpose: nobody is left to receive an answer. */
  vanished: number;
  faultsInjected: Record<string, number>;
  endings: Record<string, number>;
  lostDetails: string[];
}

const counts: Counts = { started: 0, completed: 0, failedExplicit: 0, lost: 0, vanished: 0, faultsInjected: {}, endings: {}, lostDetails: [] };
const bump = (m: Record<string, number>, k: string) => (m[k] = (m[k] ?? 0) + 1);

async function main(): Promise<void> {
  const rssStart = rssMb(true);
  const sim = await startSimUpstream({
    accounts: Array.from({ length: ACCOUNTS }, (_, i) => ({ name: `s${i}`, ttftMs: 20, deltaCount: 6, deltaIntervalMs: 15 })),
    recordLog: false,
    rememberResponses: false,
  });
  // Per-turn faults: the mid-stream drop lands after the first deltas (ttft 20 ms + 15 ms pacing).
  for (const a of sim.accounts()) a.set({ script: perTurnFaultScript(sim, { dropAfterMs: 45 }) });

  const loaded = loadConfigValue(
    {
      listen: { host: '127.0.0.1', port: 0 },
      clients: [{ key: KEY, maxConnections: 0 }],
      accounts: sim.accounts().map((a) => ({ id: a.name, baseUrl: sim.baseUrlFor(a.name), apiKey: a.key, concurrency: Math.max(4, Math.ceil(SESSIONS / ACCOUNTS)) })),
      // Short cooldowns: each injected upstream fault cools its account down, and the soak is
      // about endings and leaks, not about running out of accounts.
      scheduler: { cooldown: { serverErrorMs: 500, rateLimitMs: 1000 } },
      websocket: { upstreamIdleTimeoutMs: 10_000 },
      logLevel: 'warn',
    },
    {},
  );
  if (!loaded.ok) fail(`config: ${loaded.errors.join('; ')}`);
  const config = loaded.config;
  const recentLogs: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      recentLogs.push(chunk.toString('utf8').trim());
      if (recentLogs.length > 20) recentLogs.shift();
      cb();
    },
  });
  const store: StateStore = args.redis
    ? new RedisStore({ url: args.redis, keyPrefix: `sy-soak-${process.pid}-${Date.now()}:`, leaseTtlMs: config.leases.ttlMs })
    : new MemoryStore({ leaseTtlMs: config.leases.ttlMs });
  const app = createApp({ config, store, logger: createLogger('warn', sink) });
  const { port } = await app.start();
  const wsUrl = `ws://127.0.0.1:${port}/v1/responses`;

  const durationMs = MINUTES * 60_000;
  const intervalMs = durationMs / TURNS;
  const startedAt = Date.now();
  let rssPeak = rssMb(false);
  // Even after a forced GC, RSS dips for a while whenever the kernel takes back heap pages V8 has
  // discarded, then climbs back to its steady level. So "after warm-up" is the highest collected
  // reading over a warm-up window (the steady level), not one reading that may land in a dip.
  // The heap in use after GC, which has no such noise, is reported next to it.
  const warmFrom = startedAt + Math.min(30_000, durationMs / 4);
  const warmTo = warmFrom + Math.min(30_000, durationMs / 4);
  const warmRss: number[] = [];
  const warmHeap: number[] = [];
  const series: number[] = [];
  let ticks = 0;
  const sampler = setInterval(() => {
    rssPeak = Math.max(rssPeak, rssMb(false));
    const now = Date.now();
    const inWarmup = now >= warmFrom && now < warmTo;
    if (++ticks % 10 !== 0 && !(inWarmup && ticks % 2 === 0)) return;
    const collected = rssMb(true);
    if (inWarmup) {
      warmRss.push(collected);
      warmHeap.push(mb(process.memoryUsage().heapUsed));
    }
    if (ticks % 10 === 0) series.push(collected);
  }, 1000);
  const progress = setInterval(() => {
    const { started, completed, failedExplicit, lost, vanished } = counts;
    const m = process.memoryUsage();
    const memMb = { rss: mb(m.rss), heapTotal: mb(m.heapTotal), heapUsed: mb(m.heapUsed), external: mb(m.external), arrayBuffers: mb(m.arrayBuffers) };
    process.stderr.write(`${JSON.stringify({ elapsedS: Math.round((Date.now() - startedAt) / 1000), started, completed, failedExplicit, lost, vanished, memMb })}\n`);
  }, 15_000);

  await Promise.all(Array.from({ length: SESSIONS }, (_, s) => runSession(wsUrl, s, startedAt + rand() * intervalMs, intervalMs)));
  clearInterval(progress);
  clearInterval(sampler);

  // Slots come back on their own (completion, client gone, timeouts); give stragglers a moment.
  const refs = app.scheduler.accounts().map((a) => ({ id: a.id, max: a.concurrency }));
  let held = { slots: 0, waiting: 0 };
  for (const end = Date.now() + 10_000; Date.now() < end; await sleep(100)) {
    held = { slots: 0, waiting: 0 };
    for (const snap of await store.snapshot(refs)) {
      held.slots += snap.inflight;
      held.waiting += snap.waiting;
    }
    if (held.slots === 0 && held.waiting === 0) break;
  }
  const rssEnd = rssMb(true);
  const heapEnd = mb(process.memoryUsage().heapUsed);
  const warm = warmRss.length > 0 ? Math.max(...warmRss) : rssEnd;
  const warmHeapMb = warmHeap.length > 0 ? median(warmHeap) : heapEnd;
  await app.stop();
  await sim.close();

  const summary = {
    sessions: SESSIONS,
    turnsPerSession: TURNS,
    minutes: MINUTES,
    faults: args.faults,
    faultRate: FAULT_RATE,
    store: store.kind,
    durationS: Math.round((Date.now() - startedAt) / 100) / 10,
    started: counts.started,
    completed: counts.completed,
    failedExplicit: counts.failedExplicit,
    lost: counts.lost,
    vanished: counts.vanished,
    slotsHeld: held.slots,
    waitersHeld: held.waiting,
    rssMb: { start: rssStart, afterWarmup: warm, peak: Math.max(rssPeak, rssEnd), end: rssEnd },
    rssEndVsWarmupPct: Math.round(((rssEnd - warm) / warm) * 1000) / 10,
    rssSeriesMb: series,
    heapUsedMb: { afterWarmup: warmHeapMb, end: heapEnd },
    gcForced: gc !== undefined,
    faultsInjected: counts.faultsInjected,
    endings: counts.endings,
    lostDetails: counts.lostDetails.slice(0, 10),
    recentWarnings: counts.lost > 0 ? recentLogs.slice(-5) : undefined,
  };
  process.stdout.write(`${JSON.stringify(summary)}\n`);
  process.exit(counts.lost > 0 || held.slots > 0 || held.waiting > 0 ? 1 : 0);
}

/** One Codex-like client: one socket, store:false turns chained by previous_response_id. */
async function runSession(wsUrl: string, s: number, firstAt: number, intervalMs: number): Promise<void> {
  let c: TestWsClient | null = null;
  let chain: string | null = null;
  for (let t = 0; t < TURNS; t++) {
    await sleep(firstAt + t * intervalMs - Date.now());
    const fault = rand() < FAULT_RATE ? FAULTS[Math.floor(rand() * FAULTS.length)] : null;
    const id = `${s}-${t}`;
    counts.started++;
    if (fault) bump(counts.faultsInjected, fault);
    try {
      c ??= await connect(wsUrl, { key: KEY, headers: { 'session-id': `soak-${s}` } });
      const client: TestWsClient = c;
      if (fault === 'client_vanish') {
        client.send(turnFrame(`vanishing ${id}`, chain));
        await Promise.race([client.next(5_000).catch(() => null), sleep(5_000)]);
        vanish(client, { reset: rand() < 0.5 });
        counts.vanished++;
        bump(counts.endings, 'client_vanished');
        c = null;
        chain = null;
        continue;
      }
      if (fault === 'malformed') {
        const bad = MALFORMED_FRAMES.filter((m) => m.close !== null);
        client.send(bad[Math.floor(rand() * bad.length)].data);
      } else {
        client.send(turnFrame(fault ? `hello ${faultTag(fault, id)}` : `hello ${id}`, chain));
      }
      let o = await readOutcome(client, DEADLINE_MS);
      if (o.kind === 'error' && o.code === 'previous_response_not_found') {
        // What Codex does: replay without the chain (the relay never re-routes a chained turn).
        chain = null;
        bump(counts.endings, 'replayed_after_previous_response_not_found');
        client.send(turnFrame(`hello again ${id}`, null));
        o = await readOutcome(client, DEADLINE_MS);
      }
      const label = o.kind === 'terminal' ? o.type : o.kind === 'error' ? `error:${o.code}` : o.kind === 'closed' ? `closed:${o.code}` : `lost:${o.detail}`;
      bump(counts.endings, label);
      if (o.kind === 'terminal' && o.type === 'response.completed') {
        counts.completed++;
        chain = o.responseId;
      } else if (o.kind === 'lost') {
        counts.lost++;
        if (counts.lostDetails.length < 50) counts.lostDetails.push(`session ${s} turn ${t} (${fault ?? 'clean'}): ${o.detail} after ${o.events} events`);
        vanish(client);
        c = null;
        chain = null;
      } else {
        counts.failedExplicit++;
        chain = null;
      }
      if (o.kind === 'error' && isClosingCode(o.code)) {
        await Promise.race([client.closed, sleep(5_000)]);
        c = null;
      } else if (client.ws.readyState !== client.ws.OPEN) {
        c = null;
      }
    } catch (err) {
      // Could not even connect: the relay refused the upgrade explicitly (status) or is gone.
      const status = /upgrade refused: (\d+)/.exec((err as Error).message)?.[1] ?? null;
      c = null;
      chain = null;
      if (status !== null) {
        counts.failedExplicit++;
        bump(counts.endings, `upgrade_refused:${status}`);
      } else {
        counts.lost++;
        counts.lostDetails.push(`session ${s} turn ${t}: ${(err as Error).message}`);
      }
    }
  }
  c?.close();
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : Math.round(((s[m - 1] + s[m]) / 2) * 10) / 10;
}

function turnFrame(text: string, previous: string | null): Record<string, unknown> {
  return { type: 'response.create', model: 'gpt-5.5', store: false, stream: true, ...(previous ? { previous_response_id: previous } : {}), input: userMessage(text) };
}

const CLOSING = new Set(['invalid_json', 'binary_frame_not_supported', 'invalid_request', 'missing_required_parameter', 'invalid_previous_response_id', 'message_too_large']);
function isClosingCode(code: string): boolean {
  return CLOSING.has(code);
}

main().catch((err: unknown) => {
  process.stderr.write(`soak: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
