// `npm run bench:sessions`: relay memory per idle session. Opens N sessions (default 10,000),
// each completing one turn so the relay holds its upstream socket, then reads the relay's RSS
// after a full GC (--expose-gc) and divides the growth by N. Same for the bare relay, as the
// floor of what a client socket plus an upstream socket cost in Node.
//
// A session costs the relay two file descriptors (client + upstream socket). When the relay's
// RLIMIT_NOFILE cannot hold N sessions, N is capped to what fits, and the sessions beyond the
// cap are then attempted anyway so the failure shows in the report.
//
// `--heap-snapshots DIR` also writes a V8 heap snapshot of each relay before the sessions open and
// once they are all idle (DIR/<relay>-before.heapsnapshot, -after), for
// `node scripts/bench/heap-diff.mjs` to break the heap per session down by object type. Writing a
// snapshot grows the process's RSS, so the RSS figures of such a run do not compare.
//
//   npm run bench:sessions -- [--sessions 10000] [--skip-bare] [--heap-snapshots DIR]
import { mkdirSync, readdirSync, readFileSync, renameSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import type { Usage } from './child-ipc.js';
import { BenchChild, withChildren } from './children.js';
import { round } from './stats.js';
import { runWsPhase, type WsTarget } from './ws-driver.js';

const ACCOUNTS = 8;
const CLIENT_KEY = 'sy-bench-client';
const BETA = 'responses_websockets=2026-02-06';
/** Descriptors kept free in the relay for everything that is not a session socket. */
const FD_RESERVE = 16;
/** Opening sessions this fast keeps every listen backlog short. */
const OPEN_PER_SECOND = 1_000;
const PROBE_TIMEOUT_MS = 20_000;

interface SimInfo {
  url: string;
  accounts: Array<{ name: string; key: string; baseUrl: string; wsPath: string; wsUrl: string }>;
}

const { values } = parseArgs({
  options: { sessions: { type: 'string', default: '10000' }, 'skip-bare': { type: 'boolean', default: false }, 'heap-snapshots': { type: 'string' } },
});
const wanted = Number(values.sessions);
const snapshotDir = values['heap-snapshots'] ? resolve(values['heap-snapshots']) : null;
if (snapshotDir) mkdirSync(snapshotDir, { recursive: true });
/** The relays' node flags: --expose-gc, and with --heap-snapshots a snapshot on SIGUSR2 into the directory. */
const relayFlags = snapshotDir ? ['--expose-gc', '--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${snapshotDir}`] : ['--expose-gc'];

/** Has the child write a heap snapshot (SIGUSR2) and waits until it is complete; renames it `<name>.heapsnapshot`. */
async function heapSnapshot(child: BenchChild, dir: string, name: string): Promise<void> {
  const listed = () => readdirSync(dir).filter((f) => f.endsWith('.heapsnapshot'));
  const before = new Set(listed());
  process.kill(child.pid, 'SIGUSR2');
  const deadline = Date.now() + 120_000;
  let file: string | null = null;
  let size = -1;
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 500));
    file ??= listed().find((f) => !before.has(f)) ?? null;
    if (file === null) continue;
    // Complete once its size stops changing and the child answers again (it writes synchronously).
    const now = statSync(join(dir, file)).size;
    if (now > 0 && now === size) {
      await child.call('usage');
      renameSync(join(dir, file), join(dir, `${name}.heapsnapshot`));
      return;
    }
    size = now;
  }
  throw new Error(`${name}: no complete heap snapshot within 120 s`);
}

function fdLimit(pid: number): { soft: number; hard: number } {
  const line = readFileSync(`/proc/${pid}/limits`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('Max open files'));
  const [soft, hard] = (line ?? '').split(/\s{2,}/).slice(1, 3).map(Number);
  return { soft, hard };
}

const kb = (bytes: number) => round(bytes / 1024, 1);

/** Tries `count` more one-turn sessions; never throws: returns how many worked and the first error. */
async function probe(target: WsTarget, from: number, count: number): Promise<{ ok: number; failed: number; firstError: string | null }> {
  let ok = 0;
  let failed = 0;
  let firstError: string | null = null;
  const sockets: WebSocket[] = [];
  const one = (i: number) =>
    new Promise<void>((resolve) => {
      const ws = new WebSocket(target.url(i), { headers: target.headers(i), perMessageDeflate: false });
      sockets.push(ws);
      const timer = setTimeout(() => end('no answer within the probe timeout'), PROBE_TIMEOUT_MS);
      let settled = false;
      const end = (error: string | null) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (error === null) ok++;
        else {
          failed++;
          firstError ??= error;
        }
        resolve();
      };
      ws.on('open', () => ws.send(JSON.stringify({ type: 'response.create', model: 'gpt-bench', input: 'hi', store: false })));
      ws.on('message', (data: Buffer) => {
        const s = data.toString('utf8');
        if (s.startsWith('{"type":"response.completed"')) end(null);
        else if (s.startsWith('{"type":"error"') || s.startsWith('{"type":"response.failed"')) end(`error frame: ${s.slice(0, 240)}`);
      });
      ws.on('unexpected-response', (_req, res) => end(`upgrade answered ${res.statusCode}`));
      ws.on('error', (err) => end(`socket error: ${err.message}`));
      ws.on('close', (code) => end(`closed ${code}`));
    });
  await Promise.all(Array.from({ length: count }, (_, i) => one(from + i)));
  for (const ws of sockets) ws.terminate();
  return { ok, failed, firstError };
}

await withChildren(async () => {
  const { child: simChild, info } = await BenchChild.fork('sim', 'scripts/bench/sim-child.ts', { args: ['--accounts', String(ACCOUNTS)] });
  const sim = info as unknown as SimInfo;
  await simChild.call('set', { deltaCount: 1, deltaIntervalMs: 0, ttftMs: 0, text: 'ok' });
  const acct = (i: number) => sim.accounts[i % sim.accounts.length];
  const upstreamHeaders = (i: number) => ({ authorization: `Bearer ${acct(i).key}`, 'openai-beta': BETA, session_id: `idle-${i}` });

  const measure = async (name: string, child: BenchChild, target: WsTarget, extra: Record<string, unknown>) => {
    const limits = fdLimit(child.pid);
    const base = await child.call<Usage & { gc: boolean }>('gc');
    if (!base.gc) throw new Error(`${name}: no gc(); the child needs --expose-gc`);
    if (snapshotDir) await heapSnapshot(child, snapshotDir, `${name}-before`);
    const fit = Math.floor((limits.soft - base.fds - FD_RESERVE) / 2);
    const n = Math.min(wanted, fit);
    let loaded: (Usage & { gc: boolean }) | null = null;
    let beyond: Awaited<ReturnType<typeof probe>> | null = null;
    const started = Date.now();
    const r = await runWsPhase(
      target,
      { sessions: n, turns: 1, staggerMs: (n / OPEN_PER_SECOND) * 1000, timeoutMs: 300_000, connectConcurrency: 200 },
      {
        afterTurns: async () => {
          loaded = await child.call<Usage & { gc: boolean }>('gc');
          if (snapshotDir) await heapSnapshot(child, snapshotDir, `${name}-after`);
          // Only now, with the measured sessions still open: what the sessions past the cap get.
          if (n < wanted) beyond = await probe(target, n, wanted - n);
        },
      },
    );
    if (r.errors.length > 0) throw new Error(`${name}: ${r.errors.length} sessions failed their turn: ${r.errors[0]}`);
    const after = loaded as unknown as Usage;
    const line = {
      bench: 'sessions',
      server: name,
      sessions: n,
      sessions_wanted: wanted,
      rss_per_session_kb: kb((after.rss - base.rss) / n),
      heap_per_session_kb: kb((after.heapUsed - base.heapUsed) / n),
      external_per_session_kb: kb((after.external - base.external) / n),
      rss_before_mb: round(base.rss / 2 ** 20, 1),
      rss_after_mb: round(after.rss / 2 ** 20, 1),
      fds_before: base.fds,
      fds_after: after.fds,
      fd_limit_soft: limits.soft,
      fd_limit_hard: limits.hard,
      fds_per_session: round((after.fds - base.fds) / n, 2),
      beyond_cap: beyond,
      open_seconds: round((Date.now() - started) / 1000, 1),
      ...extra,
    };
    process.stdout.write(`${JSON.stringify(line)}\n`);
    if (snapshotDir) {
      const at = (f: string) => join(snapshotDir, `${name}-${f}.heapsnapshot`);
      process.stderr.write(`[bench:sessions] heap by object type: node scripts/bench/heap-diff.mjs ${at('before')} ${at('after')} ${n}\n`);
    }
  };

  const { child: relay, info: relayInfo } = await BenchChild.fork('switchyard', 'scripts/bench/switchyard-child.ts', {
    args: [
      '--config',
      JSON.stringify({
        clients: [{ key: CLIENT_KEY, group: 'default', maxConnections: 0 }],
        accounts: sim.accounts.map((a) => ({ id: a.name, baseUrl: a.baseUrl, apiKey: a.key, concurrency: 1024 })),
        websocket: { idleTimeoutMs: 3_600_000 },
      }),
    ],
    nodeFlags: relayFlags,
  });
  await measure(
    'switchyard',
    relay,
    {
      name: 'relay',
      url: () => `ws://127.0.0.1:${relayInfo.port as number}/v1/responses`,
      headers: (i) => ({ authorization: `Bearer ${CLIENT_KEY}`, session_id: `idle-${i}` }),
    },
    { target_kb: 64 },
  );
  await relay.stop();

  if (!values['skip-bare']) {
    const { child: bare, info: bareInfo } = await BenchChild.fork('bare', 'scripts/bench/bare-relay.ts', {
      args: ['--target', sim.url.replace(/^http/, 'ws')],
      nodeFlags: relayFlags,
    });
    await measure(
      'bare',
      bare,
      { name: 'bare', url: (i) => `ws://127.0.0.1:${bareInfo.port as number}${acct(i).wsPath}`, headers: upstreamHeaders },
      {},
    );
  }
});
