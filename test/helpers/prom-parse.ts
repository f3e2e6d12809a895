// A strict parser for the Prometheus text exposition format (version 0.0.4), for tests: every
// line must be a HELP/TYPE comment or a well-formed sample, or parsing throws with the line.
// Samples of a histogram/summary (`_bucket`, `_sum`, `_count`) are grouped under their family.

export interface Sample {
  /** Sample name as written (`x_bucket` for a histogram bucket). */
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  type: string;
  help: string;
  samples: Sample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);
const SUFFIXES = ['_bucket', '_sum', '_count', '_total', '_created'];

export function parsePrometheusText(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const seen = new Set<string>();
  const lines = text.split('\n');
  lines.forEach((line, i) => {
    const fail = (why: string): never => {
      throw new Error(`line ${i + 1}: ${why}: ${JSON.stringify(line)}`);
    };
    if (line.trim() === '') return;
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+)(?: (.*))?$/.exec(line);
      if (!m) return; // Other comments are allowed by the format.
      const [, kind, name, rest = ''] = m;
      if (!METRIC_NAME.test(name)) fail('bad metric name');
      const fam = families.get(name) ?? { name, type: 'untyped', help: '', samples: [] };
      families.set(name, fam);
      if (kind === 'TYPE') {
        if (!TYPES.has(rest)) fail('unknown type');
        if (fam.samples.length > 0) fail('TYPE after samples');
        fam.type = rest;
      } else {
        fam.help = rest;
      }
      return;
    }
    const sample = parseSample(line, fail);
    const key = `${sample.name}${JSON.stringify(Object.entries(sample.labels).sort())}`;
    if (seen.has(key)) fail('duplicate series');
    seen.add(key);
    familyOf(families, sample.name).samples.push(sample);
  });
  for (const fam of families.values()) if (fam.type === 'histogram') checkHistogram(fam);
  return families;
}

function familyOf(families: Map<string, Family>, sampleName: string): Family {
  const exact = families.get(sampleName);
  if (exact) return exact;
  for (const suffix of SUFFIXES) {
    if (!sampleName.endsWith(suffix)) continue;
    const fam = families.get(sampleName.slice(0, -suffix.length));
    if (fam) return fam;
  }
  const fam: Family = { name: sampleName, type: 'untyped', help: '', samples: [] };
  families.set(sampleName, fam);
  return fam;
}

function parseSample(line: string, fail: (why: string) => never): Sample {
  let pos = 0;
  const nameMatch = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line);
  if (!nameMatch) fail('bad sample name');
  const name = nameMatch![0];
  pos = name.length;
  const labels: Record<string, string> = {};
  if (line[pos] === '{') {
    pos++;
    while (line[pos] !== '}') {
      const lm = /^([a-zA-Z_][a-zA-Z0-9_]*)="/.exec(line.slice(pos));
      if (!lm || !LABEL_NAME.test(lm[1])) fail('bad label');
      pos += lm![0].length;
      let value = '';
      for (;;) {
        const c = line[pos];
        if (c === undefined) fail('unterminated label value');
        if (c === '"') break;
        if (c === '\\') {
          const n = line[pos + 1];
          if (n === 'n') value += '\n';
          else if (n === '\\' || n === '"') value += n;
          else fail('bad escape');
          pos += 2;
          continue;
        }
        value += c;
        pos++;
      }
      pos++;
      if (Object.hasOwn(labels, lm![1])) fail('duplicate label');
      labels[lm![1]] = value;
      if (line[pos] === ',') pos++;
      else if (line[pos] !== '}') fail('expected , or }');
    }
    pos++;
  }
  const rest = line.slice(pos);
  const vm = /^ (\S+)(?: (-?\d+))?$/.exec(rest);
  if (!vm) fail('bad value part');
  const value = parseValue(vm![1]);
  if (value === undefined) fail('bad value');
  return { name, labels, value: value! };
}

/** Like Prometheus (Go's ParseFloat): NaN and Inf in any letter case (prom-client writes `Nan`). */
function parseValue(s: string): number | undefined {
  const lower = s.toLowerCase();
  if (lower === '+inf' || lower === 'inf') return Infinity;
  if (lower === '-inf') return -Infinity;
  if (lower === 'nan') return NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(s)) return undefined;
  return Number(s);
}

/** Buckets are cumulative, end in +Inf, and +Inf equals _count, per label set. */
function checkHistogram(fam: Family): void {
  const groups = new Map<string, { buckets: { le: number; v: number }[]; count?: number }>();
  for (const s of fam.samples) {
    const { le, ...rest } = s.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    const g = groups.get(key) ?? { buckets: [] };
    groups.set(key, g);
    if (s.name === `${fam.name}_bucket`) g.buckets.push({ le: parseValue(le) ?? NaN, v: s.value });
    else if (s.name === `${fam.name}_count`) g.count = s.value;
  }
  for (const [key, g] of groups) {
    const sorted = [...g.buckets].sort((a, b) => a.le - b.le);
    for (let i = 1; i < sorted.length; i++) {
      if (sorted[i].v < sorted[i - 1].v) throw new Error(`${fam.name}${key}: buckets not cumulative`);
    }
    const inf = sorted.at(-1);
    if (!inf || inf.le !== Infinity) throw new Error(`${fam.name}${key}: no +Inf bucket`);
    if (inf.v !== g.count) throw new Error(`${fam.name}${key}: +Inf bucket differs from _count`);
  }
}

/** The value of the sample with exactly these labels, or undefined when there is none. */
export function sampleValue(
  families: Map<string, Family>,
  sampleName: string,
  labels: Record<string, string> = {},
): number | undefined {
  // A copy: looking up an unknown name must not add a family to the caller's map.
  const fam = familyOf(new Map(families), sampleName);
  const hit = fam.samples.find(
    (s) => s.name === sampleName && Object.keys(labels).length === Object.keys(s.labels).length && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
  return hit?.value;
}
