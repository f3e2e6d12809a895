// Pure: the account list indexed for the scheduler, so a select never scans the config for an id
// and hands the store a ready-made list of (id, slots) for its group.
import type { AccountConfig, SchedulerConfig, WebsocketConfig } from '../config/schema.js';
import type { AccountRef } from '../state/store.js';

export interface GroupView {
  accounts: AccountConfig[];
  refs: AccountRef[];
  /** id → index in `accounts` (and in a store snapshot of `refs`). Absent on small ad-hoc views. */
  positions?: Map<string, number>;
}

/** The config as the scheduler reads it: accounts indexed by id and by group, built once per (re)load. */
export interface SchedulerView {
  accounts: readonly AccountConfig[];
  byId: Map<string, AccountConfig>;
  byGroup: Map<string, GroupView>;
  scheduler: SchedulerConfig;
  websocket: WebsocketConfig;
}

export function buildView(accounts: readonly AccountConfig[], scheduler: SchedulerConfig, websocket: WebsocketConfig): SchedulerView {
  const byId = new Map<string, AccountConfig>();
  const byGroup = new Map<string, GroupView>();
  for (const a of accounts) {
    byId.set(a.id, a);
    let g = byGroup.get(a.group);
    if (!g) byGroup.set(a.group, (g = { accounts: [], refs: [], positions: new Map() }));
    g.positions?.set(a.id, g.accounts.length);
    g.accounts.push(a);
    g.refs.push({ id: a.id, max: a.concurrency });
  }
  return { accounts, byId, byGroup, scheduler, websocket };
}
