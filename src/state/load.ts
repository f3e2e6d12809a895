// Pure helpers both stores use to shape what they read. Pure: no I/O, time comes in as nowMs.
import { NO_FLAGS, type AccountFlags, type CooldownReason } from './store.js';

/** (inflight + waiting) × 100 / max as an integer; a non-positive max counts as 1. */
export function loadRate(inflight: number, waiting: number, max: number): number {
  return Math.floor(((inflight + waiting) * 100) / Math.max(1, max));
}

const REASONS: ReadonlySet<string> = new Set<CooldownReason>([
  'rate_limited',
  'server_error',
  'unauthorized',
  'connect_error',
]);

/** Raw stored flag fields, as strings (Redis) or absent. */
export interface RawFlags {
  cooldownUntil?: string | number | null;
  cooldownReason?: string | null;
  disabled?: string | boolean | null;
  wsUnsupportedUntil?: string | number | null;
}

/**
 * Turns stored fields into AccountFlags as of nowMs: a cooldown or WS-unsupported mark whose time
 * has passed reads as absent, so every instance sees the same thing without a cleanup job.
 */
export function liveFlags(raw: RawFlags, nowMs: number): AccountFlags {
  const cooldownUntil = Number(raw.cooldownUntil ?? 0) || 0;
  const wsUntil = Number(raw.wsUnsupportedUntil ?? 0) || 0;
  const cooling = cooldownUntil > nowMs;
  const reason = raw.cooldownReason ?? null;
  const flags: AccountFlags = {
    cooldownUntilMs: cooling ? cooldownUntil : 0,
    cooldownReason: cooling && reason !== null && REASONS.has(reason) ? (reason as CooldownReason) : null,
    disabled: raw.disabled === true || raw.disabled === '1',
    wsUnsupportedUntilMs: wsUntil > nowMs ? wsUntil : 0,
  };
  return flags.cooldownUntilMs === 0 && !flags.disabled && flags.wsUnsupportedUntilMs === 0 ? { ...NO_FLAGS } : flags;
}
