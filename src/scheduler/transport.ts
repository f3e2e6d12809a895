// Pure transport resolution (SPEC §4): account + websocket config + shared runtime flags + now →
// which upstream transport the account uses right now, and why. No I/O, no clock.
import type { AccountConfig, WebsocketConfig } from '../config/schema.js';
import type { AccountFlags } from '../state/store.js';
import type { RequiredTransport, TransportDecision } from './types.js';

/** Disabled in config or at run time (401, operator). */
export function isAccountDisabled(account: AccountConfig, flags: AccountFlags): boolean {
  return !account.enabled || flags.disabled;
}

// Shared, frozen results: resolution runs for every account on every select, so it allocates nothing.
const EXCLUDED: TransportDecision = Object.freeze({ transport: null, reason: 'account_disabled' });
const GLOBAL_DISABLED: TransportDecision = Object.freeze({ transport: 'http', reason: 'global_disabled' });
const FORCE_HTTP: TransportDecision = Object.freeze({ transport: 'http', reason: 'account_force_http' });
const WS_UNSUPPORTED: TransportDecision = Object.freeze({ transport: 'http', reason: 'ws_unsupported' });
const WS_ENABLED: TransportDecision = Object.freeze({ transport: 'ws', reason: 'ws_enabled' });

/**
 * The order is the contract: disabled → excluded; relay-wide WS off → http; account forced to
 * http → http; an upstream that refused the upgrade recently → http until the mark expires;
 * otherwise ws. The result is shared and frozen.
 */
export function resolveTransport(
  account: AccountConfig,
  websocket: Pick<WebsocketConfig, 'enabled'>,
  flags: AccountFlags,
  nowMs: number,
): TransportDecision {
  if (isAccountDisabled(account, flags)) return EXCLUDED;
  if (!websocket.enabled) return GLOBAL_DISABLED;
  if (account.transport === 'http') return FORCE_HTTP;
  if (flags.wsUnsupportedUntilMs > nowMs) return WS_UNSUPPORTED;
  return WS_ENABLED;
}

/** A WS client turn needs a `ws` account; `any` takes every account that is not excluded. */
export function isTransportCompatible(decision: TransportDecision, required: RequiredTransport): boolean {
  if (decision.transport === null) return false;
  return required === 'any' || decision.transport === required;
}
