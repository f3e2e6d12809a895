// Starts a whole relay in-process on 127.0.0.1:0 from a raw config object (validated like a file).
// Logs are captured (not printed) so tests can grep them for secrets.
import { Writable } from 'node:stream';
import { createApp, type App } from '../../src/app.js';
import { loadConfigValue, type LoadResult } from '../../src/config/load.js';
import type { Clock } from '../../src/clock.js';
import { createLogger } from '../../src/observability/logger.js';
import { MemoryStore } from '../../src/state/memory-store.js';
import type { StateStore } from '../../src/state/store.js';

export interface TestRelay {
  app: App;
  /** http://127.0.0.1:PORT */
  url: string;
  /** ws://127.0.0.1:PORT/v1/responses */
  wsUrl: string;
  port: number;
  /** Every log line written so far (JSON strings). */
  logs: string[];
  stop(): Promise<void>;
}

export interface StartRelayOptions {
  store?: StateStore;
  clock?: Clock;
  env?: Record<string, string | undefined>;
  /** What SIGHUP / POST /admin/reload re-read. */
  reloadSource?: () => LoadResult;
  logLevel?: string;
}

export function validConfig(raw: Record<string, unknown>, env: Record<string, string | undefined> = {}) {
  const r = loadConfigValue({ listen: { host: '127.0.0.1', port: 0 }, ...raw }, env);
  if (!r.ok) throw new Error(`test config invalid:\n${r.errors.join('\n')}`);
  return r.config;
}

export async function startRelay(raw: Record<string, unknown>, opts: StartRelayOptions = {}): Promise<TestRelay> {
  const config = validConfig(raw, opts.env);
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) logs.push(line);
      cb();
    },
  });
  const logger = createLogger(opts.logLevel ?? 'info', sink);
  const store = opts.store ?? new MemoryStore({ clock: opts.clock, leaseTtlMs: config.leases.ttlMs });
  const app = createApp({ config, store, logger, clock: opts.clock, reloadSource: opts.reloadSource });
  const { port } = await app.start();
  return {
    app,
    url: `http://127.0.0.1:${port}`,
    wsUrl: `ws://127.0.0.1:${port}/v1/responses`,
    port,
    logs,
    stop: () => app.stop(),
  };
}
