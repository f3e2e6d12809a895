// Summarises V8 .cpuprofile files (from `--cpu-prof`): self time per source file, self time per
// function, and total time (self + callees) per function, busiest first. Used to read the relay's profile under `bench:ws`:
//   npx tsx scripts/bench/profile-top.ts DIR_OR_FILE [--top 30] [--filter src/]
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { top: { type: 'string', default: '30' }, filter: { type: 'string', default: '' } },
});
const target = positionals[0];
if (!target) throw new Error('usage: profile-top.ts DIR_OR_FILE [--top N] [--filter substring]');
const files = statSync(target).isDirectory()
  ? readdirSync(target).filter((f) => f.endsWith('.cpuprofile')).map((f) => join(target, f))
  : [target];

const shortUrl = (url: string): string => {
  const at = url.indexOf('/node_modules/');
  if (at >= 0) return url.slice(at + 1);
  const m = /\/(src|scripts|test)\/.*$/.exec(url);
  return m ? m[0].slice(1) : url || '(native)';
};

for (const file of files) {
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) selfUs.set(p.samples[i], (selfUs.get(p.samples[i]) ?? 0) + (p.timeDeltas[i] ?? 0));
  const perFn = new Map<string, number>();
  const perFile = new Map<string, number>();
  const fnKeyOf = (f: CallFrame) => `${f.functionName || '(anonymous)'}  ${shortUrl(f.url)}:${f.lineNumber + 1}`;
  let total = 0;
  for (const [id, us] of selfUs) {
    const f = byId.get(id)!.callFrame;
    total += us;
    const fileKey = f.functionName === '(idle)' || f.functionName === '(program)' ? f.functionName : shortUrl(f.url);
    perFn.set(fnKeyOf(f), (perFn.get(fnKeyOf(f)) ?? 0) + us);
    perFile.set(fileKey, (perFile.get(fileKey) ?? 0) + us);
  }
  // Total time: each node's self time is added to every distinct function on its stack.
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const inclusive = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const key = fnKeyOf(byId.get(cur)!.callFrame);
      if (seen.has(key)) continue;
      seen.add(key);
      inclusive.set(key, (inclusive.get(key) ?? 0) + us);
    }
  }
  const idle = [...perFn].filter(([k]) => k.startsWith('(idle)') || k.startsWith('(program)')).reduce((s, [, v]) => s + v, 0);
  const busy = total - idle;
  const pct = (us: number) => `${((100 * us) / busy).toFixed(1).padStart(5)}%`;
  const ms = (us: number) => `${(us / 1000).toFixed(0).padStart(7)} ms`;
  process.stdout.write(`\n== ${file}\nwall ${((p.endTime - p.startTime) / 1e6).toFixed(1)} s, busy ${(busy / 1e6).toFixed(2)} s (idle/program excluded)\n`);
  const top = Number(values.top);
  const show = (title: string, m: Map<string, number>) => {
    process.stdout.write(`-- ${title}\n`);
    [...m]
      .filter(([k]) => !k.startsWith('(idle)') && !k.startsWith('(program)') && !k.startsWith('(root)') && k.includes(values.filter))
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .forEach(([k, v]) => process.stdout.write(`${ms(v)} ${pct(v)}  ${k}\n`));
  };
  show('self time by file', perFile);
  show('self time by function', perFn);
  show('total time by function', inclusive);
}
