// Investigation preload for a relay process (plain JavaScript, so it loads with or without tsx):
//   BENCH_RELAY_NODE_FLAGS='--import ./scripts/bench/heap-survivors.mjs' npm run bench:ws -- --k 1000 --runs 1
// Starts V8's sampling heap profiler keeping objects collected by full GCs but dropping those that
// died in a scavenge, so the samples are what survived at least one scavenge (or is still live):
// what makes scavenges slow. Every 5 s it writes HEAP_SURVIVORS_DIR (default /tmp)/<pid>.heapprofile,
// which Chrome DevTools (Memory tab) opens, or `node scripts/bench/heap-survivors.mjs FILE` sums
// by allocating function and nearest repository frame.
import { writeFileSync, readFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const INTERVAL_BYTES = 2048;

async function startSampling() {
  const session = new Session();
  session.connect();
  const post = (method, params = {}) =>
    new Promise((resolve, reject) => session.post(method, params, (err, res) => (err ? reject(err) : resolve(res))));
  await post('HeapProfiler.enable');
  await post('HeapProfiler.startSampling', {
    samplingInterval: INTERVAL_BYTES,
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: false,
  });
  const dir = process.env.HEAP_SURVIVORS_DIR ?? '/tmp';
  setInterval(async () => {
    const { profile } = await post('HeapProfiler.getSamplingProfile');
    writeFileSync(`${dir}/${process.pid}.heapprofile`, JSON.stringify(profile));
  }, 5000).unref();
}

/** Self bytes per (nearest frame in src/ or scripts/, allocating function), largest first. */
function summarise(file, top = 40) {
  const profile = JSON.parse(readFileSync(file, 'utf8'));
  const sums = new Map();
  let total = 0;
  const name = (f) => `${f.functionName || '(anonymous)'} ${f.url.replace(/^.*?\/((dist\/)?(src|scripts)\/|node_modules\/)/, '$1')}`;
  const walk = (node, stack) => {
    const here = [...stack, name(node.callFrame)];
    if (node.selfSize > 0 && !here.some((s) => /inspector|heap-survivors|writeFileSync/.test(s))) {
      total += node.selfSize;
      const own = here.filter((s) => / (dist\/)?(src|scripts)\//.test(s)).at(-1) ?? '(no repository frame)';
      const key = `${own}  ::  ${here.at(-1)}`;
      sums.set(key, (sums.get(key) ?? 0) + node.selfSize);
    }
    for (const child of node.children) walk(child, here);
  };
  walk(profile.head, []);
  console.log(`${(total / 1e6).toFixed(1)} MB sampled (profiler's own allocations left out)`);
  for (const [key, bytes] of [...sums].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(`${(bytes / 1e6).toFixed(2).padStart(7)} MB  ${key}`);
  }
}

// Run as a script (not preloaded with --import): summarise the file given.
if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  if (!process.argv[2]) throw new Error('usage: node scripts/bench/heap-survivors.mjs FILE.heapprofile [TOP]');
  summarise(process.argv[2], Number(process.argv[3] ?? 40));
} else {
  await startSampling();
}
