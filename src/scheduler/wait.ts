// Shell: executes a wait plan against the store. The waiting counter bounds the queue across
// instances; the caller retries the slot with backoff until it gets one, the timeout passes or the
// caller gives up. The counter is given back on every path.
import type { Clock } from '../clock.js';
import type { StateStore } from '../state/store.js';
import { jitterDelay, nextBackoff, WAIT_BACKOFF_INITIAL_MS } from './backoff.js';
import type { WaitPlan } from './select.js';
import type { SlotLease, WaitSignal } from './types.js';

export type Sleep = (ms: number, signal?: WaitSignal) => Promise<void>;

/** Resolves after `ms`, or early (never rejects) when the signal aborts. */
export const timerSleep: Sleep = (ms, signal) =>
  new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const onAbort = (): void => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });

export interface WaitDeps {
  store: StateStore;
  clock: Clock;
  sleep: Sleep;
  random: () => number;
  /** One acquire attempt; null when the account is full. */
  tryAcquire(accountId: string, max: number): Promise<SlotLease | null>;
  /** A best-effort store call failed (the decrement). */
  onStoreError(op: string, err: unknown): void;
}

export type WaitResult =
  | { kind: 'acquired'; lease: SlotLease; waitedMs: number }
  | { kind: 'refused'; reason: 'queue_full' | 'wait_timeout' | 'aborted'; waitedMs: number };

export async function runWaitPlan(deps: WaitDeps, plan: WaitPlan, signal?: WaitSignal): Promise<WaitResult> {
  const { store, clock } = deps;
  const account = plan.candidate.account;
  const start = clock.now();
  // Elapsed time is the larger of the clock's view and the time slept, so a clock that does not
  // move (a test clock, a stalled system clock) cannot keep a waiter forever.
  let slept = 0;
  const waited = (): number => Math.max(clock.now() - start, slept);
  if (signal?.aborted) return { kind: 'refused', reason: 'aborted', waitedMs: 0 };

  const entered = await store.incrementWaiting(account.id, plan.maxWaiting);
  if (!entered) return { kind: 'refused', reason: 'queue_full', waitedMs: 0 };
  try {
    let delay = WAIT_BACKOFF_INITIAL_MS;
    for (;;) {
      if (signal?.aborted) return { kind: 'refused', reason: 'aborted', waitedMs: waited() };
      const lease = await deps.tryAcquire(account.id, account.concurrency);
      if (lease) {
        if (signal?.aborted) {
          await lease.release();
          return { kind: 'refused', reason: 'aborted', waitedMs: waited() };
        }
        return { kind: 'acquired', lease, waitedMs: waited() };
      }
      const remaining = plan.timeoutMs - waited();
      if (remaining <= 0) return { kind: 'refused', reason: 'wait_timeout', waitedMs: waited() };
      const pause = Math.min(jitterDelay(delay, deps.random()), remaining);
      await deps.sleep(pause, signal);
      slept += pause;
      delay = nextBackoff(delay);
    }
  } finally {
    try {
      await store.decrementWaiting(account.id);
    } catch (err) {
      // The counter expires on its own in the store; the caller's outcome stands.
      deps.onStoreError('decrementWaiting', err);
    }
  }
}
