// `npm run bench:ws`: WebSocket sessions three ways in one run — straight to the simulated
// upstream, through the bare pass-through relay (bare-relay.ts), through Switchyard — each
// server in its own process, this process being the client driver. Prints one JSON line per K.
//
// Two phases per target and run, each opening K sockets and warming every session up with one
// turn first (Switchyard opens its upstream socket on a session's first turn; the bare relay
// when the client connects):
//   throughput — the sim streams as fast as it can (deltaIntervalMs 0): events/s over the later
//                turns, and relay CPU seconds per 10,000 events (process.cpuUsage of the relay
//                process over those turns);
//   latency    — the sim paces deltas so the machine is not saturated and turns are spread over
//                time: added latency per event (p50/p99 of read time − sim_ts, minus the direct
//                figure of the same run) over the later turns, and added time to first event for
//                first turns (upstream socket opened then) and later turns (socket reused).
// Every figure is the median over `--runs` runs; the order of targets rotates between runs.
//
//   npm run bench:ws -- [--k 1,100,1000] [--runs 3] [--deltas 50] [--profile DIR] [--log-level warn] [--pin]
//                       [--phases throughput,latency] [--aa | --floor | --with-floor] [--body-kb 32] [--interleave [--rounds N]]
// --profile DIR writes --cpu-prof profiles of both relay processes there. --pin puts the driver
// and the sim on CPU 0 and the relays on CPU 1 (taskset), for steadier figures. --body-kb N sends
// Codex-sized request frames (~N KB: developer message and tool schemas every turn) instead of a
// one-line input. --interleave runs the latency phase with the three targets' sessions open at
// once and their turns in alternating rounds (ws-driver.ts runInterleaved): every target measured
// over the same stretch of time; --rounds sets the measured turns per session (default: the plan's).
// --with-floor adds the floor relay (bare-relay.ts --floor) as a fourth target beside Switchyard,
// measured in the same runs: its floor_* figures say what of Switchyard's gap to the bare relay
// any relay that checks its frames pays on this machine at that moment.
import { parseArgs } from 'node:util';
import { BenchChild, pinDriverAndRelays, withChildren } from './children.js';
import { median, percentiles, rotate, round } from './stats.js';
import { runInterleaved, runWsPhase, type WsPhaseResult, type WsTarget } from './ws-driver.js';

interface Plan {
  /** Turns per session, the warm-up turn included. */
  throughputTurns: number;
  latencyTurns: number;
  /** Delta pacing in the latency phase (the offered load is sessions × 1000 / interval events/s). */
  intervalMs: number;
}

const PLANS: Record<number, Plan> = {
  1: { throughputTurns: 60, latencyTurns: 12, intervalMs: 4 },
  100: { throughputTurns: 8, latencyTurns: 4, intervalMs: 20 },
  1000: { throughputTurns: 2, latencyTurns: 2, intervalMs: 60 },
};
// ~4 characters per delta, like real tokens.
const TEXT = 'lorem ipsum dolor sit amet '.repeat(8);
const WARMUP = { sessions: 100, turns: 10 };
const ACCOUNTS = 8;
const CLIENT_KEY = 'sy-bench-client';
const BETA = 'responses_websockets=2026-02-06';
const PHASE_TIMEOUT_MS = 120_000;
type TargetName = 'direct' | 'bare' | 'relay' | 'floor';

interface SimInfo {
  url: string;
  accounts: Array<{ name: string; key: string; baseUrl: string; wsPath: string; wsUrl: string }>;
}

interface RunFigures {
  eps: Record<TargetName, number>;
  cpuPer10k: Partial<Record<TargetName, number>>;
  /** CPU per 10,000 events in the latency phase: paced events, one per read, no batching. */
  latCpuPer10k: Partial<Record<TargetName, number>>;
  p50: Record<TargetName, number>;
  p99: Record<TargetName, number>;
  ttfeFirst: Record<TargetName, number>;
  ttfeLater: Record<TargetName, number>;
  ttfeUp: Record<TargetName, number>;
  ttfeDown: Record<TargetName, number>;
}

const { values } = parseArgs({
  options: {
    k: { type: 'string', default: '1,100,1000' },
    runs: { type: 'string', default: '3' },
    profile: { type: 'string' },
    pin: { type: 'boolean', default: false },
    'log-level': { type: 'string', default: 'warn' },
    deltas: { type: 'string', default: '50' },
    'body-kb': { type: 'string', default: '0' },
    // Investigation: run one phase only (e.g. `--phases latency` with --profile).
    phases: { type: 'string', default: 'throughput,latency' },
    // A/A check: a second bare relay process stands in for Switchyard, so every relay_* ratio
    // compares two identical relays and shows how far this machine moves a ratio by itself.
    aa: { type: 'boolean', default: false },
    // Like --aa, but the second bare relay does the least per-turn work a scheduling relay must do
    // before a frame goes upstream (bare-relay.ts --floor): what any such relay pays here.
    floor: { type: 'boolean', default: false },
    // The floor relay as a fourth target, beside Switchyard, in the same runs.
    'with-floor': { type: 'boolean', default: false },
    interleave: { type: 'boolean', default: false },
    rounds: { type: 'string' },
  },
});
const DELTAS = Number(values.deltas);
const BODY_KB = Number(values['body-kb']);
const ks = values.k.split(',').map(Number);
for (const k of ks) if (!PLANS[k]) throw new Error(`no plan for K=${k} (known: ${Object.keys(PLANS).join(', ')})`);
const runs = Math.max(1, Number(values.runs));
const phases = new Set(values.phases.split(','));
const withFloor = values['with-floor'];
if (withFloor && (values.aa || values.floor)) throw new Error('--with-floor measures Switchyard beside the floor; --aa and --floor replace Switchyard');
const TARGETS: readonly TargetName[] = withFloor ? ['direct', 'bare', 'floor', 'relay'] : ['direct', 'bare', 'relay'];

function relayConfig(sim: SimInfo): Record<string, unknown> {
  return {
    clients: [{ key: CLIENT_KEY, group: 'default', maxConnections: 0 }],
    // Enough slots that nothing queues: the benchmark measures relaying, not waiting.
    accounts: sim.accounts.map((a) => ({ id: a.name, baseUrl: a.baseUrl, apiKey: a.key, concurrency: 1024 })),
    websocket: { idleTimeoutMs: 600_000 },
  };
}

/** `standIn`: the relay under test is a bare relay (--aa, --floor), addressed like the first one. */
function targets(sim: SimInfo, barePort: number, relayPort: number, standIn: boolean, floorPort: number | null): Record<TargetName, WsTarget> {
  const acct = (i: number) => sim.accounts[i % sim.accounts.length];
  const upstreamHeaders = (i: number) => ({ authorization: `Bearer ${acct(i).key}`, 'openai-beta': BETA, session_id: `bench-${i}` });
  const bareLike = (name: TargetName, port: number): WsTarget => ({ name, url: (i) => `ws://127.0.0.1:${port}${acct(i).wsPath}`, headers: upstreamHeaders });
  return {
    direct: { name: 'direct', url: (i) => acct(i).wsUrl, headers: upstreamHeaders },
    bare: bareLike('bare', barePort),
    // Only addressed with --with-floor.
    floor: bareLike('floor', floorPort ?? 0),
    relay: standIn
      ? bareLike('relay', relayPort)
      : {
          name: 'relay',
          url: () => `ws://127.0.0.1:${relayPort}/v1/responses`,
          headers: (i) => ({ authorization: `Bearer ${CLIENT_KEY}`, session_id: `bench-${i}` }),
        },
  };
}

/** Waits until the relay has let go of every session of the previous phase (bounded). */
async function settle(child: BenchChild | null): Promise<void> {
  if (!child) return;
  for (let i = 0; i < 100; i++) {
    if ((await child.call<number>('sessions')) === 0) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  process.stderr.write(`[bench:ws] ${child.name} still holds sessions after 5 s\n`);
}

await withChildren(async () => {
  const { child: simChild, info } = await BenchChild.fork('sim', 'scripts/bench/sim-child.ts', { args: ['--accounts', String(ACCOUNTS)] });
  const sim = info as unknown as SimInfo;
  const profile = values.profile ? ['--cpu-prof', `--cpu-prof-dir=${values.profile}`] : [];
  // Investigation only: extra V8 flags for both relays (e.g. --trace-gc), from the environment.
  const extra = process.env.BENCH_RELAY_NODE_FLAGS?.split(' ').filter(Boolean) ?? [];
  const { child: bare, info: bareInfo } = await BenchChild.fork('bare', 'scripts/bench/bare-relay.ts', {
    args: ['--target', sim.url.replace(/^http/, 'ws')],
    nodeFlags: [...profile, ...extra],
  });
  const standIn = values.aa || values.floor;
  const { child: relay, info: relayInfo } = standIn
    ? await BenchChild.fork(values.floor ? 'floor' : 'bare-2', 'scripts/bench/bare-relay.ts', {
        args: ['--target', sim.url.replace(/^http/, 'ws'), ...(values.floor ? ['--floor'] : [])],
        nodeFlags: [...profile, ...extra],
      })
    : await BenchChild.fork('switchyard', 'scripts/bench/switchyard-child.ts', {
        args: ['--config', JSON.stringify(relayConfig(sim)), '--log-level', values['log-level']],
        nodeFlags: [...profile, ...extra],
      });
  const floorRelay = withFloor
    ? await BenchChild.fork('floor', 'scripts/bench/bare-relay.ts', {
        args: ['--target', sim.url.replace(/^http/, 'ws'), '--floor'],
        nodeFlags: [...profile, ...extra],
      })
    : null;
  if (values.profile) process.stderr.write(`[bench:ws] profiles in ${values.profile}: bare pid ${bare.pid}, ${relay.name} pid ${relay.pid}${floorRelay ? `, floor pid ${floorRelay.child.pid}` : ''}\n`);
  // The relays share CPU 1 but run one at a time in the latency phase.
  if (values.pin) pinDriverAndRelays([simChild.pid], [bare.pid, relay.pid, ...(floorRelay ? [floorRelay.child.pid] : [])]);
  const all = targets(sim, bareInfo.port as number, relayInfo.port as number, standIn, floorRelay ? (floorRelay.info.port as number) : null);
  const servers: Record<TargetName, BenchChild | null> = { direct: null, bare, relay, floor: floorRelay?.child ?? null };

  const phase = async (name: TargetName, k: number, turns: number, staggerMs: number, withCpu: boolean): Promise<{ r: WsPhaseResult; cpuS: number | null }> => {
    const server = servers[name];
    let cpuBefore = 0;
    let cpuS: number | null = null;
    const r = await runWsPhase(
      all[name],
      // Both phases measure the steady state: first turns (Switchyard opens its upstream socket
      // then) run before, and only give their time to first event.
      { sessions: k, turns, staggerMs, timeoutMs: PHASE_TIMEOUT_MS, warmupTurn: true, bodyKb: BODY_KB },
      {
        afterOpen: async () => {
          if (withCpu && server) cpuBefore = (await server.usage()).cpuUs;
        },
        afterTurns: async () => {
          if (withCpu && server) cpuS = ((await server.usage()).cpuUs - cpuBefore) / 1e6;
        },
      },
    );
    await settle(server);
    return { r, cpuS };
  };

  // JIT warm-up of every process (driver included): Switchyard's per-turn code runs once per
  // turn, not per event, and would otherwise be measured half-compiled at small K.
  await simChild.call('set', { deltaCount: DELTAS, deltaIntervalMs: 0, ttftMs: 0, text: TEXT });
  for (const name of TARGETS) await phase(name, WARMUP.sessions, WARMUP.turns, 0, false);

  for (const k of ks) {
    const plan = PLANS[k];
    // Measured latency turns per session with --interleave (each after one warm-up turn).
    const rounds = values.rounds ? Math.max(1, Number(values.rounds)) : plan.latencyTurns - 1;
    const perRun: RunFigures[] = [];
    for (let run = 0; run < runs; run++) {
      const order = rotate(TARGETS, run);
      const f: RunFigures = { eps: {} as never, cpuPer10k: {}, latCpuPer10k: {}, p50: {} as never, p99: {} as never, ttfeFirst: {} as never, ttfeLater: {} as never, ttfeUp: {} as never, ttfeDown: {} as never };
      await simChild.call('set', { deltaCount: DELTAS, deltaIntervalMs: 0, ttftMs: 0, text: TEXT });
      for (const name of phases.has('throughput') ? order : []) {
        const { r, cpuS } = await phase(name, k, plan.throughputTurns, 0, true);
        f.eps[name] = (r.events / r.elapsedMs) * 1000;
        if (cpuS !== null) f.cpuPer10k[name] = (cpuS / r.events) * 10_000;
      }
      await simChild.call('set', { deltaIntervalMs: plan.intervalMs });
      const turnMs = DELTAS * plan.intervalMs;
      const latency = (name: TargetName, r: WsPhaseResult, cpuS: number | null) => {
        if (cpuS !== null) f.latCpuPer10k[name] = (cpuS / r.events) * 10_000;
        [f.p50[name], f.p99[name]] = percentiles(r.latencies, [50, 99]);
        [f.ttfeFirst[name]] = percentiles(r.ttfeFirst, [50]);
        [f.ttfeLater[name]] = percentiles(r.ttfeLater, [50]);
        [f.ttfeUp[name]] = percentiles(r.ttfeLaterUp, [50]);
        [f.ttfeDown[name]] = percentiles(r.ttfeLaterDown, [50]);
      };
      if (phases.has('latency') && values.interleave) {
        const cpuS: Partial<Record<TargetName, number>> = {};
        let before = 0;
        const results = await runInterleaved(
          order.map((name) => all[name]),
          { sessions: k, rounds, staggerMs: k > 1 ? turnMs : 0, timeoutMs: PHASE_TIMEOUT_MS * (rounds + 1), bodyKb: BODY_KB },
          {
            beforeRound: async (name) => {
              const server = servers[name as TargetName];
              if (server) before = (await server.usage()).cpuUs;
            },
            afterRound: async (name) => {
              const server = servers[name as TargetName];
              if (server) cpuS[name as TargetName] = (cpuS[name as TargetName] ?? 0) + ((await server.usage()).cpuUs - before) / 1e6;
            },
          },
        );
        for (const r of results) latency(r.target as TargetName, r, cpuS[r.target as TargetName] ?? null);
        for (const name of order) await settle(servers[name]);
      } else if (phases.has('latency')) {
        for (const name of order) {
          const { r, cpuS } = await phase(name, k, plan.latencyTurns, k > 1 ? turnMs : 0, true);
          latency(name, r, cpuS);
        }
      }
      perRun.push(f);
      process.stderr.write(`[bench:ws] K=${k} run ${run + 1}/${runs}: ${JSON.stringify(f, (_k, v: unknown) => (typeof v === 'number' ? round(v, 3) : v))}\n`);
    }
    const med = (pick: (f: RunFigures) => number | undefined) => median(perRun.map((f) => pick(f) ?? Number.NaN));
    const added = (name: TargetName, field: 'p50' | 'p99' | 'ttfeFirst' | 'ttfeLater' | 'ttfeUp' | 'ttfeDown') => med((f) => f[field][name] - f[field].direct);
    const perRunRatio = (pick: (f: RunFigures) => number) => round(med(pick), 2);
    const addedVsBare = (name: TargetName, field: 'p50' | 'p99' | 'ttfeLater') => round(added(name, field) / added('bare', field), 2);
    const eps = { direct: med((f) => f.eps.direct), bare: med((f) => f.eps.bare), relay: med((f) => f.eps.relay) };
    const line = {
      bench: 'ws',
      sessions: k,
      direct_eps: round(eps.direct, 0),
      bare_eps: round(eps.bare, 0),
      relay_eps: round(eps.relay, 0),
      bare_added_p50_ms: round(added('bare', 'p50')),
      bare_added_p99_ms: round(added('bare', 'p99')),
      relay_added_p50_ms: round(added('relay', 'p50')),
      relay_added_p99_ms: round(added('relay', 'p99')),
      bare_ttfe_later_ms: round(added('bare', 'ttfeLater')),
      relay_ttfe_later_ms: round(added('relay', 'ttfeLater')),
      relay_cpu_s_per_10k: round(med((f) => f.cpuPer10k.relay)),
      // Beyond the issue's format: first turns, the bare relay's CPU, the direct baseline, ratios.
      // Later-turn TTFE split at the first event's sim_ts: request leg (send → sim), response leg.
      bare_ttfe_later_up_ms: round(added('bare', 'ttfeUp')),
      relay_ttfe_later_up_ms: round(added('relay', 'ttfeUp')),
      bare_ttfe_later_down_ms: round(added('bare', 'ttfeDown')),
      relay_ttfe_later_down_ms: round(added('relay', 'ttfeDown')),
      bare_ttfe_first_ms: round(added('bare', 'ttfeFirst')),
      relay_ttfe_first_ms: round(added('relay', 'ttfeFirst')),
      bare_cpu_s_per_10k: round(med((f) => f.cpuPer10k.bare)),
      relay_latency_cpu_s_per_10k: round(med((f) => f.latCpuPer10k.relay)),
      bare_latency_cpu_s_per_10k: round(med((f) => f.latCpuPer10k.bare)),
      direct_p50_ms: round(med((f) => f.p50.direct)),
      direct_p99_ms: round(med((f) => f.p99.direct)),
      // Throughput and CPU ratios are taken within each run (same machine state), then the median
      // over runs; latency ratios divide the median added latencies (a ratio of two small
      // differences from one run swings with any hiccup of the direct baseline).
      relay_eps_vs_bare: perRunRatio((f) => f.eps.relay / f.eps.bare),
      relay_eps_vs_direct: perRunRatio((f) => f.eps.relay / f.eps.direct),
      relay_cpu_vs_bare: perRunRatio((f) => (f.cpuPer10k.relay ?? Number.NaN) / (f.cpuPer10k.bare ?? Number.NaN)),
      relay_p50_vs_bare: addedVsBare('relay', 'p50'),
      relay_p99_vs_bare: addedVsBare('relay', 'p99'),
      relay_ttfe_later_vs_bare: addedVsBare('relay', 'ttfeLater'),
      runs,
      turns: { throughput: plan.throughputTurns, latency: values.interleave ? rounds + 1 : plan.latencyTurns },
      ...(values.interleave ? { interleaved: true } : {}),
      latency_interval_ms: plan.intervalMs,
      deltas: DELTAS,
      ...(BODY_KB > 0 ? { request_kb: BODY_KB } : {}),
      ...(withFloor
        ? {
            floor_eps: round(med((f) => f.eps.floor), 0),
            floor_added_p50_ms: round(added('floor', 'p50')),
            floor_added_p99_ms: round(added('floor', 'p99')),
            floor_ttfe_later_ms: round(added('floor', 'ttfeLater')),
            floor_ttfe_later_up_ms: round(added('floor', 'ttfeUp')),
            floor_ttfe_later_down_ms: round(added('floor', 'ttfeDown')),
            floor_latency_cpu_s_per_10k: round(med((f) => f.latCpuPer10k.floor)),
            floor_eps_vs_bare: perRunRatio((f) => f.eps.floor / f.eps.bare),
            floor_p50_vs_bare: addedVsBare('floor', 'p50'),
            floor_p99_vs_bare: addedVsBare('floor', 'p99'),
            floor_ttfe_later_vs_bare: addedVsBare('floor', 'ttfeLater'),
          }
        : {}),
    };
    process.stdout.write(`${JSON.stringify(line)}\n`);
  }
  const warnings = standIn ? [] : await relay.call<string[]>('logs');
  if (warnings.length > 0) process.stderr.write(`[bench:ws] relay warnings:\n${warnings.join('\n')}\n`);
});
