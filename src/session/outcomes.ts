// Maps scheduler refusals and upstream failures to their effects. Shared by every transport.
import { RelayError } from '../errors.js';
import type { Scheduler, ScheduleOutcome } from '../scheduler/types.js';
import type { UpstreamFailure } from '../upstream/failure.js';

/** Records what an upstream failure means for its account (cooldown, disable, WS-unsupported). */
export async function applyAccountAction(scheduler: Scheduler, accountId: string, f: UpstreamFailure): Promise<void> {
  try {
    switch (f.action.kind) {
      case 'rate_limited':
        return await scheduler.markRateLimited(accountId, f.action.untilMs);
      case 'unauthorized':
        return await scheduler.markUnauthorized(accountId);
      case 'server_error':
        return await scheduler.markServerError(accountId);
      case 'ws_unsupported':
        return await scheduler.markWsUnsupported(accountId);
      case 'none':
        return;
    }
  } catch {
    // A store hiccup must not fail the turn; the next failure marks the account again.
  }
}

/** A refused schedule → the error the client gets (429/1013 for capacity, 503/1013 for none). */
export function refusalError(outcome: Extract<ScheduleOutcome, { kind: 'refused' }>, httpFallback: boolean): RelayError {
  switch (outcome.reason) {
    case 'queue_full':
    case 'wait_timeout':
      return new RelayError('SY_ERR_NO_CAPACITY', `No upstream account has capacity (${outcome.reason}); retry later.`, outcome.retryAfterMs);
    case 'no_compatible_account':
      // Every account that could serve is cooling down after a 429: say so, with its reset.
      if (outcome.rateLimited) return new RelayError('SY_ERR_UPSTREAM_RATE_LIMITED', undefined, outcome.retryAfterMs);
      return new RelayError(httpFallback ? 'SY_ERR_NO_ACCOUNT' : 'SY_ERR_FALLBACK_DISABLED', outcome.message || undefined, outcome.retryAfterMs);
    case 'aborted':
      return new RelayError('SY_ERR_SHUTTING_DOWN');
  }
}
