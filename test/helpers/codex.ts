// Runs the real Codex CLI (`codex exec`) against a relay on 127.0.0.1 (CLIENTS.md §1.2), with a
// throwaway CODEX_HOME and the settings that keep it off the network. The binary comes with the
// @openai/codex devDependency; where it is missing, `codexAvailable()` lets a suite opt out,
// except with CI or REQUIRE_CODEX=1 set, where it throws so the run fails.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export interface RunCodexOptions {
  port: number;
  prompt: string;
  /** `supports_websockets` of the provider: true = WebSocket mode, false = HTTP/SSE only. */
  supportsWebsockets: boolean;
  /** Client key the relay accepts (sent as RELAY_API_KEY). */
  apiKey?: string;
  model?: string;
  /** Extra TOML appended to config.toml (top-level keys must come before any table: use tables). */
  extraConfig?: string;
  /** Extra keys for the `[model_providers.relay]` table, e.g. `stream_max_retries = 1`. */
  providerConfig?: string;
  /** Extra CLI arguments placed before the prompt. */
  args?: string[];
  timeoutMs?: number;
}

export interface CodexRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

export const DEFAULT_CODEX_KEY = 'sk-sy-codex-client';

const CODEX_CANDIDATES = [
  resolve('node_modules/.bin/codex'),
  resolve('node_modules/@openai/codex/bin/codex.js'),
];

/** Path of the Codex CLI, or null when it is not installed. */
export function codexBinary(): string | null {
  return CODEX_CANDIDATES.find((p) => existsSync(p)) ?? null;
}

/** True when a missing Codex binary must fail the run instead of being tolerated. */
export function codexRequired(): boolean {
  return process.env.REQUIRE_CODEX === '1' || Boolean(process.env.CI);
}

/** Whether Codex tests can run here; throws when they must and cannot. */
export function codexAvailable(): boolean {
  if (codexBinary() !== null) return true;
  if (codexRequired()) throw new Error('Codex CLI not found (node_modules/.bin/codex); it is required when CI or REQUIRE_CODEX=1 is set');
  return false;
}

export function codexConfig(o: RunCodexOptions): string {
  return [
    `model = "${o.model ?? 'gpt-5.5'}"`,
    'model_provider = "relay"',
    'approval_policy = "never"',
    'sandbox_mode = "read-only"',
    'check_for_update_on_startup = false',
    '',
    '[analytics]',
    'enabled = false',
    '',
    '[features]',
    'plugins = false',
    '',
    '[model_providers.relay]',
    'name = "Relay under test"',
    `base_url = "http://127.0.0.1:${o.port}/v1"`,
    'wire_api = "responses"',
    'env_key = "RELAY_API_KEY"',
    `supports_websockets = ${o.supportsWebsockets}`,
    o.providerConfig ?? '',
    '',
    o.extraConfig ?? '',
    '',
  ].join('\n');
}

export async function runCodex(o: RunCodexOptions): Promise<CodexRun> {
  const bin = codexBinary();
  if (bin === null) throw new Error('Codex CLI not found (node_modules/.bin/codex)');
  const home = await mkdtemp(join(tmpdir(), 'codex-home-'));
  const cwd = await mkdtemp(join(tmpdir(), 'codex-cwd-'));
  try {
    await writeFile(join(home, 'config.toml'), codexConfig(o));
    const env: NodeJS.ProcessEnv = { ...process.env, CODEX_HOME: home, RELAY_API_KEY: o.apiKey ?? DEFAULT_CODEX_KEY };
    // The relay is the only endpoint Codex may reach: no inherited keys or base URLs.
    for (const k of ['OPENAI_API_KEY', 'CODEX_API_KEY', 'OPENAI_BASE_URL']) delete env[k];
    const child = spawn(bin, ['exec', '--skip-git-repo-check', ...(o.args ?? []), o.prompt], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, o.timeoutMs ?? 90_000);
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((r) => child.on('close', (c, s) => r([c, s])));
    clearTimeout(timer);
    return { code, signal, stdout, stderr, timedOut };
  } finally {
    await rm(home, { recursive: true, force: true });
    await rm(cwd, { recursive: true, force: true });
  }
}
