// Pure: an idle timeout watched in slices against a count of activity the caller already keeps
// (a turn's forwarded events, a realtime session's frames). Re-arming a timer on every frame was
// ~2 % of the relay's busy time at 1,000 WebSocket sessions (a timer-list unlink and append and a
// clock read per frame); with this, a frame costs the increment its count already paid, and a
// timer of 1/QUIET_SLICES of the timeout calls quietAfterCheck.

/** The timeout is checked this many times: silence is noticed at most 1/QUIET_SLICES of it late. */
export const QUIET_SLICES = 8;

/** The period of the check timer for `timeoutMs` (QUIET_SLICES of them are never shorter than it). */
export function quietSliceMs(timeoutMs: number): number {
  return Math.max(1, Math.ceil(timeoutMs / QUIET_SLICES));
}

/** What the watch remembers between checks: two fields on the owner's own record. */
export interface QuietWatch {
  /** The activity count at the last check. */
  seenAtCheck: number;
  /** Checks in a row that saw no activity. */
  quietSlices: number;
}

/**
 * One check, `activity` being the owner's count now. True once QUIET_SLICES checks in a row saw
 * none: never sooner than the timeout after the last activity, at most one slice later.
 */
export function quietAfterCheck(w: QuietWatch, activity: number): boolean {
  if (activity !== w.seenAtCheck) {
    w.seenAtCheck = activity;
    w.quietSlices = 0;
    return false;
  }
  return ++w.quietSlices >= QUIET_SLICES;
}
