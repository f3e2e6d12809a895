// The Realtime relay's pure wire rules: which upgrades are served, what goes upstream, which
// upstream events touch account health, and close-code mapping (never 1005/1006 sent).
import { describe, expect, it } from 'vitest';
import type { AccountConfig } from '../../src/config/schema.js';
import {
  clientCloseCode,
  closeReason,
  inspectUpstreamEvent,
  isSendableCloseCode,
  parseRealtimeQuery,
  realtimeTarget,
  upstreamCloseCode,
} from '../../src/session/realtime-wire.js';

const NOW = 1_700_000_000_000;
const ev = (o: unknown) => Buffer.from(JSON.stringify(o));

describe('realtime upgrade query', () => {
  it('needs a model unless the session is a transcription one, and keeps the query as sent', () => {
    expect(parseRealtimeQuery('/v1/realtime?model=gpt-realtime&x=1')).toEqual({ ok: true, search: '?model=gpt-realtime&x=1', model: 'gpt-realtime', intent: null });
    expect(parseRealtimeQuery('/v1/realtime?intent=transcription')).toMatchObject({ ok: true, model: null, intent: 'transcription' });
    expect(parseRealtimeQuery('/v1/realtime').ok).toBe(false);
    expect(parseRealtimeQuery('/v1/realtime?model=').ok).toBe(false);
    expect(parseRealtimeQuery('/v1/realtime?intent=other').ok).toBe(false);
  });
});

describe('realtime upstream target', () => {
  const account = { id: 'a', baseUrl: 'https://up.example/v1', apiKey: 'sk-acct' } as AccountConfig;

  it('uses the account bearer, drops the client key and its subprotocol, passes OpenAI-Beta on', () => {
    const t = realtimeTarget(
      account,
      {
        authorization: 'Bearer sk-client',
        'sec-websocket-protocol': 'realtime, openai-insecure-api-key.sk-client',
        'openai-beta': 'realtime=v1',
        cookie: 'c=1',
        'session-id': 's1',
      },
      '?model=m',
    );
    expect(t.url).toBe('wss://up.example/v1/realtime?model=m');
    expect(t.headers).toEqual({ authorization: 'Bearer sk-acct', 'openai-beta': 'realtime=v1', 'session-id': 's1' });
    expect(t.protocols).toEqual(['realtime']);
    expect(JSON.stringify(t)).not.toContain('sk-client');
  });
});

describe('realtime upstream events that feed account health', () => {
  it('rate-limit and server error events are account failures; client errors are not', () => {
    const rl = inspectUpstreamEvent(ev({ type: 'error', event_id: 'e', error: { type: 'rate_limit_error', code: 'rate_limit_exceeded', message: 'x' } }), false, NOW);
    expect(rl).toMatchObject({ kind: 'failure', failure: { action: { kind: 'rate_limited' } } });
    const srv = inspectUpstreamEvent(ev({ type: 'error', error: { type: 'server_error', code: null } }), false, NOW);
    expect(srv).toMatchObject({ kind: 'failure', failure: { action: { kind: 'server_error' } } });
    expect(inspectUpstreamEvent(ev({ type: 'error', error: { type: 'invalid_request_error', code: 'invalid_value' } }), false, NOW)).toBeNull();
  });

  it('rate_limits.updated with a limit at remaining 0 cools down until its reset', () => {
    const limits = (requests: number) => ev({ type: 'rate_limits.updated', rate_limits: [
      { name: 'requests', limit: 10, remaining: requests, reset_seconds: 7 },
      { name: 'tokens', limit: 100, remaining: 50, reset_seconds: 1 },
    ] });
    expect(inspectUpstreamEvent(limits(0), false, NOW)).toEqual({ kind: 'exhausted', untilMs: NOW + 7000 });
    expect(inspectUpstreamEvent(limits(3), false, NOW)).toBeNull();
  });

  it('a completed response.done is a success, read from its head however big the frame', () => {
    const done = (status: string, pad = 0) =>
      ev({ type: 'response.done', event_id: 'e1', response: { object: 'realtime.response', id: 'resp_1', status, output: [{ pad: 'x'.repeat(pad) }] } });
    expect(inspectUpstreamEvent(done('completed'), false, NOW)).toEqual({ kind: 'success' });
    expect(inspectUpstreamEvent(done('completed', 200_000), false, NOW)).toEqual({ kind: 'success' });
    expect(inspectUpstreamEvent(done('cancelled'), false, NOW)).toBeNull();
    expect(inspectUpstreamEvent(done('failed'), false, NOW)).toBeNull();
    expect(inspectUpstreamEvent(done('completed'), true, NOW)).toBeNull();
    // OpenAI may put event_id before type.
    const idFirst = Buffer.from(JSON.stringify({ event_id: 'event_AbCdEfGhIjKlMnOpQrStUv', type: 'response.done', response: { object: 'realtime.response', id: 'resp_1', status: 'completed' } }));
    expect(inspectUpstreamEvent(idFirst, false, NOW)).toEqual({ kind: 'success' });
    // The type must be the frame's own, not a string quoted further in.
    expect(inspectUpstreamEvent(ev({ type: 'conversation.item.created', event_id: 'e2', item: { note: '"type":"response.done" "status":"completed"' } }), false, NOW)).toBeNull();
  });

  it('never parses binary frames, big frames, or frames without a marker', () => {
    expect(inspectUpstreamEvent(ev({ type: 'error', error: { code: 'rate_limit_exceeded' } }), true, NOW)).toBeNull();
    const big = ev({ type: 'error', error: { code: 'rate_limit_exceeded' }, pad: 'x'.repeat(20_000) });
    expect(inspectUpstreamEvent(big, false, NOW)).toBeNull();
    expect(inspectUpstreamEvent(ev({ type: 'response.output_audio.delta', delta: 'AAAA' }), false, NOW)).toBeNull();
    expect(inspectUpstreamEvent(Buffer.from('not json "error"'), false, NOW)).toBeNull();
  });
});

describe('realtime close codes', () => {
  it('never sends 1005/1006/1015: upstream drops map to 1011 (1013 when rate limited), no-status to 1000', () => {
    expect(clientCloseCode(1006, false)).toBe(1011);
    expect(clientCloseCode(1006, true)).toBe(1013);
    expect(clientCloseCode(1005, false)).toBe(1000);
    expect(clientCloseCode(1015, false)).toBe(1011);
    expect(clientCloseCode(1000, true)).toBe(1000);
    expect(clientCloseCode(4001, false)).toBe(4001);
    expect(upstreamCloseCode(1006)).toBe(1000);
    expect(upstreamCloseCode(1005)).toBe(1000);
    expect(upstreamCloseCode(1001)).toBe(1001);
    for (const c of [999, 1004, 1005, 1006, 1015, 2000, 5000]) expect(isSendableCloseCode(c)).toBe(false);
  });

  it('cuts close reasons to 123 bytes on a character boundary', () => {
    const r = closeReason('é'.repeat(100));
    expect(Buffer.byteLength(r)).toBeLessThanOrEqual(123);
    expect(r).toBe('é'.repeat(61));
  });
});
