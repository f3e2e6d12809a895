// A private redis-server per test file: free port on 127.0.0.1, fresh temp dir, no persistence.
// With REQUIRE_REDIS=1 (CI) a missing redis-server fails the run; otherwise tests may skip.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const BINARY = 'redis-server';
const START_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 5_000;

export interface RedisServer {
  url: string;
  port: number;
  /** Stops the server for good and removes its directory. */
  stop(): Promise<void>;
  /** Stops the process (an outage) but keeps its port and directory for restart(). */
  kill(): Promise<void>;
  /** Starts the server again on the same port (empty: nothing is persisted). */
  restart(): Promise<void>;
}

let availability: boolean | undefined;

/** Whether redis-server is on PATH. Throws instead of answering false when REQUIRE_REDIS=1. */
export function redisAvailable(): boolean {
  availability ??= spawnSync(BINARY, ['--version'], { stdio: 'ignore' }).status === 0;
  if (!availability && process.env.REQUIRE_REDIS === '1') {
    throw new Error(`REQUIRE_REDIS=1 but ${BINARY} is not on PATH (install the redis-server package)`);
  }
  return availability;
}

export async function startRedis(): Promise<RedisServer> {
  if (!redisAvailable()) throw new Error(`${BINARY} is not on PATH`);
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'sy-redis-'));
  let child: ChildProcess | null = await spawnServer(port, dir);
  const killChild = async (): Promise<void> => {
    const c = child;
    child = null;
    if (c) await terminate(c);
  };
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    kill: killChild,
    async restart() {
      await killChild();
      child = await spawnServer(port, dir);
    },
    async stop() {
      await killChild();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Asks the OS for a free port by listening on port 0, then releases it for redis-server. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => (port > 0 ? resolve(port) : reject(new Error('no free port'))));
    });
  });
}

async function spawnServer(port: number, dir: string): Promise<ChildProcess> {
  const child = spawn(
    BINARY,
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--daemonize', 'no'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout?.on('data', (b: Buffer) => (output = (output + b.toString()).slice(-4_000)));
  child.stderr?.on('data', (b: Buffer) => (output = (output + b.toString()).slice(-4_000)));
  // A test run that dies must not leave servers behind.
  const onExit = (): void => {
    child.kill('SIGKILL');
  };
  process.once('exit', onExit);
  child.once('exit', () => process.off('exit', onExit));

  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${BINARY} exited during startup on port ${port}:\n${output}`);
    }
    if (await answersPing(port)) return child;
    await new Promise((r) => setTimeout(r, 50));
  }
  await terminate(child);
  throw new Error(`${BINARY} did not answer PING on port ${port} within ${START_TIMEOUT_MS} ms:\n${output}`);
}

function answersPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    let reply = '';
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.on('data', (b: Buffer) => {
      reply += b.toString();
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG'));
    });
  });
}

function terminate(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}
