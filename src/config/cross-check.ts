// Checks across config fields that a per-field schema cannot express (unique ids and keys,
// groups served, weight sum, lease timing). Pure. They run on the raw data even when the schema
// failed elsewhere, so one run reports everything; a field that is itself invalid is skipped
// here (the schema already reports it).
import { createHash } from 'node:crypto';
import { leasesSchema, weightsSchema } from './schema.js';

export type Path = ReadonlyArray<string | number>;
export interface Problem {
  path: Path;
  message: string;
}

export function crossCheck(raw: Record<string, unknown>): Problem[] {
  const problems: Problem[] = [];

  const accountGroups = new Set<string>();
  // Client groups are only checked against a fully known set of account groups.
  let accountGroupsKnown = Array.isArray(raw.accounts) && raw.accounts.every(isRecord);
  const firstAccountWithId = new Map<string, number>();
  eachRecord(raw.accounts, (account, i) => {
    const group = groupOf(account);
    if (group === undefined) accountGroupsKnown = false;
    else accountGroups.add(group);
    const id = account.id;
    if (typeof id !== 'string' || id === '') return;
    const first = firstAccountWithId.get(id);
    if (first === undefined) firstAccountWithId.set(id, i);
    else problems.push({ path: ['accounts', i, 'id'], message: `duplicate account id ${JSON.stringify(id)} (also accounts[${first}])` });
  });

  const firstClientWithKey = new Map<string, number>();
  eachRecord(raw.clients, (client, i) => {
    const group = groupOf(client);
    if (accountGroupsKnown && group !== undefined && !accountGroups.has(group)) {
      problems.push({ path: ['clients', i, 'group'], message: `no account is in group ${JSON.stringify(group)}` });
    }
    const identity = clientKeyIdentity(client);
    if (identity === undefined) return;
    const first = firstClientWithKey.get(identity.hash);
    if (first === undefined) firstClientWithKey.set(identity.hash, i);
    else problems.push({ path: ['clients', i, identity.field], message: `same key as clients[${first}]; client keys must be unique` });
  });

  if (typeof raw.adminKey === 'string' && raw.adminKey !== '') {
    const clash = firstClientWithKey.get(sha256(raw.adminKey));
    if (clash !== undefined) {
      problems.push({ path: ['adminKey'], message: `must differ from every client key (same as clients[${clash}])` });
    }
  }

  const scheduler = raw.scheduler;
  const weights = weightsSchema.safeParse(isRecord(scheduler) ? scheduler.weights : undefined);
  if (weights.success && Object.values(weights.data).reduce((sum, w) => sum + w, 0) <= 0) {
    problems.push({ path: ['scheduler', 'weights'], message: 'must have a positive sum (every weight is 0)' });
  }

  const leases = leasesSchema.safeParse(raw.leases);
  if (leases.success && leases.data.renewIntervalMs >= leases.data.ttlMs) {
    problems.push({
      path: ['leases', 'renewIntervalMs'],
      message: `must be less than leases.ttlMs (${leases.data.ttlMs}), or leases expire before their owner renews them`,
    });
  }
  return problems;
}

/** The group a client or account is in, or undefined when its `group` field is invalid. */
function groupOf(entry: Record<string, unknown>): string | undefined {
  const group = entry.group;
  if (group === undefined) return 'default';
  return typeof group === 'string' && group !== '' ? group : undefined;
}

/** Key and keySha256 compared on one footing, so a key and its own hash count as the same key. */
function clientKeyIdentity(client: Record<string, unknown>): { field: 'key' | 'keySha256'; hash: string } | undefined {
  const { key, keySha256 } = client;
  if (typeof key === 'string' && key !== '') return { field: 'key', hash: sha256(key) };
  if (typeof keySha256 === 'string' && /^[0-9a-fA-F]{64}$/.test(keySha256)) return { field: 'keySha256', hash: keySha256.toLowerCase() };
  return undefined;
}

function sha256(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

export function eachRecord(list: unknown, fn: (entry: Record<string, unknown>, index: number) => void): void {
  if (!Array.isArray(list)) return;
  list.forEach((entry, i) => {
    if (isRecord(entry)) fn(entry, i);
  });
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
