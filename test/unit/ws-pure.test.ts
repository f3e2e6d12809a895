import { describe, expect, it } from 'vitest';
import { classifyEvent, deferredResponseId, peekType } from '../../src/session/events.js';
import { parseClientFrame } from '../../src/session/frames.js';
import { classifyErrorEvent, classifyHttpStatus, parseDurationMs, rateLimitResetMs } from '../../src/upstream/failure.js';
import { passBackHeaders, passThroughHeaders, responsesWsTarget, sessionHeaders, wsUrl } from '../../src/upstream/target.js';
import { deriveSessionHash } from '../../src/scheduler/session-key.js';
import { toErrorFrame, toHttpError, RelayError } from '../../src/errors.js';
import type { AccountConfig } from '../../src/config/schema.js';

const b = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v));

describe('upstream event classification', () => {
  it('reads the type of a delta without parsing it', () => {
    const ev = classifyEvent(b({ type: 'response.output_text.delta', sequence_number: 4, delta: 'Hel' }));
    expect(ev).toMatchObject({ type: 'response.output_text.delta', output: true, terminal: false, responseId: null });
  });
  it('does not trust a nested "type" that comes before the top-level one', () => {
    expect(peekType(b('{"item":{"type":"message"},"type":"response.output_item.done"}'))).toBeNull();
    expect(classifyEvent(b('{"item":{"type":"message"},"type":"response.output_item.done"}')).type).toBe('response.output_item.done');
  });
  it('takes the response id from response.created and marks it lifecycle, not output', () => {
    const ev = classifyEvent(b({ type: 'response.created', response: { id: 'resp_1', status: 'in_progress' } }));
    expect(ev).toMatchObject({ type: 'response.created', output: false, terminal: false, responseId: 'resp_1' });
  });
  it('finds the id of a large response.completed from its head', () => {
    const big = 'x'.repeat(100_000);
    const ev = classifyEvent(b({ type: 'response.completed', response: { id: 'resp_big', output: [{ text: big }] } }));
    expect(ev).toMatchObject({ terminal: true, outcome: 'completed', responseId: 'resp_big' });
  });
  it('parses a completed event whose id is not first when the id is still unknown', () => {
    const ev = classifyEvent(b({ type: 'response.completed', response: { status: 'completed', id: 'resp_2' } }), true);
    expect(ev.responseId).toBe('resp_2');
  });
  it('classifies error events in both shapes and failed responses', () => {
    expect(classifyEvent(b({ type: 'error', status: 429, error: { type: 'rate_limit_error', code: 'rate_limit_exceeded', message: 'slow down' } })))
      .toMatchObject({ terminal: true, outcome: 'error', error: { status: 429, code: 'rate_limit_exceeded' } });
    expect(classifyEvent(b({ type: 'error', code: 'server_error', message: 'boom' })).error).toMatchObject({ code: 'server_error' });
    expect(classifyEvent(b({ type: 'response.failed', response: { id: 'resp_3', error: { code: 'server_error', message: 'x' } } })))
      .toMatchObject({ outcome: 'failed', responseId: 'resp_3', error: { code: 'server_error' } });
  });
  it('with deferId leaves a head id unread, and deferredResponseId reads it as classifyEvent would', () => {
    const created = b({ type: 'response.created', response: { id: 'resp_d1', status: 'in_progress' } });
    const ev = classifyEvent(created, true, true);
    expect(ev).toMatchObject({ type: 'response.created', terminal: false, output: false, responseId: null, idDeferred: true });
    expect(deferredResponseId(created, ev, true)).toBe('resp_d1');
    // One shared result per type, like the deltas'.
    expect(classifyEvent(b({ type: 'response.created', response: { id: 'resp_d2' } }), true, true)).toBe(ev);
    const done = b({ type: 'response.completed', response: { id: 'resp_d3', output: [] } });
    const doneEv = classifyEvent(done, false, true);
    expect(doneEv).toMatchObject({ terminal: true, outcome: 'completed', idDeferred: true });
    expect(deferredResponseId(done, doneEv, false)).toBe('resp_d3');
    // Not in the head: parsed for a lifecycle event, and for a completed one only when the id is needed.
    const late = b({ type: 'response.completed', response: { status: 'completed', id: 'resp_d4' } });
    const lateEv = classifyEvent(late, true, true);
    expect(deferredResponseId(late, lateEv, true)).toBe('resp_d4');
    expect(deferredResponseId(late, lateEv, false)).toBeNull();
    const lateCreated = b({ type: 'response.in_progress', response: { status: 'in_progress', id: 'resp_d5' } });
    expect(deferredResponseId(lateCreated, classifyEvent(lateCreated, false, true), false)).toBe('resp_d5');
  });
  it('with deferId still reads errors, failures and cancellations whole', () => {
    const failed = classifyEvent(b({ type: 'response.failed', response: { id: 'resp_f', error: { code: 'server_error' } } }), true, true);
    expect(failed).toMatchObject({ idDeferred: false, responseId: 'resp_f', error: { code: 'server_error' } });
    const err = classifyEvent(b({ type: 'error', status: 500, error: { code: 'server_error' } }), true, true);
    expect(err).toMatchObject({ idDeferred: false, terminal: true, outcome: 'error', error: { status: 500 } });
    const cancelled = classifyEvent(b({ type: 'response.cancelled', response: { id: 'resp_c' } }), true, true);
    expect(cancelled).toMatchObject({ idDeferred: false, responseId: 'resp_c', outcome: 'cancelled' });
    expect(classifyEvent(b({ type: 'response.output_text.delta', delta: 'x' }), true, true).idDeferred).toBe(false);
  });
  it('treats non-JSON as an unknown, non-terminal event', () => {
    expect(classifyEvent(b('not json'))).toMatchObject({ type: '', terminal: false });
  });
});

describe('client frame validation', () => {
  const max = 1024;
  it('accepts a Codex warm-up with unknown fields and keeps the raw bytes', () => {
    const raw = b({ type: 'response.create', model: 'gpt-5.5', generate: false, store: false, stream: true, client_metadata: { a: 1 }, tools: [{ type: 'custom' }] });
    const f = parseClientFrame(raw, false, 1 << 20);
    expect(f).toMatchObject({ kind: 'create', model: 'gpt-5.5', generate: false, store: false, previousResponseId: null });
    if (f.kind === 'create') expect(f.raw).toBe(raw);
  });
  it('defaults type to response.create and store to true', () => {
    expect(parseClientFrame(b({ model: 'm', input: 'hi' }), false, max)).toMatchObject({ kind: 'create', store: true, generate: true });
  });
  it.each([
    ['invalid JSON', b('{nope'), false, 'SY_ERR_INVALID_JSON'],
    ['binary frame', b({ model: 'm' }), true, 'SY_ERR_BINARY_FRAME'],
    ['a msg_ id as previous_response_id', b({ model: 'm', previous_response_id: 'msg_123' }), false, 'SY_ERR_INVALID_PREVIOUS_RESPONSE_ID'],
    ['an array', b([1, 2]), false, 'SY_ERR_INVALID_REQUEST'],
    ['an oversize frame', b({ model: 'm', input: 'x'.repeat(2000) }), false, 'SY_ERR_TOO_LARGE'],
    ['a non-string model', b({ model: 5 }), false, 'SY_ERR_INVALID_REQUEST'],
  ])('rejects %s', (_name, raw, binary, code) => {
    expect(parseClientFrame(raw, binary, max)).toMatchObject({ kind: 'invalid', error: code });
  });
  it('passes response.cancel through and refuses unknown types without closing', () => {
    expect(parseClientFrame(b({ type: 'response.cancel' }), false, max).kind).toBe('cancel');
    const f = parseClientFrame(b({ type: 'session.update' }), false, max);
    expect(f).toMatchObject({ kind: 'invalid', error: 'SY_ERR_UNSUPPORTED_TYPE' });
  });
});

describe('upstream failure classification', () => {
  const now = 1_000_000;
  it('parses OpenAI reset durations', () => {
    expect(parseDurationMs('1s')).toBe(1000);
    expect(parseDurationMs('6m0s')).toBe(360_000);
    expect(parseDurationMs('1h2m3.5s')).toBe(3_723_500);
    expect(parseDurationMs('250ms')).toBe(250);
    expect(parseDurationMs('12')).toBe(12_000);
    expect(parseDurationMs('soon')).toBeNull();
  });
  it('takes retry-after first, else the largest x-ratelimit-reset', () => {
    expect(rateLimitResetMs({ 'retry-after': '7' }, now)).toBe(now + 7000);
    expect(rateLimitResetMs({ 'x-ratelimit-reset-requests': '2s', 'x-ratelimit-reset-tokens': '1m' }, now)).toBe(now + 60_000);
    expect(rateLimitResetMs({}, now)).toBeNull();
  });
  it('maps handshake statuses to account actions', () => {
    expect(classifyHttpStatus(429, { 'retry-after': '3' }, now)).toMatchObject({ retryable: true, action: { kind: 'rate_limited', untilMs: now + 3000 } });
    expect(classifyHttpStatus(401, {}, now).action.kind).toBe('unauthorized');
    expect(classifyHttpStatus(426, {}, now).action.kind).toBe('ws_unsupported');
    expect(classifyHttpStatus(404, {}, now).action.kind).toBe('ws_unsupported');
    expect(classifyHttpStatus(503, {}, now).action.kind).toBe('server_error');
    expect(classifyHttpStatus(400, {}, now)).toMatchObject({ retryable: false, action: { kind: 'none' } });
  });
  it('does not blame the account for client errors', () => {
    expect(classifyErrorEvent(400, 'previous_response_not_found', 'invalid_request_error')).toMatchObject({ retryable: false, action: { kind: 'none' } });
    expect(classifyErrorEvent(429, 'usage_limit_reached', null).action.kind).toBe('rate_limited');
    expect(classifyErrorEvent(null, 'server_error', null).action.kind).toBe('server_error');
    expect(classifyErrorEvent(null, 'websocket_not_supported', null).action.kind).toBe('ws_unsupported');
  });
});

describe('upstream target', () => {
  const account = { id: 'a', baseUrl: 'https://api.example.test/v1/', apiKey: 'sk-account' } as AccountConfig;
  it('derives the WS URL from baseUrl', () => {
    expect(wsUrl(account, '/responses')).toBe('wss://api.example.test/v1/responses');
    expect(wsUrl({ ...account, baseUrl: 'http://127.0.0.1:9/acct/x/v1' }, '/realtime', '?model=m')).toBe('ws://127.0.0.1:9/acct/x/v1/realtime?model=m');
  });
  it('sends the account credential and beta header, passes session headers, never the client key', () => {
    const t = responsesWsTarget(account, {
      authorization: 'Bearer sk-client',
      'session-id': 's1',
      'thread-id': 't1',
      'x-codex-window-id': 'w',
      originator: 'codex_exec',
      cookie: 'c',
      'openai-beta': 'responses_websockets=2026-02-06',
    });
    expect(t.headers).toEqual({
      authorization: 'Bearer sk-account',
      'openai-beta': 'responses_websockets=2026-02-06',
      'session-id': 's1',
      'thread-id': 't1',
      'x-codex-window-id': 'w',
      originator: 'codex_exec',
    });
    expect(passThroughHeaders({ authorization: 'x' })).toEqual({});
  });
  it('keeps of the upgrade headers only what travels upstream and what a session key comes from', () => {
    const upgrade = {
      host: '127.0.0.1:8080',
      connection: 'Upgrade',
      upgrade: 'websocket',
      'sec-websocket-key': 'k',
      'sec-websocket-version': '13',
      'sec-websocket-protocol': 'openai-insecure-api-key.sk-client',
      authorization: 'Bearer sk-client',
      cookie: 'c',
      'x-session-id': 'xs',
      'thread-id': 't1',
      'x-codex-window-id': 'w',
      originator: 'codex_exec',
      'user-agent': 'codex',
    };
    const kept = sessionHeaders(upgrade);
    expect(kept).toEqual({ 'x-session-id': 'xs', 'thread-id': 't1', 'x-codex-window-id': 'w', originator: 'codex_exec', 'user-agent': 'codex' });
    // Nothing the session does with its headers changes.
    expect(responsesWsTarget(account, kept)).toEqual(responsesWsTarget(account, upgrade));
    expect(deriveSessionHash('g', kept, {})).toBe(deriveSessionHash('g', upgrade, {}));
    for (const name of ['session_id', 'session-id', 'conversation_id']) {
      const h = { [name]: 'k1', host: 'h' };
      expect(deriveSessionHash('g', sessionHeaders(h), {})).toBe(deriveSessionHash('g', h, {}));
    }
  });
  it('passes back only the whitelisted upstream headers', () => {
    expect(passBackHeaders({ 'x-codex-turn-state': 'ts', 'set-cookie': 'no', 'x-ratelimit-remaining-requests': '9' }))
      .toEqual({ 'x-codex-turn-state': 'ts', 'x-ratelimit-remaining-requests': '9' });
  });
});

describe('error registry', () => {
  it('maps a relay error to the Codex-shaped error frame and its close code', () => {
    const f = toErrorFrame(new RelayError('SY_ERR_PREVIOUS_RESPONSE_NOT_FOUND'));
    expect(JSON.parse(f.frame)).toMatchObject({ type: 'error', status: 400, error: { type: 'invalid_request_error', code: 'previous_response_not_found' } });
    expect(f.close).toBeNull();
    expect(toErrorFrame(new RelayError('SY_ERR_TOO_LARGE')).close).toBe(1009);
  });
  it('hides the details of unexpected errors', () => {
    const e = toHttpError(new Error('secret path /etc/x'));
    expect(e.status).toBe(500);
    expect(JSON.stringify(e.body)).not.toContain('/etc/x');
  });
});

describe('rate limits reported inside a WS error frame', () => {
  it('carries the frame headers so the cooldown ends at the upstream reset, not the default', () => {
    const ev = classifyEvent(b({ type: 'error', status: 429, error: { type: 'rate_limit_error', code: 'rate_limit_exceeded' }, headers: { 'Retry-After': '7' } }));
    expect(ev.error?.headers).toEqual({ 'retry-after': '7' });
    const until = rateLimitResetMs(ev.error!.headers!, 1_000);
    expect(classifyErrorEvent(429, 'rate_limit_exceeded', null, until).action).toEqual({ kind: 'rate_limited', untilMs: 8_000 });
  });
});
