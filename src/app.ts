// Composition: builds the relay from a validated config and its edges. No process globals here
// (main.ts owns argv, env, signals and exit codes), so tests run whole relays in-process.
import { readFileSync } from 'node:fs';
import type { Config } from './config/schema.js';
import { systemClock, type Clock } from './clock.js';
import { EventBus } from './observability/events.js';
import type { Logger } from './observability/logger.js';
import { AccountScheduler } from './scheduler/scheduler.js';
import { deriveSessionHash } from './scheduler/session-key.js';
import type { StateStore } from './state/store.js';
import { ClientAuth } from './ingress/auth.js';
import { HttpIngress, type IngressDeps } from './ingress/http-server.js';
import { createHttpResponsesHandler } from './ingress/http-responses.js';
import { createAdminHandler } from './ingress/admin.js';
import { Metrics } from './observability/metrics.js';
import { HttpUpstream } from './upstream/http-sse-upstream.js';
import type { LoadResult } from './config/load.js';
import { RealtimeRelay } from './session/realtime.js';
import type { RelayCore } from './session/core.js';

export interface AppDeps {
  config: Config;
  store: StateStore;
  logger: Logger;
  clock?: Clock;
  bus?: EventBus;
  /** Re-reads the config source (SIGHUP, POST /admin/reload); absent = reload from the current config. */
  reloadSource?: () => LoadResult;
}

export interface App {
  readonly bus: EventBus;
  readonly scheduler: AccountScheduler;
  readonly store: StateStore;
  readonly ingress: HttpIngress;
  readonly metrics: Metrics;
  /** Listening address once started. */
  address(): { host: string; port: number };
  start(): Promise<{ host: string; port: number }>;
  /** Graceful drain: stop accepting, finish in-flight turns (bounded), close 1001, release slots. */
  stop(): Promise<void>;
  /** Live reload: accounts, weights and limits apply to the next decision; sessions stay. */
  reload(next: Config): void;
  /** Re-reads the config source and applies it; an invalid config is rejected and the old one kept. */
  reloadFromSource(): LoadResult;
  config(): Config;
}

export function createApp(deps: AppDeps): App {
  let config = deps.config;
  const clock = deps.clock ?? systemClock;
  const bus = deps.bus ?? new EventBus();
  const log = deps.logger;
  const store = deps.store;
  let auth = new ClientAuth(config.clients);
  const scheduler = new AccountScheduler({
    store,
    clock,
    bus,
    accounts: config.accounts,
    scheduler: config.scheduler,
    websocket: config.websocket,
  });
  let started = false;
  let stopping: Promise<void> | null = null;
  let addr = { host: config.listen.host, port: 0 };
  let renewTimer: NodeJS.Timeout | null = null;
  const metrics = new Metrics({ bus, store, scheduler, clock });
  const upstream = new HttpUpstream({ config: () => config });
  let reloadFromSource: () => LoadResult = () => ({ ok: false, errors: ['not started'] });

  // What every turn-serving part needs; `config` is a getter so reloads reach them all.
  const core: RelayCore = { config: () => config, scheduler, clock, bus, log, sessionHash: deriveSessionHash };
  const realtime = new RealtimeRelay({ ...core, admit: (client) => ingress.admitConnection(client) });
  const ingressDeps: IngressDeps = {
    ...core,
    auth: () => auth,
    upstream,
    readiness: () => {
      // 200 with `degraded` while shared state is unreachable: a Redis blip must not take every
      // instance out of the load balancer (SPEC §3).
      const reason = store.degradedReason?.() ?? null;
      return reason === null ? { ready: started, degraded: false } : { ready: started, degraded: true, reason };
    },
    metrics: () => metrics.render(),
    httpResponses: createHttpResponsesHandler({ ...core, upstream, isDraining: () => ingress.isDraining }),
    admin: createAdminHandler({ config: core.config, scheduler, store, clock, log, reload: () => reloadFromSource() }),
    realtime: realtime.handleUpgrade,
  };
  const tls = config.listen.tls
    ? { cert: readFileSync(config.listen.tls.cert), key: readFileSync(config.listen.tls.key) }
    : undefined;
  const ingress = new HttpIngress(ingressDeps, tls);

  const app: App = {
    bus,
    scheduler,
    store,
    ingress,
    metrics,
    address: () => addr,
    config: () => config,
    async start() {
      addr = await ingress.listen(config.listen.host, config.listen.port);
      renewTimer = setInterval(() => {
        store.renewLeases().catch((err: unknown) => log.warn({ err: err instanceof Error ? err.message : String(err) }, 'lease renewal failed'));
      }, config.leases.renewIntervalMs);
      renewTimer.unref();
      started = true;
      log.info({ event: 'listening', host: addr.host, port: addr.port, tls: Boolean(tls), store: store.kind, accounts: config.accounts.length }, 'switchyard listening');
      return addr;
    },
    stop() {
      stopping ??= (async () => {
        ingress.startDraining();
        const grace = config.shutdownGraceMs;
        log.info({ event: 'draining', sessions: ingress.sessions.size, graceMs: grace }, 'draining');
        const idle = Promise.all([...[...ingress.sessions].map((s) => s.whenIdle()), ingress.whenHttpIdle()]);
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([idle, new Promise<void>((r) => (timer = setTimeout(r, grace)))]);
        clearTimeout(timer);
        await realtime.closeAll();
        await ingress.close();
        if (renewTimer) clearInterval(renewTimer);
        try {
          await store.releaseAllOwnLeases();
        } catch (err) {
          log.warn({ err: err instanceof Error ? err.message : String(err) }, 'releasing leases failed; they expire by TTL');
        }
        await upstream.close();
        await store.close();
        log.info({ event: 'stopped' }, 'stopped');
      })();
      return stopping;
    },
    reload(next: Config) {
      config = next;
      auth = new ClientAuth(next.clients);
      scheduler.updateConfig(next.accounts, next.scheduler, next.websocket);
      log.info({ event: 'reloaded', accounts: next.accounts.length }, 'config reloaded');
    },
    reloadFromSource: () => reloadFromSource(),
  };
  reloadFromSource = () => {
    const next = deps.reloadSource ? deps.reloadSource() : ({ ok: true, config } as LoadResult);
    if (next.ok) app.reload(next.config);
    else log.error({ event: 'reload_rejected', errors: next.errors }, 'reload rejected: invalid config, keeping the old one');
    return next;
  };
  return app;
}
