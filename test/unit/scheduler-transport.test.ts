import { describe, expect, it } from 'vitest';
import { isTransportCompatible, resolveTransport } from '../../src/scheduler/transport.js';
import { NO_FLAGS } from '../../src/state/store.js';
import { account, NOW } from './scheduler-fixtures.js';

const wsOn = { enabled: true };
const wsOff = { enabled: false };

describe('transport resolution (SPEC §4)', () => {
  it('an auto account resolves to ws when WebSocket is enabled', () => {
    expect(resolveTransport(account('a'), wsOn, NO_FLAGS, NOW)).toEqual({ transport: 'ws', reason: 'ws_enabled' });
  });

  it('websocket.enabled=false resolves every account to http (global_disabled)', () => {
    expect(resolveTransport(account('a'), wsOff, NO_FLAGS, NOW)).toEqual({ transport: 'http', reason: 'global_disabled' });
    expect(resolveTransport(account('a', { transport: 'http' }), wsOff, NO_FLAGS, NOW).reason).toBe('global_disabled');
  });

  it('an account forced to http resolves to http (account_force_http)', () => {
    expect(resolveTransport(account('a', { transport: 'http' }), wsOn, NO_FLAGS, NOW)).toEqual({
      transport: 'http',
      reason: 'account_force_http',
    });
  });

  it('an account marked WS-unsupported resolves to http until the mark expires', () => {
    const flags = { ...NO_FLAGS, wsUnsupportedUntilMs: NOW + 1 };
    expect(resolveTransport(account('a'), wsOn, flags, NOW)).toEqual({ transport: 'http', reason: 'ws_unsupported' });
    expect(resolveTransport(account('a'), wsOn, flags, NOW + 1)).toEqual({ transport: 'ws', reason: 'ws_enabled' });
  });

  it('a disabled account (config or run time) is excluded before anything else', () => {
    expect(resolveTransport(account('a', { enabled: false }), wsOff, NO_FLAGS, NOW)).toEqual({
      transport: null,
      reason: 'account_disabled',
    });
    expect(resolveTransport(account('a'), wsOn, { ...NO_FLAGS, disabled: true }, NOW).transport).toBeNull();
  });

  it('a ws requirement accepts only ws; any accepts ws and http but never an excluded account', () => {
    expect(isTransportCompatible({ transport: 'ws', reason: 'ws_enabled' }, 'ws')).toBe(true);
    expect(isTransportCompatible({ transport: 'http', reason: 'account_force_http' }, 'ws')).toBe(false);
    expect(isTransportCompatible({ transport: 'http', reason: 'account_force_http' }, 'any')).toBe(true);
    expect(isTransportCompatible({ transport: null, reason: 'account_disabled' }, 'any')).toBe(false);
  });
});
