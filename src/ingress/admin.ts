// Shell: the operator API under /admin/* (SPEC §3). Off (404) unless `adminKey` is configured.
// The key is compared in constant time over SHA-256 digests, so neither its length nor a
// correct prefix shows in the timing. No answer or log line ever carries a key or credential:
// account views are built field by field from the config's public fields and runtime state.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Clock } from '../clock.js';
import type { LoadResult } from '../config/load.js';
import type { AccountConfig, Config } from '../config/schema.js';
import { ERRORS, RelayError } from '../errors.js';
import type { Logger } from '../observability/logger.js';
import type { Scheduler } from '../scheduler/types.js';
import type { AccountSnapshot, StateStore } from '../state/store.js';
import { StoreUnavailableError } from '../state/store.js';
import { sendError, sendJson } from './http-server.js';

/** What the admin API needs from the scheduler; enabling goes through it so its own state follows. */
export type AdminScheduler = Pick<Scheduler, 'accounts' | 'stats' | 'resolveTransport'> & {
  /** Operator action: enabling also clears a run-time disable and any cooldown. */
  setAccountEnabled(accountId: string, enabled: boolean): Promise<void>;
};

export interface AdminDeps {
  config(): Config;
  scheduler: AdminScheduler;
  store: Pick<StateStore, 'snapshot'>;
  clock: Clock;
  log: Logger;
  /** Re-reads the config source and applies it when valid (the old config stays otherwise). */
  reload(): LoadResult;
}

/** One account as operators see it. Public fields only; never the credential or the base URL. */
export interface AccountView {
  id: string;
  group: string;
  kind: AccountConfig['kind'];
  priority: number;
  concurrency: number;
  models: readonly string[] | null;
  /** Configured transport preference (`auto` | `http`). */
  transportSetting: AccountConfig['transport'];
  /** Config `enabled`. */
  enabled: boolean;
  /** Run-time disable (a 401 or an operator), shared by every instance. */
  disabled: boolean;
  /** Transport the account resolves to now; null = excluded. */
  transport: 'ws' | 'http' | null;
  transportReason: string;
  inflight: number;
  waiting: number;
  loadRate: number;
  errorRateEwma: number;
  ttftEwmaMs: number | null;
  cooldownUntil: string | null;
  cooldownReason: string | null;
  wsUnsupportedUntil: string | null;
}

const ACCOUNT_ACTION = /^\/admin\/accounts\/([^/]+)\/(enable|disable)$/;

export function createAdminHandler(deps: AdminDeps): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  return async (req, res) => {
    // The body is never needed; reading it keeps the connection reusable.
    req.resume();
    const adminKey = deps.config().adminKey;
    if (adminKey === undefined) return sendError(res, new RelayError('SY_ERR_NOT_FOUND'));
    const path = (req.url ?? '/').split('?')[0];
    // Authentication comes before routing, so unauthenticated callers learn nothing about routes.
    if (!keyMatches(req.headers.authorization, adminKey)) {
      deps.log.warn({ event: 'admin_unauthorized', method: req.method, path }, 'admin request with a missing or wrong key');
      return sendError(res, new RelayError('SY_ERR_UNAUTHORIZED'));
    }
    try {
      await route(deps, req, res, path);
    } catch (err) {
      const unavailable = err instanceof StoreUnavailableError;
      deps.log.error({ event: 'admin_failed', path, err: err instanceof Error ? err.message : String(err) }, 'admin request failed');
      sendError(res, unavailable ? new RelayError('SY_ERR_STORE_UNAVAILABLE', undefined, 1_000) : err);
    }
  };
}

async function route(deps: AdminDeps, req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
  if (path === '/admin/accounts') {
    if (req.method !== 'GET') return methodNotAllowed(res, 'GET');
    return sendJson(res, 200, { object: 'list', data: await accountViews(deps, deps.scheduler.accounts()) });
  }
  if (path === '/admin/reload') {
    if (req.method !== 'POST') return methodNotAllowed(res, 'POST');
    return reload(deps, res);
  }
  const action = ACCOUNT_ACTION.exec(path);
  if (action) {
    if (req.method !== 'POST') return methodNotAllowed(res, 'POST');
    const id = decodeId(action[1]);
    const account = id === null ? undefined : deps.scheduler.accounts().find((a) => a.id === id);
    if (!account) return sendError(res, new RelayError('SY_ERR_NOT_FOUND', 'No account with that id.'));
    const enable = action[2] === 'enable';
    await deps.scheduler.setAccountEnabled(account.id, enable);
    deps.log.info({ event: 'admin_action', action: action[2], account: account.id }, `account ${action[2]}d by operator`);
    const [view] = await accountViews(deps, [account]);
    return sendJson(res, 200, view);
  }
  sendError(res, new RelayError('SY_ERR_NOT_FOUND'));
}

function reload(deps: AdminDeps, res: ServerResponse): void {
  const result = deps.reload();
  if (result.ok) {
    deps.log.info({ event: 'admin_action', action: 'reload', accounts: result.config.accounts.length }, 'config reloaded by operator');
    return sendJson(res, 200, { ok: true, accounts: result.config.accounts.length });
  }
  // The loader's messages name paths and fixed texts only, and it scrubs secrets from them.
  const spec = ERRORS.SY_ERR_INVALID_CONFIG;
  sendJson(res, spec.http, {
    error: { type: spec.type, code: spec.code, message: spec.message },
    errors: result.errors,
  });
}

/** Views of the given accounts from ONE store snapshot plus the scheduler's transport decision. */
async function accountViews(deps: AdminDeps, accounts: readonly AccountConfig[]): Promise<AccountView[]> {
  const [snapshot, decisions] = await Promise.all([
    deps.store.snapshot(accounts.map((a) => ({ id: a.id, max: a.concurrency }))),
    Promise.all(accounts.map((a) => deps.scheduler.resolveTransport(a.id))),
  ]);
  const now = deps.clock.now();
  return accounts.map((a, i) => view(a, snapshot[i], decisions[i], deps.scheduler.stats(a.id), now));
}

function view(
  a: AccountConfig,
  s: AccountSnapshot | undefined,
  decision: Awaited<ReturnType<Scheduler['resolveTransport']>>,
  stats: ReturnType<Scheduler['stats']>,
  now: number,
): AccountView {
  const flags = s?.flags;
  const coolingDown = flags !== undefined && flags.cooldownUntilMs > now;
  return {
    id: a.id,
    group: a.group,
    kind: a.kind,
    priority: a.priority,
    concurrency: a.concurrency,
    models: a.models ?? null,
    transportSetting: a.transport,
    enabled: a.enabled,
    disabled: flags?.disabled ?? false,
    transport: decision.transport,
    transportReason: decision.reason,
    inflight: s?.inflight ?? 0,
    waiting: s?.waiting ?? 0,
    loadRate: s?.loadRate ?? 0,
    errorRateEwma: stats.errorRate,
    ttftEwmaMs: stats.ttftMs,
    cooldownUntil: coolingDown ? new Date(flags.cooldownUntilMs).toISOString() : null,
    cooldownReason: coolingDown ? flags.cooldownReason : null,
    wsUnsupportedUntil: flags !== undefined && flags.wsUnsupportedUntilMs > now ? new Date(flags.wsUnsupportedUntilMs).toISOString() : null,
  };
}

/** Constant time whatever the presented value: both sides are hashed to 32 bytes first. */
export function keyMatches(authorization: string | undefined, adminKey: string): boolean {
  const m = authorization === undefined ? null : /^Bearer\s+(\S+)\s*$/i.exec(authorization);
  const presented = createHash('sha256').update(m ? m[1] : '').digest();
  const expected = createHash('sha256').update(adminKey).digest();
  return timingSafeEqual(presented, expected) && m !== null;
}

function decodeId(raw: string): string | null {
  try {
    return decodeURIComponent(raw);
  } catch {
    return null;
  }
}

function methodNotAllowed(res: ServerResponse, allow: string): void {
  const spec = ERRORS.SY_ERR_METHOD_NOT_ALLOWED;
  sendJson(res, spec.http, { error: { type: spec.type, code: spec.code, message: spec.message } }, { allow });
}
