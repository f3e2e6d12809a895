// Runs the real `switchyard` entry point (src/main.ts via tsx) as a child process, for tests of
// what only a process shows: signals, exit codes, several instances on one Redis.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';

export interface RelayProcess {
  child: ChildProcess;
  port: number;
  url: string;
  wsUrl: string;
  configPath: string;
  /** stdout lines parsed as JSON log records (non-JSON lines are kept as { raw }). */
  logs: Array<Record<string, unknown>>;
  stderr: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Rewrites the config file (for SIGHUP reload tests). */
  writeConfig(config: Record<string, unknown>): void;
  /** Resolves with the first log record matching `pred` (past or future). */
  waitForLog(pred: (r: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** SIGKILL (if still running) and wait for exit. */
  kill(): Promise<void>;
}

const MAIN = resolve('src/main.ts');

export async function startRelayProcess(config: Record<string, unknown>, env: Record<string, string> = {}): Promise<RelayProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'sy-relay-'));
  const configPath = join(dir, 'config.yaml');
  const write = (c: Record<string, unknown>) => writeFileSync(configPath, stringify({ listen: { host: '127.0.0.1', port: 0 }, ...c }));
  write(config);
  // `node --import tsx` rather than the tsx CLI: one process, so signals (and SIGKILL) reach the relay itself.
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN, '--config', configPath], {
    env: { ...process.env, LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Array<Record<string, unknown>> = [];
  const stderr: string[] = [];
  const watchers: Array<{ pred: (r: Record<string, unknown>) => boolean; resolve: (r: Record<string, unknown>) => void }> = [];
  let buf = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    buf += chunk.toString('utf8');
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (!line.trim()) continue;
      let rec: Record<string, unknown>;
      try {
        rec = JSON.parse(line) as Record<string, unknown>;
      } catch {
        rec = { raw: line };
      }
      logs.push(rec);
      for (const w of [...watchers]) {
        if (w.pred(rec)) {
          watchers.splice(watchers.indexOf(w), 1);
          w.resolve(rec);
        }
      }
    }
  });
  child.stderr!.on('data', (c: Buffer) => stderr.push(c.toString('utf8')));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.once('exit', (code, signal) => r({ code, signal })));
  const waitForLog = (pred: (r: Record<string, unknown>) => boolean, timeoutMs = 15_000) => {
    const hit = logs.find(pred);
    if (hit) return Promise.resolve(hit);
    return new Promise<Record<string, unknown>>((resolveLog, reject) => {
      const t = setTimeout(() => reject(new Error(`no matching log line in ${timeoutMs} ms; stderr: ${stderr.join('').slice(-1000)}`)), timeoutMs);
      watchers.push({ pred, resolve: (r) => (clearTimeout(t), resolveLog(r)) });
    });
  };
  const listening = await Promise.race([
    waitForLog((r) => r.event === 'listening', 20_000),
    exited.then((e) => {
      throw new Error(`relay exited early (${e.code}): ${stderr.join('').slice(-2000)}`);
    }),
  ]);
  const port = Number(listening.port);
  return {
    child,
    port,
    url: `http://127.0.0.1:${port}`,
    wsUrl: `ws://127.0.0.1:${port}/v1/responses`,
    configPath,
    logs,
    stderr,
    exited,
    writeConfig: write,
    waitForLog,
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}
