// What every turn-serving part of the relay is given (app.ts builds it once): the live config,
// the scheduler, time, the event bus, the logger and the session-key hash (SPEC §5).
import type { Config } from '../config/schema.js';
import type { Clock } from '../clock.js';
import type { EventBus } from '../observability/events.js';
import type { Logger } from '../observability/logger.js';
import type { Scheduler } from '../scheduler/types.js';
import type { IncomingHeaders } from '../upstream/target.js';

export interface RelayCore {
  /** A getter, so a reload reaches every holder. */
  config(): Config;
  scheduler: Scheduler;
  clock: Clock;
  bus: EventBus;
  log: Logger;
  sessionHash(group: string, headers: IncomingHeaders, body: Record<string, unknown>): string | null;
}

/**
 * The RelayCore of a larger deps object (the ingress's), without the rest: what the ingress hands
 * on to the sessions it starts, so they hold only what they are typed to use.
 */
export function pickRelayCore(d: RelayCore): RelayCore {
  return { config: d.config, scheduler: d.scheduler, clock: d.clock, bus: d.bus, log: d.log, sessionHash: d.sessionHash };
}
