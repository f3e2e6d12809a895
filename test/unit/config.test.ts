import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { loadConfigFile, loadConfigText, loadConfigValue, parseArgs, type LoadResult } from '../../src/config/load.js';
import { configSchema, type Config } from '../../src/config/schema.js';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), 'switchyard-config-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const MINIMAL = `
clients:
  - key: sk-sy-team-a
accounts:
  - id: acc-1
    baseUrl: https://api.openai.com/v1
    apiKey: sk-upstream-1
`;

function errorsOf(result: LoadResult): string[] {
  if (result.ok) throw new Error('expected the config to be rejected');
  return result.errors;
}

function configOf(result: LoadResult): Config {
  if (!result.ok) throw new Error(`expected a valid config, got:\n${result.errors.join('\n')}`);
  return result.config;
}

describe('loading a valid config', () => {
  it('fills in every default for a minimal config', () => {
    const config = configOf(loadConfigText(MINIMAL, {}));
    expect(config).toEqual({
      listen: { host: '127.0.0.1', port: 8080 },
      store: { kind: 'memory' },
      leases: { ttlMs: 30_000, renewIntervalMs: 10_000 },
      clients: [{ key: 'sk-sy-team-a', group: 'default', maxConnections: 64 }],
      accounts: [
        {
          id: 'acc-1',
          group: 'default',
          kind: 'apikey',
          baseUrl: 'https://api.openai.com/v1',
          apiKey: 'sk-upstream-1',
          priority: 1,
          concurrency: 4,
          transport: 'auto',
          enabled: true,
        },
      ],
      scheduler: {
        topK: 7,
        weights: { priority: 1.0, load: 1.0, queue: 0.7, errorRate: 0.8, ttft: 0.5 },
        stickySessionTtlSeconds: 3600,
        responseBindingTtlSeconds: 3600,
        stickyWait: { timeoutMs: 45_000, maxWaiting: 3 },
        fallbackWait: { timeoutMs: 30_000, maxWaiting: 100 },
        stickyEscape: { errorRate: 0.5, ttftMs: 15_000 },
        maxAccountSwitches: 3,
        statsHalfLifeMs: 600_000,
        cooldown: { rateLimitMs: 60_000, serverErrorMs: 10_000, wsUnsupportedMs: 600_000 },
      },
      websocket: {
        enabled: true,
        httpFallback: true,
        firstMessageTimeoutMs: 30_000,
        idleTimeoutMs: 300_000,
        maxMessageBytes: 16_777_216,
        upstreamConnectTimeoutMs: 15_000,
        maxBufferedBytes: 4_194_304,
        maxTranscriptBytes: 33_554_432,
        upstreamIdleTimeoutMs: 300_000,
      },
      http: {
        maxBodyBytes: 16_777_216,
        upstreamHeadersTimeoutMs: 60_000,
        upstreamBodyTimeoutMs: 300_000,
        keepAliveIntervalMs: 10_000,
        requestHeadersTimeoutMs: 15_000,
        requestBodyTimeoutMs: 60_000,
        maxHeaderBytes: 65_536,
      },
      auth: { failureLimit: 20, failureWindowMs: 60_000, blockMs: 300_000, maxTrackedAddresses: 10_000 },
      shutdownGraceMs: 30_000,
      logLevel: 'info',
    });
  });

  it('accepts JSON, which is valid YAML', () => {
    const json = JSON.stringify({
      listen: { port: 0 },
      store: { kind: 'redis', url: 'redis://127.0.0.1:6379' },
      clients: [{ key: 'sk-sy-a' }],
      accounts: [{ id: 'acc-1', baseUrl: 'http://127.0.0.1:9000/v1', apiKey: 'k-1', models: ['gpt-5.1'] }],
    });
    const config = configOf(loadConfigText(json, {}));
    expect(config.listen.port).toBe(0);
    expect(config.store).toEqual({ kind: 'redis', url: 'redis://127.0.0.1:6379', keyPrefix: 'sy:', commandTimeoutMs: 500 });
    expect(config.accounts[0].models).toEqual(['gpt-5.1']);
  });

  it('validates the commented example config', () => {
    const env = { OPENAI_KEY_1: 'sk-1', OPENAI_KEY_2: 'sk-2', OPENAI_KEY_3: 'sk-3', SWITCHYARD_ADMIN_KEY: 'admin-key-1' };
    const config = configOf(loadConfigFile(join(repoRoot, 'examples/switchyard.example.yaml'), env));
    expect(config.accounts.map((a) => a.id)).toEqual(['acc-1', 'acc-2', 'acc-batch']);
    expect(config.adminKey).toBe('admin-key-1');
  });

  it('allows accounts in a group that no client uses (staged accounts)', () => {
    const text = `${MINIMAL}
  - { id: acc-staged, group: next-quarter, baseUrl: "https://api.openai.com/v1", apiKey: k-2 }
`;
    expect(configOf(loadConfigText(text, {})).accounts[1].group).toBe('next-quarter');
  });

  it('returns a deeply frozen config: assignment throws', () => {
    const config = configOf(loadConfigText(MINIMAL, {}));
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.accounts)).toBe(true);
    expect(Object.isFrozen(config.scheduler.weights)).toBe(true);
    // ESM modules run in strict mode, where writing a frozen property throws.
    expect(() => {
      (config.accounts[0] as { concurrency: number }).concurrency = 99;
    }).toThrow(TypeError);
    expect(() => {
      (config.accounts as AccountList).push(config.accounts[0]);
    }).toThrow(TypeError);
    expect(() => {
      (config.scheduler as { topK: number }).topK = 1;
    }).toThrow(TypeError);
  });

  it('does not modify the data it is given', () => {
    const input = { clients: [{ key: 'env:CK' }], accounts: [{ id: 'a', baseUrl: 'https://x.test', apiKey: 'env:AK' }] };
    const snapshot = structuredClone(input);
    configOf(loadConfigValue(input, { CK: 'client-key', AK: 'account-key' }));
    expect(input).toEqual(snapshot);
  });
});

type AccountList = unknown[];

describe('env:NAME secrets', () => {
  const text = `
adminKey: env:ADMIN_KEY
clients:
  - key: env:CLIENT_KEY
accounts:
  - { id: a1, baseUrl: "https://api.openai.com/v1", apiKey: env:OPENAI_KEY_1 }
  - { id: a2, baseUrl: "https://api.openai.com/v1", apiKey: env:OPENAI_KEY_2 }
`;

  it('resolves secrets from the given environment', () => {
    const config = configOf(
      loadConfigText(text, { ADMIN_KEY: 'adm-secret', CLIENT_KEY: 'cli-secret', OPENAI_KEY_1: 'up-1', OPENAI_KEY_2: 'up-2' }),
    );
    expect(config.adminKey).toBe('adm-secret');
    expect(config.clients[0].key).toBe('cli-secret');
    expect(config.accounts.map((a) => a.apiKey)).toEqual(['up-1', 'up-2']);
  });

  it('reports each missing or empty variable at its path', () => {
    expect(errorsOf(loadConfigText(text, { ADMIN_KEY: 'adm-secret', CLIENT_KEY: '', OPENAI_KEY_1: 'up-1' }))).toEqual([
      'clients[0].key: environment variable CLIENT_KEY is empty',
      'accounts[1].apiKey: environment variable OPENAI_KEY_2 is not set',
    ]);
  });

  it('rejects env: without a variable name', () => {
    const bad = MINIMAL.replace('apiKey: sk-upstream-1', 'apiKey: "env:"');
    expect(errorsOf(loadConfigText(bad, {}))).toEqual([
      'accounts[0].apiKey: env: must be followed by an environment variable name (env:NAME)',
    ]);
  });

  it('does not resolve env:NAME outside the secret fields, and says so', () => {
    const bad = MINIMAL.replace('baseUrl: https://api.openai.com/v1', 'baseUrl: env:OPENAI_BASE_URL');
    expect(errorsOf(loadConfigText(bad, { OPENAI_BASE_URL: 'https://api.openai.com/v1' }))).toEqual([
      'accounts[0].baseUrl: env:NAME is only resolved in accounts[].apiKey, clients[].key, adminKey',
      'accounts[0].baseUrl: must be an http(s) URL',
    ]);
  });
});

describe('reporting problems', () => {
  it('reports five different mistakes as exactly five errors with paths, in document order', () => {
    const text = `
listen: { port: 99999 }
bogus: true
clients:
  - key: sk-sy-team-a
    group: team-x
accounts:
  - { id: acc-1, baseUrl: "https://api.openai.com/v1", apiKey: env:K1 }
  - { id: acc-1, baseUrl: "https://api.openai.com/v1", apiKey: env:K1 }
  - { id: acc-3, baseUrl: "https://api.openai.com/v1", apiKey: env:K1, concurrency: 0 }
`;
    expect(errorsOf(loadConfigText(text, { K1: 'sk-upstream' }))).toEqual([
      'listen.port: must be a port number 0-65535',
      'bogus: unknown field',
      'clients[0].group: no account is in group "team-x"',
      'accounts[1].id: duplicate account id "acc-1" (also accounts[0])',
      'accounts[2].concurrency: must be a positive integer',
    ]);
  });

  it('reports a duplicate account id', () => {
    const text = `${MINIMAL}
  - { id: acc-1, baseUrl: "https://api.openai.com/v1", apiKey: k-2 }
`;
    expect(errorsOf(loadConfigText(text, {}))).toEqual(['accounts[1].id: duplicate account id "acc-1" (also accounts[0])']);
  });

  it('reports a client group without any account', () => {
    const text = MINIMAL.replace('  - key: sk-sy-team-a', '  - key: sk-sy-team-a\n  - { key: sk-sy-team-b, group: team-b }');
    expect(errorsOf(loadConfigText(text, {}))).toEqual(['clients[1].group: no account is in group "team-b"']);
  });

  it('reports unknown fields at the root and nested, with a hint for near misses', () => {
    const text = `bogus: 1\n${MINIMAL.replace('apiKey: sk-upstream-1', 'apiKey: sk-upstream-1\n    concurency: 2')}`;
    expect(errorsOf(loadConfigText(text, {}))).toEqual([
      'bogus: unknown field',
      'accounts[0].concurency: unknown field (did you mean concurrency?)',
    ]);
  });

  it('reports missing required fields as required', () => {
    expect(errorsOf(loadConfigText('clients: [{ key: k }]\naccounts: [{ id: a }]\nstore: {}\n', {}))).toEqual([
      'accounts[0].baseUrl: is required',
      'accounts[0].apiKey: is required',
      'store.kind: is required',
    ]);
  });

  it('reports an empty file and a non-mapping document', () => {
    expect(errorsOf(loadConfigText('', {}))).toEqual(['(root): config is empty']);
    expect(errorsOf(loadConfigText('- a\n- b\n', {}))).toEqual(['(root): must be a mapping of config fields']);
  });

  it('reports YAML syntax errors with file, line and column', () => {
    const errors = errorsOf(loadConfigText('clients:\n  - key: a\n accounts: [\n', {}, 'sy.yaml'));
    expect(errors.length).toBeGreaterThan(0);
    for (const e of errors) expect(e).toMatch(/^sy\.yaml:\d+:\d+: \S/);
    expect(errorsOf(loadConfigText('a: 1\na: 2\n', {}, 'sy.yaml'))).toEqual(['sy.yaml:2:1: Map keys must be unique']);
  });

  it('reports an unreadable file as one error', () => {
    const missing = join(tmp, 'does-not-exist.yaml');
    expect(errorsOf(loadConfigFile(missing, {}))).toEqual([`${missing}: cannot read config file (no such file)`]);
  });

  it('checks weights, lease timing and timeouts across fields', () => {
    const text = `${MINIMAL}
leases: { ttlMs: 5000, renewIntervalMs: 5000 }
scheduler:
  topK: 0
  weights: { priority: 0, load: 0, queue: 0, errorRate: 0, ttft: 0 }
  stickyWait: { timeoutMs: 0 }
  fallbackWait: { timeoutMs: -5 }
`;
    expect(errorsOf(loadConfigText(text, {}))).toEqual([
      'leases.renewIntervalMs: must be less than leases.ttlMs (5000), or leases expire before their owner renews them',
      'scheduler.topK: must be a positive integer',
      'scheduler.weights: must have a positive sum (every weight is 0)',
      'scheduler.stickyWait.timeoutMs: must be a positive number of milliseconds',
      'scheduler.fallbackWait.timeoutMs: must be a positive number of milliseconds',
    ]);
  });

  it('rejects a weight that is not finite', () => {
    const text = `${MINIMAL}\nscheduler: { weights: { load: .inf } }\n`;
    expect(errorsOf(loadConfigText(text, {}))).toEqual(['scheduler.weights.load: must be a finite number >= 0']);
  });

  it('reports a client that gives both key and keySha256, or neither', () => {
    const text = MINIMAL.replace(
      '  - key: sk-sy-team-a',
      `  - { key: sk-sy-team-a, keySha256: "${'a'.repeat(64)}" }\n  - { name: nobody, maxConnections: -1 }`,
    );
    expect(errorsOf(loadConfigText(text, {}))).toEqual([
      'clients[0]: give only one of key, keySha256',
      'clients[1]: one of key, keySha256 is required',
      'clients[1].maxConnections: must be a non-negative integer',
    ]);
  });

  it('gives every field a message of its own when its value has the wrong type', () => {
    const base = {
      listen: { tls: { cert: 'c.pem', key: 'k.pem' } },
      store: { kind: 'redis', url: 'redis://127.0.0.1:6379' },
      adminKey: 'admin-key-1',
      clients: [{ key: 'sk-sy-a', name: 'a' }, { keySha256: 'b'.repeat(64) }],
      accounts: [{ id: 'a', baseUrl: 'https://x.test', apiKey: 'k', models: ['m'] }],
    };
    configOf(loadConfigValue(base, {}));
    const leaves = leafPaths(z.toJSONSchema(configSchema, { io: 'input' }) as JsonNode, []);
    expect(leaves.length).toBeGreaterThan(50);
    for (const { path: leaf, container } of leaves) {
      const path = leaf.map((k) => (k === '[]' ? (leaf.includes('keySha256') ? 1 : 0) : k));
      const input = structuredClone(base) as Record<string, unknown>;
      setAt(input, path, container ? 17 : { wrong: 'type' });
      const errors = errorsOf(loadConfigValue(input, {}));
      const shown = path.map((k) => (typeof k === 'number' ? `[${k}]` : `.${k}`)).join('').replace(/^\./, '');
      expect(errors, shown).toHaveLength(1);
      expect(errors[0], shown).toMatch(new RegExp(`^${escapeRegExp(shown)}: must `));
    }
  });
});

describe('secrets never appear in errors', () => {
  it('keeps literal and resolved secrets out of every message', () => {
    const literal = 'sk-literal-account-secret';
    const fromEnv = 'sk-env-client-secret';
    const text = `
adminKey: env:CLIENT_KEY
clients:
  - key: env:CLIENT_KEY
  - key: env:CLIENT_KEY
  - key: ${literal}
    keySha256: nothex
accounts:
  - { id: a1, baseUrl: "${literal}", apiKey: ${literal}, concurrency: "${literal}" }
  - { id: a2, baseUrl: "https://api.openai.com/v1", apiKey: [${literal}] }
  - { id: a3, baseUrl: "https://api.openai.com/v1", apiKey: ${literal}, transport: ${fromEnv} }
`;
    const errors = errorsOf(loadConfigText(text, { CLIENT_KEY: fromEnv }));
    expect(errors.length).toBeGreaterThanOrEqual(7);
    for (const e of errors) {
      expect(e).not.toContain(literal);
      expect(e).not.toContain(fromEnv);
    }
  });

  it('keeps secrets out of YAML syntax errors', () => {
    const errors = errorsOf(loadConfigText('accounts:\n  - apiKey: sk-abc-very-secret: "\n', {}));
    for (const e of errors) expect(e).not.toContain('sk-abc-very-secret');
  });
});

describe('command-line arguments', () => {
  it('takes --config FILE and --config=FILE', () => {
    expect(parseArgs(['--config', 'a.yaml'], {})).toEqual({ configPath: 'a.yaml' });
    expect(parseArgs(['--config=b.yaml'], {})).toEqual({ configPath: 'b.yaml' });
  });

  it('prefers --config over SWITCHYARD_CONFIG and falls back to it', () => {
    expect(parseArgs(['--config', 'a.yaml'], { SWITCHYARD_CONFIG: 'env.yaml' })).toEqual({ configPath: 'a.yaml' });
    expect(parseArgs([], { SWITCHYARD_CONFIG: 'env.yaml' })).toEqual({ configPath: 'env.yaml' });
  });

  it('explains what is missing or wrong', () => {
    expect(parseArgs([], {})).toEqual({ error: 'no config file: pass --config FILE or set SWITCHYARD_CONFIG' });
    expect(parseArgs([], { SWITCHYARD_CONFIG: '' })).toEqual({ error: 'no config file: pass --config FILE or set SWITCHYARD_CONFIG' });
    expect(parseArgs(['--config'], {})).toEqual({ error: '--config needs a file path' });
    expect(parseArgs(['--config', '--verbose'], {})).toEqual({ error: '--config needs a file path' });
    expect(parseArgs(['--config='], {})).toEqual({ error: '--config needs a file path' });
    expect(parseArgs(['--config', 'a', '--config', 'b'], {})).toEqual({ error: '--config given more than once' });
    expect(parseArgs(['--port', '80'], {})).toEqual({ error: 'unknown argument: --port' });
    expect(parseArgs(['a.yaml'], {})).toEqual({ error: 'unknown argument: a.yaml' });
  });
});

describe('scripts/validate-config.ts', () => {
  const tsxCli = join(repoRoot, 'node_modules/tsx/dist/cli.mjs');
  const run = (args: string[], env: Record<string, string>) =>
    spawnSync(process.execPath, [tsxCli, 'scripts/validate-config.ts', ...args], { cwd: repoRoot, env, encoding: 'utf8' });

  it('prints each error on its own line and exits 2', () => {
    const file = join(tmp, 'five-mistakes.yaml');
    writeFileSync(
      file,
      `listen: { port: -1 }
bogus: true
clients: [{ key: sk-sy-a, maxConnections: 1.5 }]
accounts:
  - { id: acc-1, baseUrl: "ftp://x", apiKey: env:K1 }
  - { id: acc-2, baseUrl: "https://api.openai.com/v1", apiKey: env:K2, concurrency: 0 }
`,
    );
    const r = run(['--config', file], { K1: 'sk-upstream-1', K2: 'sk-upstream-2' });
    expect(r.status).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr.trimEnd().split('\n')).toEqual([
      'listen.port: must be a port number 0-65535',
      'bogus: unknown field',
      'clients[0].maxConnections: must be a non-negative integer',
      'accounts[0].baseUrl: must be an http(s) URL',
      'accounts[1].concurrency: must be a positive integer',
    ]);
  });

  it('prints config OK and exits 0 for a valid file named by SWITCHYARD_CONFIG', () => {
    const file = join(tmp, 'ok.yaml');
    writeFileSync(file, MINIMAL);
    const r = run([], { SWITCHYARD_CONFIG: file });
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('config OK\n');
    expect(r.status).toBe(0);
  });
});

interface JsonNode {
  type?: string;
  properties?: Record<string, JsonNode>;
  items?: JsonNode;
  oneOf?: JsonNode[];
}

interface Field {
  /** `[]` stands for "an element of this list". */
  path: string[];
  /** A mapping or a list (a scalar is the wrong type for it), else a scalar (a mapping is). */
  container: boolean;
}

/** Every field of the schema; for the store union, the fields of its last variant (redis). */
function leafPaths(node: JsonNode, path: string[]): Field[] {
  const variant = node.oneOf ? node.oneOf[node.oneOf.length - 1] : node;
  if (variant.type === 'object' && variant.properties) {
    const own = path.length > 0 ? [{ path, container: true }] : [];
    return [
      ...own,
      ...Object.entries(variant.properties)
        .filter(([key]) => !(node.oneOf && key === 'kind'))
        .flatMap(([key, child]) => leafPaths(child, [...path, key])),
    ];
  }
  if (variant.type === 'array') {
    const items = variant.items?.type === 'object' && variant.items ? leafPaths(variant.items, [...path, '[]']) : [];
    return [{ path, container: true }, ...items];
  }
  return [{ path, container: false }];
}

function setAt(root: Record<string, unknown>, path: ReadonlyArray<string | number>, value: unknown): void {
  let holder: Record<string | number, unknown> = root;
  for (const key of path.slice(0, -1)) {
    holder[key] ??= {};
    holder = holder[key] as Record<string | number, unknown>;
  }
  holder[path[path.length - 1]] = value;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
