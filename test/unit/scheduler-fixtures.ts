// Builders for the scheduler unit tests: validated config objects and pure-core inputs.
import { accountSchema, schedulerSchema, websocketSchema, type AccountConfig } from '../../src/config/schema.js';
import type { SelectInput } from '../../src/scheduler/select.js';
import type { AccountStats, ScheduleRequest } from '../../src/scheduler/types.js';
import { NO_FLAGS, type AccountFlags, type AccountSnapshot } from '../../src/state/store.js';

const ZERO_LOAD: AccountSnapshot = { inflight: 0, waiting: 0, loadRate: 0, flags: NO_FLAGS };

export const NOW = 1_700_000_000_000;

export function account(id: string, over: Record<string, unknown> = {}): AccountConfig {
  return accountSchema.parse({ id, baseUrl: 'https://upstream.test/v1', apiKey: 'sk-test', ...over });
}

export function schedulerConfig(over: Record<string, unknown> = {}) {
  return schedulerSchema.parse(over);
}

export function websocketConfig(over: Record<string, unknown> = {}) {
  return websocketSchema.parse(over);
}

export function request(over: Partial<ScheduleRequest> = {}): ScheduleRequest {
  return {
    group: 'default',
    sessionHash: null,
    previousResponseId: null,
    model: 'gpt-5.1',
    requiredTransport: 'any',
    excluded: new Set(),
    ...over,
  };
}

export function loadOf(over: { inflight?: number; waiting?: number; loadRate?: number; flags?: Partial<AccountFlags> } = {}): AccountSnapshot {
  return {
    inflight: over.inflight ?? 0,
    waiting: over.waiting ?? 0,
    loadRate: over.loadRate ?? 0,
    flags: { ...NO_FLAGS, ...over.flags },
  };
}

export interface InputOptions {
  accounts: AccountConfig[];
  req?: Partial<ScheduleRequest>;
  load?: Record<string, AccountSnapshot>;
  stats?: Record<string, AccountStats>;
  previousResponseAccount?: string | null;
  sessionAccount?: string | null;
  scheduler?: Record<string, unknown>;
  websocket?: Record<string, unknown>;
  nowMs?: number;
  entropy?: bigint;
}

export function selectInput(o: InputOptions): SelectInput {
  return {
    request: request(o.req),
    snapshot: {
      accounts: o.accounts,
      load: o.accounts.map((a) => o.load?.[a.id] ?? ZERO_LOAD),
      stats: new Map(Object.entries(o.stats ?? {})),
      previousResponseAccount: o.previousResponseAccount ?? null,
      sessionAccount: o.sessionAccount ?? null,
    },
    scheduler: schedulerConfig(o.scheduler),
    websocket: websocketConfig(o.websocket),
    nowMs: o.nowMs ?? NOW,
    entropy: o.entropy ?? 12345n,
  };
}
