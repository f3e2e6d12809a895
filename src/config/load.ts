// Config once (DESIGN rule 5): parse, resolve `env:NAME` secrets, validate, cross-check, freeze.
// Every problem is collected and reported at once as `path: message`, in document order.
// Contract: nothing here reads process.env (callers pass `env`), and no error message ever
// contains a secret value — messages are built from paths, names and fixed texts only, and
// any known secret is scrubbed from them as a last guard.
import { readFileSync } from 'node:fs';
import { LineCounter, parseDocument } from 'yaml';
import { z } from 'zod';
import { crossCheck, eachRecord, isRecord, type Path, type Problem } from './cross-check.js';
import { configSchema, type Config } from './schema.js';

export type Env = Readonly<Record<string, string | undefined>>;
export type LoadResult = { ok: true; config: Config } | { ok: false; errors: string[] };
export type ParsedArgs = { configPath: string } | { error: string };

export const USAGE = 'usage: switchyard --config FILE   (or set SWITCHYARD_CONFIG=FILE)';

/** The only fields whose `env:NAME` values are resolved; everything else is taken literally. */
export const SECRET_FIELDS = ['accounts[].apiKey', 'clients[].key', 'adminKey'] as const;

const ENV_REF = /^env:(.*)$/s;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
// Secrets shorter than this are not scrubbed: they would also match ordinary words in messages.
const MIN_SCRUB_LENGTH = 6;

/** `argv` is the arguments after the script (process.argv.slice(2)). */
export function parseArgs(argv: readonly string[], env: Env): ParsedArgs {
  let configPath: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    let value: string;
    if (arg === '--config') {
      const next = argv[i + 1];
      // A following flag is almost always a forgotten value, not a file named "-…".
      if (next === undefined || next.startsWith('-')) return { error: '--config needs a file path' };
      value = next;
      i++;
    } else if (arg.startsWith('--config=')) {
      value = arg.slice('--config='.length);
      if (value === '') return { error: '--config needs a file path' };
    } else {
      return { error: `unknown argument: ${arg}` };
    }
    if (configPath !== undefined) return { error: '--config given more than once' };
    configPath = value;
  }
  if (configPath !== undefined) return { configPath };
  const fromEnv = env.SWITCHYARD_CONFIG;
  if (fromEnv !== undefined && fromEnv !== '') return { configPath: fromEnv };
  return { error: 'no config file: pass --config FILE or set SWITCHYARD_CONFIG' };
}

/** True when the arguments ask for usage help (`--help` / `-h`) rather than a run. */
export function isHelpRequest(argv: readonly string[]): boolean {
  return argv.includes('--help') || argv.includes('-h');
}

/**
 * Reads and validates a config file. Synchronous on purpose: it runs once at start and on
 * reload, and a caller that awaits it works as well.
 */
export function loadConfigFile(path: string, env: Env): LoadResult {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    return { ok: false, errors: [`${path}: cannot read config file (${readErrorReason(err)})`] };
  }
  return loadConfigText(text, env, path);
}

/** `source` names the text in YAML syntax errors (`FILE:line:col: message`). */
export function loadConfigText(text: string, env: Env, source = 'config'): LoadResult {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { prettyErrors: false, lineCounter, uniqueKeys: true });
  if (doc.errors.length > 0) {
    // Only the parser's own message and position: its source excerpt could hold a secret.
    return {
      ok: false,
      errors: doc.errors.map((e) => {
        const { line, col } = lineCounter.linePos(e.pos[0]);
        const message = e.code === 'MULTIPLE_DOCS' ? 'a config file holds exactly one YAML document' : e.message;
        return `${source}:${line}:${col}: ${message}`;
      }),
    };
  }
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    return { ok: false, errors: [`${source}: ${err instanceof Error ? err.message : 'invalid YAML'}`] };
  }
  return loadConfigValue(raw, env);
}

/**
 * Validates already-parsed config data (what the YAML holds), e.g. a config built in a test.
 * The input is not modified.
 */
export function loadConfigValue(value: unknown, env: Env): LoadResult {
  if (value === null || value === undefined) return { ok: false, errors: ['(root): config is empty'] };
  if (!isRecord(value)) return { ok: false, errors: ['(root): must be a mapping of config fields'] };
  let raw: Record<string, unknown>;
  try {
    raw = structuredClone(value);
  } catch {
    return { ok: false, errors: ['(root): must be plain data (what a YAML or JSON file can hold)'] };
  }

  const secrets: string[] = [];
  const problems = resolveSecrets(raw, env, secrets);
  problems.push(...misplacedEnvRefs(raw));

  const parsed = configSchema.safeParse(raw, { error: fallbackMessage });
  if (!parsed.success) problems.push(...parsed.error.issues.flatMap((issue) => fromIssue(issue, raw)));
  problems.push(...crossCheck(raw));

  if (problems.length > 0 || !parsed.success) {
    return { ok: false, errors: dedupe(inDocumentOrder(problems, raw).map((p) => scrub(formatProblem(p), secrets))) };
  }
  return { ok: true, config: deepFreeze(parsed.data) };
}

// ---------------------------------------------------------------------------------------------
// Secrets

function resolveSecrets(raw: Record<string, unknown>, env: Env, secrets: string[]): Problem[] {
  const problems: Problem[] = [];
  const resolve = (holder: Record<string, unknown>, key: string, path: Path) => {
    const v = holder[key];
    if (typeof v !== 'string') return;
    const ref = ENV_REF.exec(v);
    if (!ref) {
      secrets.push(v);
      return;
    }
    const name = ref[1];
    if (!ENV_NAME.test(name)) {
      problems.push({ path, message: 'env: must be followed by an environment variable name (env:NAME)' });
      return;
    }
    const resolved = env[name];
    if (resolved === undefined) problems.push({ path, message: `environment variable ${name} is not set` });
    else if (resolved === '') problems.push({ path, message: `environment variable ${name} is empty` });
    else {
      holder[key] = resolved;
      secrets.push(resolved);
    }
  };
  resolve(raw, 'adminKey', ['adminKey']);
  eachRecord(raw.accounts, (a, i) => resolve(a, 'apiKey', ['accounts', i, 'apiKey']));
  eachRecord(raw.clients, (c, i) => resolve(c, 'key', ['clients', i, 'key']));
  return problems;
}

function isSecretPath(path: Path): boolean {
  if (path.length === 1) return path[0] === 'adminKey';
  return (
    path.length === 3 &&
    typeof path[1] === 'number' &&
    ((path[0] === 'accounts' && path[2] === 'apiKey') || (path[0] === 'clients' && path[2] === 'key'))
  );
}

/** `env:NAME` anywhere else would silently be taken as a literal string (a host, a URL…). */
function misplacedEnvRefs(raw: Record<string, unknown>): Problem[] {
  const problems: Problem[] = [];
  walk(raw, [], (v, path) => {
    if (typeof v === 'string' && !isSecretPath(path) && /^env:[A-Za-z_][A-Za-z0-9_]*$/.test(v)) {
      problems.push({ path, message: `env:NAME is only resolved in ${SECRET_FIELDS.join(', ')}` });
    }
  });
  return problems;
}

function scrub(line: string, secrets: readonly string[]): string {
  let out = line;
  for (const s of secrets) if (s.length >= MIN_SCRUB_LENGTH) out = out.split(s).join('[redacted]');
  return out;
}

// ---------------------------------------------------------------------------------------------
// Schema issues

/**
 * Wording for issues whose schema states no message of its own (the schema's own messages win).
 * Never uses the input value: it may be a secret.
 */
function fallbackMessage(issue: z.core.$ZodRawIssue): string {
  switch (issue.code) {
    case 'invalid_type':
      return `must be ${describeType(String(issue.expected))}`;
    case 'invalid_value':
      return `must be one of ${issue.values.map(String).join(', ')}`;
    case 'too_small':
      return `must be at least ${String(issue.minimum)}`;
    case 'too_big':
      return `must be at most ${String(issue.maximum)}`;
    case 'invalid_format':
      return `must be a valid ${issue.format}`;
    case 'unrecognized_keys':
      return 'unknown field';
    default:
      return 'is invalid';
  }
}

function describeType(expected: string): string {
  switch (expected) {
    case 'object':
      return 'a mapping';
    case 'array':
      return 'a list';
    case 'boolean':
      return 'true or false';
    case 'integer':
      return 'an integer';
    default:
      return `a ${expected}`;
  }
}

function fromIssue(issue: z.core.$ZodIssue, raw: unknown): Problem[] {
  const path = issue.path.filter((k): k is string | number => typeof k !== 'symbol');
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((key) => {
      const suggestion = closestKey(key, knownKeysAt(path));
      return { path: [...path, key], message: suggestion ? `unknown field (did you mean ${suggestion}?)` : 'unknown field' };
    });
  }
  if ((issue.code === 'invalid_type' || issue.code === 'invalid_union') && valueAt(raw, path) === undefined) {
    return [{ path, message: 'is required' }];
  }
  return [{ path, message: issue.message }];
}

let jsonSchema: Record<string, unknown> | undefined;

/** Field names the schema allows at `path`, for "did you mean" hints. */
function knownKeysAt(path: Path): string[] {
  jsonSchema ??= z.toJSONSchema(configSchema, { io: 'input' }) as Record<string, unknown>;
  let nodes: unknown[] = [jsonSchema];
  for (const key of path) {
    nodes = nodes.flatMap(variants).flatMap((n) => {
      if (!isRecord(n)) return [];
      if (typeof key === 'number') return n.items === undefined ? [] : [n.items];
      const props = n.properties;
      return isRecord(props) && props[key] !== undefined ? [props[key]] : [];
    });
  }
  return [...new Set(nodes.flatMap(variants).flatMap((n) => (isRecord(n) && isRecord(n.properties) ? Object.keys(n.properties) : [])))];
}

function variants(node: unknown): unknown[] {
  if (isRecord(node) && Array.isArray(node.oneOf)) return node.oneOf;
  if (isRecord(node) && Array.isArray(node.anyOf)) return node.anyOf;
  return [node];
}

function closestKey(key: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const k of known) {
    const d = k.toLowerCase() === key.toLowerCase() ? 0 : editDistance(key, k);
    if (d < bestDistance) {
      best = k;
      bestDistance = d;
    }
  }
  return bestDistance <= Math.min(2, Math.floor(key.length / 3)) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length];
}

// ---------------------------------------------------------------------------------------------
// Paths, ordering, freezing

export function formatPath(path: Path): string {
  if (path.length === 0) return '(root)';
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else if (/^[A-Za-z_$][\w$-]*$/.test(key)) out += out === '' ? key : `.${key}`;
    else out += `[${JSON.stringify(key)}]`;
  }
  return out;
}

function formatProblem(p: Problem): string {
  return `${formatPath(p.path)}: ${p.message}`;
}

/**
 * Orders problems as their fields appear in the document (YAML keeps key order when parsed).
 * A missing field sorts after the existing fields of its parent. Stable for equal positions.
 */
function inDocumentOrder(problems: Problem[], raw: unknown): Problem[] {
  const spans = new Map<string, { start: number; end: number }>();
  let counter = 0;
  const visit = (v: unknown, path: Path) => {
    const start = counter++;
    if (Array.isArray(v)) v.forEach((item, i) => visit(item, [...path, i]));
    else if (isRecord(v)) for (const [k, item] of Object.entries(v)) visit(item, [...path, k]);
    spans.set(formatPath(path), { start, end: counter });
  };
  visit(raw, []);
  const position = (path: Path): number => {
    const exact = spans.get(formatPath(path));
    if (exact) return exact.start;
    for (let n = path.length - 1; n >= 0; n--) {
      const parent = spans.get(formatPath(path.slice(0, n)));
      if (parent) return parent.end - 0.5;
    }
    return Infinity;
  };
  return problems
    .map((p, i) => ({ p, i, pos: position(p.path) }))
    .sort((a, b) => a.pos - b.pos || a.i - b.i)
    .map((x) => x.p);
}

function dedupe(lines: string[]): string[] {
  return [...new Set(lines)];
}

function valueAt(root: unknown, path: Path): unknown {
  let v = root;
  for (const key of path) {
    if (Array.isArray(v) && typeof key === 'number') v = v[key];
    else if (isRecord(v) && typeof key === 'string' && Object.hasOwn(v, key)) v = v[key];
    else return undefined;
  }
  return v;
}

function walk(v: unknown, path: Path, fn: (v: unknown, path: Path) => void): void {
  fn(v, path);
  if (Array.isArray(v)) v.forEach((item, i) => walk(item, [...path, i], fn));
  else if (isRecord(v)) for (const [k, item] of Object.entries(v)) walk(item, [...path, k], fn);
}

function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const child of Object.values(v)) deepFreeze(child);
  }
  return v;
}

function readErrorReason(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case 'ENOENT':
      return 'no such file';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'EISDIR':
      return 'is a directory';
    default:
      return code ?? (err instanceof Error ? err.message : 'unknown error');
  }
}
