// The simulated upstream in its own process, for the benchmarks. Started with `--accounts N`
// (accounts bench-0 … bench-N-1, timestamps on, log off); `set` changes every account's knobs.
import { parseArgs } from 'node:util';
import { startSimUpstream, type SimKnobs } from '../sim/upstream.js';
import { serveParent } from './child-ipc.js';

const { values } = parseArgs({ options: { accounts: { type: 'string', default: '8' } } });
const count = Number(values.accounts);
const sim = await startSimUpstream({
  accounts: Array.from({ length: count }, (_, i) => ({ name: `bench-${i}` })),
  timestamps: true,
  // The log keeps every frame forever: a benchmark would measure its growth.
  recordLog: false,
});
const wsBase = sim.url.replace(/^http/, 'ws');
serveParent(
  {
    url: sim.url,
    accounts: sim.accounts().map((a) => ({
      name: a.name,
      key: a.key,
      baseUrl: sim.baseUrlFor(a.name),
      wsPath: `/acct/${encodeURIComponent(a.name)}/v1/responses`,
      wsUrl: `${wsBase}/acct/${encodeURIComponent(a.name)}/v1/responses`,
    })),
  },
  {
    set: (patch) => {
      for (const a of sim.accounts()) a.set(patch as Partial<SimKnobs>);
      return null;
    },
    sockets: () => sim.accounts().reduce((n, a) => n + a.openSockets, 0),
  },
  () => sim.close(),
);
