#!/usr/bin/env node
// Composition root: the only module that reads argv and the environment, installs signal
// handlers and decides exit codes (2 = bad config, never listening).
import { createApp } from './app.js';
import { isHelpRequest, loadConfigFile, parseArgs, USAGE } from './config/load.js';
import type { Config } from './config/schema.js';
import { EventBus } from './observability/events.js';
import { createLogger, type Logger } from './observability/logger.js';
import { MemoryStore } from './state/memory-store.js';
import { ResilientStore } from './state/resilient-store.js';
import type { StateStore } from './state/store.js';

/**
 * Redis is wrapped for degraded mode: an unreachable Redis (even at startup) never stops serving.
 * The Redis store (and ioredis, ~2 MB of heap every garbage collection would mark) is loaded only
 * when the config asks for it.
 */
async function buildStore(config: Config, bus: EventBus, logger: Logger): Promise<StateStore> {
  const leaseTtlMs = config.leases.ttlMs;
  if (config.store.kind !== 'redis') return new MemoryStore({ leaseTtlMs });
  const { RedisStore } = await import('./state/redis-store.js');
  let resilient: ResilientStore | undefined;
  const primary = new RedisStore({
    url: config.store.url,
    keyPrefix: config.store.keyPrefix,
    leaseTtlMs,
    commandTimeoutMs: config.store.commandTimeoutMs,
    onError: (err) => resilient?.reportPrimaryError(err),
  });
  resilient = new ResilientStore({
    primary,
    fallback: new MemoryStore({ leaseTtlMs, instanceId: primary.instanceId }),
    bus,
    onStateChange: (c) => {
      if (c.degraded) logger.warn({ event: 'store_degraded', op: c.op, err: c.error }, 'redis unreachable: serving from local state (degraded)');
      else logger.info({ event: 'store_recovered', degradedMs: c.degradedMs, replayed: c.replayed }, 'redis reachable again: shared state resumed');
    },
  });
  // Bounded by the command timeout: starts degraded rather than waiting for Redis.
  await resilient.probe();
  return resilient;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (isHelpRequest(argv)) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const args = parseArgs(argv, process.env);
  if ('error' in args) {
    process.stderr.write(`switchyard: ${args.error}\n${USAGE}\n`);
    process.exit(2);
  }
  const loaded = loadConfigFile(args.configPath, process.env);
  if (!loaded.ok) {
    process.stderr.write(`switchyard: invalid config ${args.configPath}:\n${loaded.errors.map((e) => `  ${e}`).join('\n')}\n`);
    process.exit(2);
  }
  const config = loaded.config;
  const logger = createLogger(process.env.LOG_LEVEL ?? config.logLevel);
  const bus = new EventBus();
  const app = createApp({
    config,
    store: await buildStore(config, bus, logger),
    bus,
    logger,
    reloadSource: () => loadConfigFile(args.configPath, process.env),
  });
  await app.start();
  process.on('SIGHUP', () => app.reloadFromSource());
  const stop = (signal: string) => {
    logger.info({ event: 'signal', signal }, 'stopping');
    app.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err: err instanceof Error ? err.message : String(err) }, 'stop failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

main().catch((err: unknown) => {
  process.stderr.write(`switchyard: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
