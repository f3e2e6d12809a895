// `npm run bench:http`: streaming POST /v1/responses four ways in one run — straight to the
// simulated upstream, through a bare pass-through (bare-http-relay.ts: the floor of a Node HTTP
// relay), through Switchyard, through the Portkey AI gateway (@portkey-ai/gateway, run locally,
// provider openai with the sim as its custom host) — each server in its own process, this
// process being the client. For N concurrent streams: requests/s and the added
// latency per SSE event (p50/p99 of read time − sim_ts, minus the direct figure of the same run).
// The sim streams as fast as it can, so requests/s is each path's capacity on this machine.
// Every figure is the median over `--runs` runs; the order of targets rotates between runs.
//
// Portkey is first probed with one streaming request; when it cannot stream, its error is
// printed (`portkey_error`) and its figures are null.
//
//   npm run bench:http -- [--streams 1,50,200] [--runs 3] [--seconds 4] [--portkey-shim] [--profile DIR] [--pin]
// --profile DIR writes a --cpu-prof profile of the Switchyard process there, and of the bare
// pass-through under DIR/bare. --pin puts this driver and the sim on CPU 0 and every relay on
// CPU 1 (taskset, every thread), as bench:ws --pin does: a relay then adds its own CPU to the
// path instead of taking it from the load generator and the upstream, as in a deployment where
// clients and OpenAI are other machines. By default all processes share both CPUs, which the
// sim keeps busy, so a relay's rps is bounded by its CPU per request plus theirs.
import { parseArgs } from 'node:util';
import { BenchChild, pinDriverAndRelays, withChildren } from './children.js';
import { runHttpPhase, type HttpTarget } from './http-driver.js';
import { median, percentiles, rotate, round } from './stats.js';

const ACCOUNTS = 8;
const WARMUP_STREAMS = 20;
const WARMUP_MS = 1_500;
const DELTAS = 20;
const TEXT = 'lorem ipsum dolor sit amet '.repeat(3);
const CLIENT_KEY = 'sy-bench-client';
const TARGETS = ['direct', 'bare', 'switchyard', 'portkey'] as const;
type TargetName = (typeof TARGETS)[number];

interface SimInfo {
  url: string;
  accounts: Array<{ name: string; key: string; baseUrl: string }>;
}

interface RunFigures {
  rps: Partial<Record<TargetName, number>>;
  p50: Partial<Record<TargetName, number>>;
  p99: Partial<Record<TargetName, number>>;
  ttfe: Partial<Record<TargetName, number>>;
  /** CPU ms per completed request: the serving process, and the sim behind it. */
  cpu: Partial<Record<TargetName, number>>;
  simCpu: Partial<Record<TargetName, number>>;
  clientCpu: Partial<Record<TargetName, number>>;
}

const { values } = parseArgs({
  options: {
    streams: { type: 'string', default: '1,50,200' },
    runs: { type: 'string', default: '3' },
    seconds: { type: 'string', default: '4' },
    'portkey-shim': { type: 'boolean', default: false },
    profile: { type: 'string' },
    pin: { type: 'boolean', default: false },
  },
});
const streamCounts = values.streams.split(',').map(Number);
const runs = Math.max(1, Number(values.runs));
const durationMs = Number(values.seconds) * 1000;

await withChildren(async () => {
  const { child: simChild, info } = await BenchChild.fork('sim', 'scripts/bench/sim-child.ts', { args: ['--accounts', String(ACCOUNTS)] });
  const sim = info as unknown as SimInfo;
  const simOrigin = new URL(sim.url).origin;
  await simChild.call('set', { deltaCount: DELTAS, deltaIntervalMs: 0, ttftMs: 0, text: TEXT });
  const { child: relay, info: relayInfo } = await BenchChild.fork('switchyard', 'scripts/bench/switchyard-child.ts', {
    args: [
      '--config',
      JSON.stringify({
        clients: [{ key: CLIENT_KEY, group: 'default', maxConnections: 0 }],
        accounts: sim.accounts.map((a) => ({ id: a.name, baseUrl: a.baseUrl, apiKey: a.key, concurrency: 1024 })),
      }),
    ],
    nodeFlags: values.profile ? ['--cpu-prof', `--cpu-prof-dir=${values.profile}`] : [],
  });
  const { child: bare, info: bareInfo } = await BenchChild.fork('bare-http', 'scripts/bench/bare-http-relay.ts', {
    args: ['--target', simOrigin],
    nodeFlags: values.profile ? ['--cpu-prof', `--cpu-prof-dir=${values.profile}/bare`] : [],
  });
  const { child: portkey, info: portkeyInfo } = await BenchChild.fork('portkey', 'scripts/bench/portkey-child.ts', {
    env: values['portkey-shim'] ? { BENCH_PORTKEY_SHIM: '1' } : {},
    echo: false,
  });
  if (values.pin) pinDriverAndRelays([simChild.pid], [relay.pid, bare.pid, portkey.pid]);
  const acct = (n: number) => sim.accounts[n % sim.accounts.length];
  const targets: Record<TargetName, HttpTarget> = {
    direct: {
      name: 'direct',
      origin: simOrigin,
      path: (n) => `${new URL(acct(n).baseUrl).pathname}/responses`,
      headers: (n) => ({ authorization: `Bearer ${acct(n).key}` }),
    },
    bare: {
      name: 'bare',
      origin: `http://127.0.0.1:${bareInfo.port as number}`,
      path: (n) => `${new URL(acct(n).baseUrl).pathname}/responses`,
      headers: (n) => ({ authorization: `Bearer ${acct(n).key}` }),
    },
    switchyard: {
      name: 'switchyard',
      origin: `http://127.0.0.1:${relayInfo.port as number}`,
      path: () => '/v1/responses',
      headers: () => ({ authorization: `Bearer ${CLIENT_KEY}` }),
    },
    portkey: {
      name: 'portkey',
      origin: `http://127.0.0.1:${portkeyInfo.port as number}`,
      path: () => '/v1/responses',
      headers: (n) => ({ authorization: `Bearer ${acct(n).key}`, 'x-portkey-provider': 'openai', 'x-portkey-custom-host': acct(n).baseUrl }),
    },
  };

  const probe = await runHttpPhase(targets.portkey, 1, 1);
  const portkeyError = probe.completed + probe.failed === 0 || probe.firstError === null ? null : probe.firstError;
  if (portkeyError !== null) {
    const trace = portkey.recent.filter((l) => l.includes('Error') || l.includes(' at ')).slice(0, 6);
    process.stderr.write(`[bench:http] Portkey cannot stream POST /v1/responses here: ${portkeyError}\n${trace.join('\n')}\n`);
  }
  const servers: Record<TargetName, BenchChild | null> = { direct: null, bare, switchyard: relay, portkey };
  const active = TARGETS.filter((t) => t !== 'portkey' || portkeyError === null);

  // JIT warm-up of every process (driver included), unmeasured.
  for (const name of active) await runHttpPhase(targets[name], WARMUP_STREAMS, WARMUP_MS);

  for (const streams of streamCounts) {
    const perRun: RunFigures[] = [];
    for (let run = 0; run < runs; run++) {
      const f: RunFigures = { rps: {}, p50: {}, p99: {}, ttfe: {}, cpu: {}, simCpu: {}, clientCpu: {} };
      for (const name of rotate(active, run)) {
        const server = servers[name];
        const cpu = { sim: 0, server: 0, client: 0 };
        const r = await runHttpPhase(targets[name], streams, durationMs, {
          afterWarmup: async () => {
            cpu.sim = (await simChild.usage()).cpuUs;
            cpu.server = server ? (await server.usage()).cpuUs : 0;
            const own = process.cpuUsage();
            cpu.client = own.user + own.system;
          },
          afterRequests: async () => {
            const own = process.cpuUsage();
            cpu.client = own.user + own.system - cpu.client;
            cpu.sim = (await simChild.usage()).cpuUs - cpu.sim;
            cpu.server = server ? (await server.usage()).cpuUs - cpu.server : 0;
          },
        });
        if (r.completed > 0) {
          f.simCpu[name] = cpu.sim / 1000 / r.completed;
          f.clientCpu[name] = cpu.client / 1000 / r.completed;
          if (server) f.cpu[name] = cpu.server / 1000 / r.completed;
        }
        if (r.failed > 0) process.stderr.write(`[bench:http] ${name}: ${r.failed} requests failed; first: ${r.firstError}\n`);
        f.rps[name] = (r.completed / r.elapsedMs) * 1000;
        [f.p50[name], f.p99[name]] = percentiles(r.latencies, [50, 99]);
        [f.ttfe[name]] = percentiles(r.ttfe, [50]);
      }
      perRun.push(f);
      process.stderr.write(`[bench:http] streams=${streams} run ${run + 1}/${runs}: ${JSON.stringify(f, (_k, v: unknown) => (typeof v === 'number' ? round(v, 3) : v))}\n`);
    }
    const med = (pick: (f: RunFigures) => number | undefined) => median(perRun.map((f) => pick(f) ?? Number.NaN));
    const added = (name: TargetName, field: 'p50' | 'p99' | 'ttfe') => med((f) => (f[field][name] ?? Number.NaN) - (f[field].direct ?? Number.NaN));
    const rps = { direct: med((f) => f.rps.direct), bare: med((f) => f.rps.bare), switchyard: med((f) => f.rps.switchyard), portkey: med((f) => f.rps.portkey) };
    const line = {
      bench: 'http',
      streams,
      direct_rps: round(rps.direct, 0),
      switchyard_rps: round(rps.switchyard, 0),
      portkey_rps: round(rps.portkey, 0),
      switchyard_added_p99_ms: round(added('switchyard', 'p99')),
      portkey_added_p99_ms: round(added('portkey', 'p99')),
      // Beyond the format: the bare pass-through, p50s, time to first event, CPU per
      // request of each process, ratios, Portkey's state.
      bare_rps: round(rps.bare, 0),
      bare_added_p99_ms: round(added('bare', 'p99')),
      bare_added_p50_ms: round(added('bare', 'p50')),
      switchyard_added_p50_ms: round(added('switchyard', 'p50')),
      portkey_added_p50_ms: round(added('portkey', 'p50')),
      switchyard_added_ttfe_ms: round(added('switchyard', 'ttfe')),
      portkey_added_ttfe_ms: round(added('portkey', 'ttfe')),
      switchyard_cpu_ms_per_req: round(med((f) => f.cpu.switchyard)),
      portkey_cpu_ms_per_req: round(med((f) => f.cpu.portkey)),
      bare_cpu_ms_per_req: round(med((f) => f.cpu.bare)),
      sim_cpu_ms_per_req: round(med((f) => f.simCpu.direct)),
      client_cpu_ms_per_req: round(med((f) => f.clientCpu.direct)),
      direct_p50_ms: round(med((f) => f.p50.direct)),
      direct_p99_ms: round(med((f) => f.p99.direct)),
      // Ratios are taken within each run (same machine state), then the median over runs.
      switchyard_rps_vs_direct: round(med((f) => (f.rps.switchyard ?? Number.NaN) / (f.rps.direct ?? Number.NaN)), 2),
      bare_rps_vs_direct: round(med((f) => (f.rps.bare ?? Number.NaN) / (f.rps.direct ?? Number.NaN)), 2),
      switchyard_rps_vs_portkey: round(med((f) => (f.rps.switchyard ?? Number.NaN) / (f.rps.portkey ?? Number.NaN)), 2),
      portkey_error: portkeyError,
      portkey_shim: values['portkey-shim'],
      ...(values.pin ? { pinned: true } : {}),
      runs,
      seconds: durationMs / 1000,
      deltas: DELTAS,
    };
    process.stdout.write(`${JSON.stringify(line)}\n`);
  }
});
