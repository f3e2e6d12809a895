// Parent side of the benchmark process protocol (see child-ipc.ts). Every child is registered so
// that it is killed when the driver ends, whatever the way: normal end, thrown error, signal.
import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { resolve } from 'node:path';
import type { Usage } from './child-ipc.js';

const READY_TIMEOUT_MS = 30_000;
const CALL_TIMEOUT_MS = 60_000;
const EXIT_GRACE_MS = 5_000;

export interface ForkOptions {
  args?: string[];
  /** Extra node flags (--cpu-prof, --expose-gc, …). */
  nodeFlags?: string[];
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** Print the child's stdout/stderr on our stderr, prefixed (default true). */
  echo?: boolean;
}

interface Reply {
  id?: number;
  type?: string;
  ok?: boolean;
  value?: unknown;
  error?: string;
}

const live = new Set<BenchChild>();

/**
 * Children run what production runs: the tsc build (`npm run build`, done once per driver), not
 * tsx. tsx transpiles with esbuild's keepNames, which wraps every named closure in a
 * `__name(fn, …)` call (an Object.defineProperty per closure created): a per-turn cost the
 * compiled relay does not have and the few-closure bare relay hardly pays. `BENCH_TSX=1` runs the
 * sources through tsx instead.
 */
const COMPILED = process.env.BENCH_TSX !== '1';
let built = false;

function childEntry(script: string): { path: string; execArgv: string[] } {
  if (!COMPILED) return { path: resolve(script), execArgv: ['--import', 'tsx'] };
  if (!built) {
    const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
    execFileSync(process.execPath, [tsc, '-p', 'tsconfig.json'], { stdio: 'inherit' });
    built = true;
  }
  return { path: resolve('dist', script.replace(/\.ts$/, '.js')), execArgv: [] };
}

/** Lines of child output kept for error reports. */
const KEPT_LINES = 60;

export class BenchChild {
  readonly ready: Promise<Record<string, unknown>>;
  /** The child's last lines of stdout/stderr. */
  readonly recent: string[] = [];
  readonly exited: Promise<number | null>;
  private nextId = 0;
  private readonly pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void; timer: NodeJS.Timeout }>();

  private constructor(readonly name: string, readonly proc: ChildProcess) {
    live.add(this);
    this.exited = new Promise((r) =>
      proc.once('exit', (code) => {
        live.delete(this);
        for (const p of this.pending.values()) {
          clearTimeout(p.timer);
          p.reject(new Error(`${name} exited (${code}) before answering`));
        }
        this.pending.clear();
        r(code);
      }),
    );
    this.ready = new Promise((resolveReady, reject) => {
      const timer = setTimeout(() => reject(new Error(`${name} not ready within ${READY_TIMEOUT_MS} ms`)), READY_TIMEOUT_MS);
      void this.exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`${name} exited (${code}) before it was ready`));
      });
      proc.on('message', (m: Reply) => {
        if (m.type === 'ready') {
          clearTimeout(timer);
          resolveReady(m as Record<string, unknown>);
          return;
        }
        const p = m.id === undefined ? undefined : this.pending.get(m.id);
        if (!p) return;
        this.pending.delete(m.id!);
        clearTimeout(p.timer);
        if (m.ok) p.resolve(m.value);
        else p.reject(new Error(`${name}: ${m.error}`));
      });
    });
    this.ready.catch(() => undefined);
  }

  /** Forks `script` (a .ts path under the repo, see childEntry); resolves once the child said `ready`. */
  static async fork(name: string, script: string, opts: ForkOptions = {}): Promise<{ child: BenchChild; info: Record<string, unknown> }> {
    const entry = childEntry(script);
    const proc = fork(entry.path, opts.args ?? [], {
      execArgv: [...entry.execArgv, ...(opts.nodeFlags ?? [])],
      env: { ...process.env, ...(opts.env ?? {}) },
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    const child = new BenchChild(name, proc);
    const echo = opts.echo ?? true;
    for (const stream of [proc.stdout, proc.stderr]) {
      stream?.setEncoding('utf8');
      stream?.on('data', (s: string) => {
        for (const line of s.split('\n')) {
          if (!line.trim()) continue;
          child.recent.push(line);
          if (child.recent.length > KEPT_LINES) child.recent.shift();
          if (echo) process.stderr.write(`[${name}] ${line}\n`);
        }
      });
    }
    const info = await child.ready;
    return { child, info };
  }

  get pid(): number {
    return this.proc.pid ?? -1;
  }

  call<T = unknown>(cmd: string, arg?: unknown, timeoutMs = CALL_TIMEOUT_MS): Promise<T> {
    const id = ++this.nextId;
    return new Promise<T>((res, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${this.name}: '${cmd}' not answered within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve: res as (v: unknown) => void, reject, timer });
      this.proc.send({ id, cmd, arg });
    });
  }

  usage(): Promise<Usage> {
    return this.call<Usage>('usage');
  }

  /** Asks the child to stop itself (profiles get written), then SIGKILLs it after a grace period. */
  async stop(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    if (this.proc.connected) this.call('exit', undefined, EXIT_GRACE_MS).catch(() => undefined);
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), EXIT_GRACE_MS);
    await this.exited;
    clearTimeout(timer);
  }

  kill(): void {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGKILL');
  }
}

/** Stops every child still running (gracefully first). */
export async function stopAll(): Promise<void> {
  await Promise.all([...live].map((c) => c.stop()));
}

function killAll(): void {
  for (const c of live) c.kill();
}

let guarded = false;

/**
 * Runs a benchmark body with its children's cleanup guaranteed: on return, on a thrown error,
 * on SIGINT/SIGTERM and on process exit, every child is stopped or killed.
 */
export async function withChildren(body: () => Promise<void>): Promise<void> {
  if (!guarded) {
    guarded = true;
    process.on('exit', killAll);
    for (const sig of ['SIGINT', 'SIGTERM'] as const) {
      process.once(sig, () => {
        killAll();
        process.exit(130);
      });
    }
  }
  try {
    await body();
  } catch (err) {
    process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  } finally {
    await stopAll();
  }
}

/**
 * `--pin`: this driver and the load (the sim) on CPU 0, every relay under test on CPU 1, each
 * process with all its threads (main, libuv pool, V8 helpers). Takes the kernel's placement out of
 * the comparison, and gives a relay a core of its own, as in a deployment where clients and
 * OpenAI are other machines.
 */
export function pinDriverAndRelays(loadPids: readonly number[], relayPids: readonly number[]): void {
  const placement = [...[process.pid, ...loadPids].map((pid) => [pid, 0] as const), ...relayPids.map((pid) => [pid, 1] as const)];
  for (const [pid, cpu] of placement) execFileSync('taskset', ['-a', '-p', '-c', String(cpu), String(pid)], { stdio: 'ignore' });
}
