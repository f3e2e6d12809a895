// CLI for the simulated OpenAI upstream:
//   npx tsx scripts/sim-upstream.ts --port 0 --accounts a:key-a,b:key-b:http,c:key-c:flaky
//     [--knob c.errorRate=0.5] [--knob a.ttftMs=40] [--tls cert.pem,key.pem] [--timestamps] [--seed 7]
// Account flags after the key (joined with '+'): http (no WS: 426 on upgrade), flaky (errorRate 0.3),
// hang, ratelimited (429 after 3 turns), nobeta (do not require the OpenAI-Beta header).
// Prints {url, accounts: {name: {key, baseUrl, wsUrl, realtimeUrl}}} as one JSON line, then serves
// until SIGINT/SIGTERM.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { startSimUpstream } from './sim/upstream.js';
import type { SimAccountInit, SimKnobs } from './sim/types.js';

const FLAGS: Record<string, Partial<SimKnobs>> = {
  http: { wsSupported: false },
  flaky: { errorRate: 0.3 },
  hang: { hang: true },
  ratelimited: { rateLimitAfterTurns: 3 },
  nobeta: { requireBetaHeader: false },
};

function fail(msg: string): never {
  process.stderr.write(`sim-upstream: ${msg}\n`);
  process.exit(2);
}

function parseAccounts(spec: string): SimAccountInit[] {
  return spec.split(',').map((entry) => {
    const [name, key, flags = ''] = entry.split(':');
    if (!name) fail(`bad account spec '${entry}' (name:key[:flag+flag])`);
    let knobs: Partial<SimKnobs> = {};
    for (const f of flags.split('+').filter(Boolean)) {
      const k = FLAGS[f];
      if (!k) fail(`unknown account flag '${f}' (known: ${Object.keys(FLAGS).join(', ')})`);
      knobs = { ...knobs, ...k };
    }
    return { name, ...(key ? { key } : {}), ...knobs };
  });
}

/** `name.knob=value`: the value is JSON when it parses (numbers, booleans, null), else a string. */
function applyKnob(accounts: SimAccountInit[], spec: string): void {
  const m = /^([^.]+)\.([A-Za-z]+)=(.*)$/.exec(spec);
  if (!m) fail(`bad --knob '${spec}' (name.knob=value)`);
  const acct = accounts.find((a) => a.name === m[1]);
  if (!acct) fail(`--knob for unknown account '${m[1]}'`);
  let value: unknown = m[3];
  try {
    value = JSON.parse(m[3]);
  } catch {
    // Not JSON: keep the raw string (e.g. text=hello).
  }
  (acct as unknown as Record<string, unknown>)[m[2]] = value;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: 'string', default: '0' },
      accounts: { type: 'string', default: 'a:sk-sim-a,b:sk-sim-b,c:sk-sim-c:http' },
      knob: { type: 'string', multiple: true, default: [] },
      tls: { type: 'string' },
      timestamps: { type: 'boolean', default: false },
      seed: { type: 'string', default: '1' },
    },
  });
  const accounts = parseAccounts(values.accounts);
  for (const k of values.knob) applyKnob(accounts, k);
  let tls: { cert: Buffer; key: Buffer } | undefined;
  if (values.tls) {
    const [cert, key] = values.tls.split(',');
    if (!cert || !key) fail('--tls needs cert.pem,key.pem');
    tls = { cert: readFileSync(cert), key: readFileSync(key) };
  }
  const sim = await startSimUpstream({
    port: Number(values.port),
    accounts,
    tls,
    timestamps: values.timestamps,
    seed: Number(values.seed),
    // Nothing reads the log of a standalone process, and it would keep every frame forever.
    recordLog: false,
  });
  const wsBase = sim.url.replace(/^http/, 'ws');
  const out = {
    url: sim.url,
    accounts: Object.fromEntries(
      sim.accounts().map((a) => [
        a.name,
        {
          key: a.key,
          baseUrl: sim.baseUrlFor(a.name),
          wsUrl: `${wsBase}/acct/${encodeURIComponent(a.name)}/v1/responses`,
          realtimeUrl: `${wsBase}/acct/${encodeURIComponent(a.name)}/v1/realtime`,
        },
      ]),
    ),
  };
  process.stdout.write(`${JSON.stringify(out)}\n`);
  const stop = (): void => {
    void sim.close().then(() => process.exit(0));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

void main();
