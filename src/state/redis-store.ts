// The shared StateStore: several relay instances on one Redis agree on slots, waiting counts,
// bindings and account flags. Every multi-step change is one Lua script (atomic in Redis). Every
// call settles within commandTimeoutMs: no offline queue, no resend after reconnect, and a deadline
// around each call, so a Redis outage makes calls reject fast (degraded mode) instead of hanging.
import { Redis } from 'ioredis';
import { systemClock, type Clock } from '../clock.js';
import {
  StoreUnavailableError,
  type AccountFlags,
  type AccountRef,
  type AccountSnapshot,
  type CooldownReason,
  type StateStore,
} from './store.js';
import { liveFlags, loadRate } from './load.js';
import { OWNER_SEPARATOR, OwnState, checkInstanceId, defaultInstanceId, leaseMember } from './own-state.js';
import * as lua from './redis-scripts.js';

export const DEFAULT_KEY_PREFIX = 'sy:';
export const DEFAULT_LEASE_TTL_MS = 30_000;
export const DEFAULT_COMMAND_TIMEOUT_MS = 500;
/** Reconnect backoff cap: a restarted Redis is picked up again within about this long. */
const MAX_RECONNECT_DELAY_MS = 1_000;

export interface RedisStoreOptions {
  url: string;
  keyPrefix?: string;
  clock?: Clock;
  instanceId?: string;
  leaseTtlMs?: number;
  commandTimeoutMs?: number;
  /** Connection-level errors (refused, reset, reconnect failures); calls reject on their own. */
  onError?: (err: Error) => void;
}

type Arg = string | number;
type Reply = string | number | null;

/** The scripts registered with defineCommand; variadic ones take the key count first. */
interface ScriptedRedis extends Redis {
  syAcquire(key: string, ...args: Arg[]): Promise<number>;
  syRenew(numKeys: number, ...args: Arg[]): Promise<Reply[]>;
  syReleaseOwn(numKeys: number, ...args: Arg[]): Promise<number>;
  syIncrWaiting(key: string, ...args: Arg[]): Promise<number>;
  syDecrWaiting(key: string, ...args: Arg[]): Promise<number>;
  syRefreshBinding(key: string, ...args: Arg[]): Promise<number>;
  sySnapshot(numKeys: number, ...args: Arg[]): Promise<Reply[]>;
}

const FLAG_FIELDS = ['cooldownUntil', 'cooldownReason', 'disabled', 'wsUnsupportedUntil'] as const;

export class RedisStore implements StateStore {
  readonly kind = 'redis' as const;
  readonly instanceId: string;
  private readonly client: ScriptedRedis;
  private readonly prefix: string;
  private readonly clock: Clock;
  private readonly leaseTtlMs: number;
  /** Real-time key expiry behind the clock-evaluated one, so abandoned keys leave Redis too. */
  private readonly backstopMs: number;
  private readonly timeoutMs: number;
  private readonly own = new OwnState();
  /** Calls made before the connection is ready; settled on 'ready' or on close. */
  private readonly readyWaiters = new Set<(ready: boolean) => void>();
  private closed = false;

  constructor(opts: RedisStoreOptions) {
    this.clock = opts.clock ?? systemClock;
    this.instanceId = checkInstanceId(opts.instanceId ?? defaultInstanceId());
    this.prefix = opts.keyPrefix ?? DEFAULT_KEY_PREFIX;
    this.leaseTtlMs = opts.leaseTtlMs ?? DEFAULT_LEASE_TTL_MS;
    this.backstopMs = 2 * this.leaseTtlMs;
    this.timeoutMs = opts.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
    this.client = new Redis(opts.url, {
      lazyConnect: false,
      // Commands are never parked while disconnected and never replayed after a reconnect: a
      // caller that already gave up must not have its acquire applied later behind its back.
      enableOfflineQueue: false,
      autoResendUnfulfilledCommands: false,
      maxRetriesPerRequest: 1,
      commandTimeout: this.timeoutMs,
      connectTimeout: Math.max(1_000, 2 * this.timeoutMs),
      retryStrategy: (times: number) => Math.min(100 * times, MAX_RECONNECT_DELAY_MS),
    }) as ScriptedRedis;
    const onError = opts.onError;
    // An 'error' event without a listener would crash the process; the outage shows in calls.
    this.client.on('error', (err: Error) => onError?.(err));
    this.client.on('ready', () => this.settleWaiters(true));
    this.client.defineCommand('syAcquire', { numberOfKeys: 1, lua: lua.ACQUIRE });
    this.client.defineCommand('syRenew', { lua: lua.RENEW });
    this.client.defineCommand('syReleaseOwn', { lua: lua.RELEASE_OWN });
    this.client.defineCommand('syIncrWaiting', { numberOfKeys: 1, lua: lua.INCR_WAITING });
    this.client.defineCommand('syDecrWaiting', { numberOfKeys: 1, lua: lua.DECR_WAITING });
    this.client.defineCommand('syRefreshBinding', { numberOfKeys: 1, lua: lua.REFRESH_BINDING });
    this.client.defineCommand('sySnapshot', { lua: lua.SNAPSHOT });
  }

  /** Resolves once Redis answers (startup check); rejects with StoreUnavailableError otherwise. */
  async ready(): Promise<void> {
    await this.run((c) => c.ping());
  }

  // Sticky session bindings.

  async getSessionBinding(group: string, sessionHash: string): Promise<string | null> {
    return this.getBinding(this.key('sess', group, sessionHash));
  }

  async setSessionBinding(group: string, sessionHash: string, accountId: string, ttlMs: number): Promise<void> {
    await this.setBinding(this.key('sess', group, sessionHash), accountId, ttlMs);
  }

  async refreshSessionBinding(group: string, sessionHash: string, ttlMs: number): Promise<boolean> {
    const now = this.clock.now();
    const key = this.key('sess', group, sessionHash);
    const ok = await this.run((c) => c.syRefreshBinding(key, now, now + ttlMs, pxOf(ttlMs)));
    return ok === 1;
  }

  async deleteSessionBinding(group: string, sessionHash: string): Promise<void> {
    await this.run((c) => c.del(this.key('sess', group, sessionHash)));
  }

  // Response bindings.

  async getResponseBinding(group: string, responseId: string): Promise<string | null> {
    return this.getBinding(this.key('resp', group, responseId));
  }

  async setResponseBinding(group: string, responseId: string, accountId: string, ttlMs: number): Promise<void> {
    await this.setBinding(this.key('resp', group, responseId), accountId, ttlMs);
  }

  // Concurrency slots.

  async acquireSlot(accountId: string, leaseId: string, max: number): Promise<boolean> {
    const now = this.clock.now();
    const member = leaseMember(this.instanceId, leaseId);
    const granted = await this.run((c) =>
      c.syAcquire(this.key('slots', accountId), now, now + this.leaseTtlMs, member, max, this.backstopMs),
    );
    if (granted === 1) this.own.addLease(accountId, leaseId, max);
    return granted === 1;
  }

  async releaseSlot(accountId: string, leaseId: string): Promise<void> {
    this.own.dropLease(accountId, leaseId);
    await this.run((c) => c.zrem(this.key('slots', accountId), leaseMember(this.instanceId, leaseId)));
  }

  async slotCount(accountId: string): Promise<number> {
    const now = this.clock.now();
    return this.run((c) => c.zcount(this.key('slots', accountId), `(${now}`, '+inf'));
  }

  async renewLeases(): Promise<void> {
    if (this.own.leases.size === 0 && this.own.waiting.size === 0) return;
    const now = this.clock.now();
    const accounts = [...this.own.leases.entries()];
    const keys: string[] = accounts.map(([accountId]) => this.key('slots', accountId));
    const args: Arg[] = [now, now + this.leaseTtlMs, this.backstopMs, this.instanceId, accounts.length];
    for (const [, own] of accounts) {
      args.push(own.max, own.ids.size, ...[...own.ids].map((id) => leaseMember(this.instanceId, id)));
    }
    for (const [accountId, n] of this.own.waiting) {
      keys.push(this.key('wait', accountId));
      args.push(n);
    }
    const lost = await this.run((c) => c.syRenew(keys.length, ...keys, ...args));
    const memberPrefix = this.instanceId + OWNER_SEPARATOR;
    for (let i = 0; i + 1 < lost.length; i += 2) {
      const account = accounts[Number(lost[i]) - 1];
      if (account) this.own.dropLease(account[0], String(lost[i + 1]).slice(memberPrefix.length));
    }
  }

  async releaseAllOwnLeases(): Promise<void> {
    if (this.own.leases.size === 0 && this.own.waiting.size === 0) return;
    const accounts = [...this.own.leases.entries()];
    const keys = accounts.map(([accountId]) => this.key('slots', accountId));
    const args: Arg[] = [this.instanceId, accounts.length];
    for (const [, own] of accounts) {
      args.push(own.ids.size, ...[...own.ids].map((id) => leaseMember(this.instanceId, id)));
    }
    // Waiters of a shutting-down instance are gone with it; only this instance's field is removed.
    for (const accountId of this.own.waiting.keys()) keys.push(this.key('wait', accountId));
    // Forgotten locally first: even if this call fails, nothing is renewed and all of it expires.
    this.own.clear();
    await this.run((c) => c.syReleaseOwn(keys.length, ...keys, ...args));
  }

  // Waiting counters: one count per instance (a hash field), summed on read; a decrement lowers
  // this instance's own count only, and a dead instance's count expires with its heartbeat.

  async incrementWaiting(accountId: string, max: number): Promise<boolean> {
    const now = this.clock.now();
    const ok = await this.run((c) =>
      c.syIncrWaiting(this.key('wait', accountId), now, now + this.leaseTtlMs, this.instanceId, max, this.backstopMs),
    );
    if (ok === 1) this.own.addWaiting(accountId);
    return ok === 1;
  }

  async decrementWaiting(accountId: string): Promise<void> {
    this.own.dropWaiting(accountId);
    const now = this.clock.now();
    await this.run((c) => c.syDecrWaiting(this.key('wait', accountId), now, now + this.leaseTtlMs, this.instanceId));
  }

  async snapshot(accounts: readonly AccountRef[]): Promise<AccountSnapshot[]> {
    if (accounts.length === 0) return [];
    const now = this.clock.now();
    const keys: string[] = [];
    for (const { id } of accounts) keys.push(this.key('slots', id), this.key('wait', id), this.key('acct', id));
    const rows = await this.run((c) => c.sySnapshot(keys.length, ...keys, now, `(${now}`));
    const out = new Array<AccountSnapshot>(accounts.length);
    for (let i = 0, r = 0; i < accounts.length; i++, r += 6) {
      const inflight = Number(rows[r] ?? 0);
      const waiting = Number(rows[r + 1] ?? 0);
      const flags = liveFlags(
        { cooldownUntil: rows[r + 2], cooldownReason: stringOrNull(rows[r + 3]), disabled: stringOrNull(rows[r + 4]), wsUnsupportedUntil: rows[r + 5] },
        now,
      );
      out[i] = { inflight, waiting, loadRate: loadRate(inflight, waiting, accounts[i].max), flags };
    }
    return out;
  }

  // Shared account flags.

  async setCooldown(accountId: string, untilMs: number, reason: CooldownReason): Promise<void> {
    await this.run((c) => c.hset(this.key('acct', accountId), 'cooldownUntil', untilMs, 'cooldownReason', reason));
  }

  async clearCooldown(accountId: string): Promise<void> {
    await this.run((c) => c.hdel(this.key('acct', accountId), 'cooldownUntil', 'cooldownReason'));
  }

  async setDisabled(accountId: string, disabled: boolean): Promise<void> {
    const key = this.key('acct', accountId);
    await this.run((c) => (disabled ? c.hset(key, 'disabled', '1') : c.hdel(key, 'disabled')));
  }

  async setWsUnsupported(accountId: string, untilMs: number): Promise<void> {
    const key = this.key('acct', accountId);
    await this.run((c) => (untilMs > 0 ? c.hset(key, 'wsUnsupportedUntil', untilMs) : c.hdel(key, 'wsUnsupportedUntil')));
  }

  async getFlags(accountId: string): Promise<AccountFlags> {
    const now = this.clock.now();
    const [cooldownUntil, cooldownReason, disabled, wsUnsupportedUntil] = await this.run((c) =>
      c.hmget(this.key('acct', accountId), ...FLAG_FIELDS),
    );
    return liveFlags({ cooldownUntil, cooldownReason, disabled, wsUnsupportedUntil }, now);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.settleWaiters(false);
    if (this.client.status !== 'ready') {
      this.client.disconnect();
      return;
    }
    try {
      await withDeadline(this.client.quit(), this.timeoutMs);
    } catch {
      this.client.disconnect();
    }
  }

  private key(kind: 'slots' | 'wait' | 'acct', accountId: string): string;
  private key(kind: 'sess' | 'resp', group: string, id: string): string;
  private key(kind: string, a: string, b?: string): string {
    return b === undefined ? `${this.prefix}${kind}:${a}` : `${this.prefix}${kind}:${a}:${b}`;
  }

  private async getBinding(key: string): Promise<string | null> {
    const now = this.clock.now();
    const value = await this.run((c) => c.get(key));
    if (value === null) return null;
    const sep = value.indexOf('|');
    // The PX expiry is only a backstop in real time; the injected clock decides.
    if (sep < 0 || Number(value.slice(0, sep)) <= now) return null;
    return value.slice(sep + 1);
  }

  private async setBinding(key: string, accountId: string, ttlMs: number): Promise<void> {
    const now = this.clock.now();
    await this.run((c) => c.set(key, `${now + ttlMs}|${accountId}`, 'PX', pxOf(ttlMs)));
  }

  /**
   * Runs one Redis call with a deadline covering both waiting for the connection and the reply.
   * Any failure becomes a StoreUnavailableError.
   */
  private run<T>(op: (client: ScriptedRedis) => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(new StoreUnavailableError('redis store is closed'));
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const fail = (err: unknown): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.readyWaiters.delete(onReady);
        reject(err instanceof StoreUnavailableError ? err : new StoreUnavailableError(`redis call failed: ${messageOf(err)}`, { cause: err }));
      };
      const send = (): void => {
        let pending: Promise<T>;
        try {
          pending = op(this.client);
        } catch (err) {
          fail(err);
          return;
        }
        pending.then((value) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          resolve(value);
        }, fail);
      };
      const onReady = (ready: boolean): void => {
        if (ready) send();
        else fail(new StoreUnavailableError('redis store is closed'));
      };
      const timer = setTimeout(
        () => fail(new StoreUnavailableError(`redis call timed out after ${this.timeoutMs} ms`)),
        this.timeoutMs,
      );
      if (this.client.status === 'ready') send();
      else this.readyWaiters.add(onReady);
    });
  }

  private settleWaiters(ready: boolean): void {
    const waiters = [...this.readyWaiters];
    this.readyWaiters.clear();
    for (const w of waiters) w(ready);
  }
}

/** Redis PX needs a positive integer. */
function pxOf(ttlMs: number): number {
  return Math.max(1, Math.ceil(ttlMs));
}

function stringOrNull(v: Reply | undefined): string | null {
  return v === null || v === undefined ? null : String(v);
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function withDeadline<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}
