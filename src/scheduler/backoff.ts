// Pure retry pacing for wait plans: start 100 ms, ×1.5 per attempt, capped at 2 s, with jitter so
// that waiters queued at the same moment do not retry in lock-step.

export const WAIT_BACKOFF_INITIAL_MS = 100;
export const WAIT_BACKOFF_FACTOR = 1.5;
export const WAIT_BACKOFF_MAX_MS = 2_000;
/** Each delay is spread uniformly over ±20 %. */
export const WAIT_BACKOFF_JITTER = 0.2;

export function nextBackoff(previousMs: number): number {
  return Math.min(previousMs * WAIT_BACKOFF_FACTOR, WAIT_BACKOFF_MAX_MS);
}

/** `r` is uniform in [0, 1). */
export function jitterDelay(delayMs: number, r: number): number {
  return delayMs * (1 - WAIT_BACKOFF_JITTER + 2 * WAIT_BACKOFF_JITTER * r);
}
