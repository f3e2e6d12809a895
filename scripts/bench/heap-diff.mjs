// Investigation tool (plain JavaScript, no build): what N things (sessions) cost in the heap, by
// object type, from two V8 heap snapshots of one process taken before and after they were made
// (`npm run bench:sessions -- --heap-snapshots DIR` writes such a pair for each relay).
//
//   node scripts/bench/heap-diff.mjs BEFORE.heapsnapshot AFTER.heapsnapshot N [--top 40] [--retainers 'object:Object']
//
// Prints bytes and objects per N by "type:constructor" (strings, numbers and code each counted as
// one kind), largest first. With --retainers TYPE it also counts, for every object of that kind
// in AFTER, the edge and object that hold it (two levels up): which field keeps it alive.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

function load(file) {
  const s = JSON.parse(readFileSync(file, 'utf8'));
  const meta = s.snapshot.meta;
  const nf = meta.node_fields.length;
  const at = (name) => meta.node_fields.indexOf(name);
  return {
    s,
    nf,
    ef: meta.edge_fields.length,
    types: meta.node_types[0],
    edgeTypes: meta.edge_types[0],
    TYPE: at('type'),
    NAME: at('name'),
    SIZE: at('self_size'),
    EDGES: at('edge_count'),
  };
}

/** "type:name", with every string, number and code object under one name per type. */
function kindOf(h, i) {
  const t = h.types[h.s.nodes[i * h.nf + h.TYPE]];
  if (t.includes('string')) return `${t}:(string)`;
  if (t === 'number') return 'number:(number)';
  if (t === 'code') return 'code:(code)';
  return `${t}:${h.s.strings[h.s.nodes[i * h.nf + h.NAME]].slice(0, 60)}`;
}

function totals(h) {
  const out = new Map();
  const count = h.s.nodes.length / h.nf;
  for (let i = 0; i < count; i++) {
    const k = kindOf(h, i);
    const e = out.get(k) ?? [0, 0];
    e[0]++;
    e[1] += h.s.nodes[i * h.nf + h.SIZE];
    out.set(k, e);
  }
  return out;
}

/** For each object of `kind`: "edge <- holder <-edge- holder's holder", counted. */
function retainers(h, kind) {
  const { nodes, edges, strings } = h.s;
  const count = nodes.length / h.nf;
  const by = Array.from({ length: count }, () => null);
  let e = 0;
  for (let i = 0; i < count; i++) {
    const n = nodes[i * h.nf + h.EDGES];
    for (let j = 0; j < n; j++, e += h.ef) {
      const type = h.edgeTypes[edges[e]];
      if (type === 'weak') continue;
      const to = edges[e + 2] / h.nf;
      const name = type === 'element' || type === 'hidden' ? `[${edges[e + 1]}]` : strings[edges[e + 1]];
      if (by[to] === null) by[to] = [i, `${type}:${name}`];
    }
  }
  const label = (i) => kindOf(h, i);
  const out = new Map();
  for (let i = 0; i < count; i++) {
    if (kindOf(h, i) !== kind) continue;
    const r = by[i];
    let k = '(none)';
    if (r) {
      const up = by[r[0]];
      k = `${r[1]} <- ${label(r[0])}${up ? ` <-${up[1]}- ${label(up[0])}` : ''}`;
    }
    out.set(k, (out.get(k) ?? 0) + 1);
  }
  return out;
}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { top: { type: 'string', default: '40' }, retainers: { type: 'string' } },
});
if (positionals.length !== 3) {
  process.stderr.write('usage: node scripts/bench/heap-diff.mjs BEFORE AFTER N [--top 40] [--retainers KIND]\n');
  process.exit(2);
}
const [beforeFile, afterFile, nText] = positionals;
const per = Number(nText);
const before = totals(load(beforeFile));
const afterHeap = load(afterFile);
const after = totals(afterHeap);
const rows = [];
for (const [k, [n, bytes]] of after) {
  const [n0, bytes0] = before.get(k) ?? [0, 0];
  rows.push([k, (n - n0) / per, (bytes - bytes0) / per]);
}
rows.sort((a, b) => b[2] - a[2]);
const sum = rows.reduce((s, r) => s + r[2], 0);
const code = rows.find((r) => r[0] === 'code:(code)')?.[2] ?? 0;
process.stdout.write(`bytes per item: ${sum.toFixed(0)} (${(sum - code).toFixed(0)} without compiled code, which grows with warm-up, not with items)\n`);
process.stdout.write(`${'bytes'.padStart(9)} ${'objects'.padStart(8)}  kind\n`);
for (const [k, n, bytes] of rows.slice(0, Number(values.top))) {
  process.stdout.write(`${bytes.toFixed(1).padStart(9)} ${n.toFixed(2).padStart(8)}  ${k}\n`);
}
if (values.retainers) {
  process.stdout.write(`\nheld by (in AFTER), for ${values.retainers}:\n`);
  const held = [...retainers(afterHeap, values.retainers)].sort((a, b) => b[1] - a[1]).slice(0, Number(values.top));
  for (const [k, n] of held) process.stdout.write(`${String(n).padStart(8)}  ${k}\n`);
}
