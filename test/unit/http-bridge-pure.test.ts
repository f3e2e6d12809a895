// Pure pieces of the HTTP path and the bridge: request validation, SSE framing, upstream error
// sanitising, the bounded transcript and the full-history expansion.
import { describe, expect, it } from 'vitest';
import { formatSse, isJsonContentType, parseResponsesRequest } from '../../src/ingress/http-responses.js';
import { planUpstreamBody, warmupFrames } from '../../src/session/bridge.js';
import { parseClientFrame, type CreateFrame } from '../../src/session/frames.js';
import { normaliseInput, replayItem, Transcript } from '../../src/session/transcript.js';
import { classifyPostStatus, sanitizeUpstreamError } from '../../src/upstream/http-sse-upstream.js';

const frame = (body: Record<string, unknown>): CreateFrame => {
  const f = parseClientFrame(Buffer.from(JSON.stringify(body)), false, 1 << 20);
  if (f.kind !== 'create') throw new Error(`not a create frame: ${JSON.stringify(f)}`);
  return f;
};
const user = (text: string) => ({ type: 'message', role: 'user', content: [{ type: 'input_text', text }] });

describe('HTTP request validation', () => {
  it('accepts JSON media types with parameters and +json, nothing else', () => {
    expect(isJsonContentType('application/json')).toBe(true);
    expect(isJsonContentType('Application/JSON; charset=utf-8')).toBe(true);
    expect(isJsonContentType('application/merge-patch+json')).toBe(true);
    expect(isJsonContentType('text/plain')).toBe(false);
    expect(isJsonContentType(undefined)).toBe(false);
  });

  it('streams on body.stream, and names the problem of a bad body', () => {
    expect(parseResponsesRequest(Buffer.from('{"model":"m","stream":true}'))).toMatchObject({ ok: true, stream: true, model: 'm' });
    expect(parseResponsesRequest(Buffer.from('{"model":"m"}'))).toMatchObject({ ok: true, stream: false });
    const code = (raw: string) => {
      const r = parseResponsesRequest(Buffer.from(raw));
      return r.ok ? null : r.error.spec.code;
    };
    expect(code('{')).toBe('invalid_json');
    expect(code('"text"')).toBe('invalid_request');
    expect(code('{"input":"x"}')).toBe('missing_required_parameter');
    expect(code('{"model":7}')).toBe('invalid_request');
    expect(code('{"model":"m","previous_response_id":"msg_1"}')).toBe('invalid_previous_response_id');
    expect(code('{"model":"m","stream":"yes"}')).toBe('invalid_request');
  });

  it('frames a multi-line payload as several data lines', () => {
    expect(formatSse('response.created', '{"a":1}')).toBe('event: response.created\ndata: {"a":1}\n\n');
    expect(formatSse(undefined, 'a\nb')).toBe('data: a\ndata: b\n\n');
  });
});

describe('upstream error sanitising', () => {
  it('keeps type, code, message and param only, and masks credentials', () => {
    const raw = JSON.stringify({ error: { type: 'invalid_request_error', code: 'invalid_api_key', message: 'Incorrect API key provided: sk-proj-abc123XYZ', param: null, extra: 'x' } });
    expect(sanitizeUpstreamError(raw, 401, ['sk-proj-abc123XYZ'])).toEqual({
      type: 'invalid_request_error',
      code: 'invalid_api_key',
      message: 'Incorrect API key provided: [redacted]',
      param: null,
    });
    expect(sanitizeUpstreamError('{"error":{"message":"auth Bearer abc.def failed"}}', 500).message).toBe('auth Bearer [redacted] failed');
  });

  it('never echoes a body that is not an OpenAI error', () => {
    const e = sanitizeUpstreamError('<html>proxy error, key=sk-live-secret</html>', 502);
    expect(e).toEqual({ type: 'server_error', code: null, message: 'Upstream answered 502.', param: null });
  });

  it('reads 404/405/426 on a POST as the request’s problem, 5xx/429 as the account’s', () => {
    expect(classifyPostStatus(404, {}, 0)).toMatchObject({ retryable: false, action: { kind: 'none' } });
    expect(classifyPostStatus(503, {}, 0)).toMatchObject({ retryable: true, action: { kind: 'server_error' } });
    expect(classifyPostStatus(429, { 'retry-after': '3' }, 1000)).toMatchObject({ retryable: true, action: { kind: 'rate_limited', untilMs: 4000 } });
  });
});

describe('bridge transcript', () => {
  it('replays a chain oldest first, inputs then outputs per response', () => {
    const t = new Transcript(() => 1 << 20);
    t.add({ id: 'resp_w', parent: null, input: [{ type: 'message', role: 'developer', content: 'dev' }], output: [], local: true });
    t.add({ id: 'resp_1', parent: 'resp_w', input: [user('hi')], output: [{ type: 'message', role: 'assistant', content: [] }], local: false });
    expect(t.history('resp_1')?.map((i) => i.role)).toEqual(['developer', 'user', 'assistant']);
    expect(t.hasLocalLink('resp_1')).toBe(true);
    expect(t.history('resp_unknown')).toBeNull();
  });

  it('forgets the oldest responses past its byte bound, keeping the newest', () => {
    const t = new Transcript(() => 600);
    t.add({ id: 'resp_1', parent: null, input: [user('a'.repeat(400))], output: [], local: false });
    t.add({ id: 'resp_2', parent: 'resp_1', input: [user('b'.repeat(400))], output: [], local: false });
    expect(t.has('resp_1')).toBe(false);
    expect(t.has('resp_2')).toBe(true);
    expect(t.history('resp_2')).toBeNull();
    expect(t.bytes).toBeLessThan(1000);
  });

  it('drops item ids and unencrypted reasoning from replayed items', () => {
    expect(replayItem({ type: 'message', id: 'msg_1', role: 'user', content: 'x' })).toEqual({ type: 'message', role: 'user', content: 'x' });
    expect(replayItem({ type: 'reasoning', id: 'rs_1', summary: [] })).toBeNull();
    expect(replayItem({ type: 'reasoning', id: 'rs_1', summary: [], encrypted_content: 'e' })).toEqual({ type: 'reasoning', summary: [], encrypted_content: 'e' });
    expect(replayItem({ type: 'function_call', id: 'fc_1', call_id: 'call_1', name: 'f', arguments: '{}' })).toEqual({ type: 'function_call', call_id: 'call_1', name: 'f', arguments: '{}' });
    expect(normaliseInput('hello')).toEqual([user('hello')]);
  });
});

describe('bridge request planning', () => {
  const transcript = () => {
    const t = new Transcript(() => 1 << 20);
    t.add({ id: 'resp_warm', parent: null, input: [{ type: 'message', id: 'msg_d', role: 'developer', content: 'dev' }], output: [], local: true });
    t.add({ id: 'resp_real', parent: null, input: [user('stored')], output: [], local: false });
    return t;
  };

  it('expands a store:false chain into a full-history request without WS-only fields', () => {
    const plan = planUpstreamBody(frame({ type: 'response.create', model: 'm', generate: true, stream_id: 's', store: false, previous_response_id: 'resp_warm', input: [user('hi')] }), transcript());
    expect(plan).toMatchObject({ ok: true, expanded: true, previousResponseId: null, historyItems: 1 });
    if (!plan.ok) return;
    expect(plan.body).toEqual({ model: 'm', stream: true, store: false, input: [{ type: 'message', role: 'developer', content: 'dev' }, user('hi')] });
  });

  it('passes a store:true id of a real upstream response through, but expands one through a minted id', () => {
    const t = transcript();
    const through = planUpstreamBody(frame({ model: 'm', store: true, previous_response_id: 'resp_real', input: [user('next')] }), t);
    expect(through).toMatchObject({ ok: true, expanded: false, previousResponseId: 'resp_real' });
    const unknown = planUpstreamBody(frame({ model: 'm', store: true, previous_response_id: 'resp_elsewhere', input: 'x' }), t);
    expect(unknown).toMatchObject({ ok: true, expanded: false, previousResponseId: 'resp_elsewhere' });
    const minted = planUpstreamBody(frame({ model: 'm', store: true, previous_response_id: 'resp_warm', input: 'x' }), t);
    expect(minted).toMatchObject({ ok: true, expanded: true, previousResponseId: null });
  });

  it('refuses a store:false chain it cannot replay with previous_response_not_found', () => {
    const plan = planUpstreamBody(frame({ model: 'm', store: false, previous_response_id: 'resp_gone', input: 'x' }), transcript());
    expect(plan.ok ? null : plan.error.spec.code).toBe('previous_response_not_found');
  });

  it('answers a warm-up with response.created and response.completed under the minted id', () => {
    const [created, completed] = warmupFrames('resp_x', { store: false }, 'gpt-5.5', 1).map((f) => JSON.parse(f));
    expect(created).toMatchObject({ type: 'response.created', response: { id: 'resp_x', status: 'in_progress', output: [] } });
    expect(completed).toMatchObject({ type: 'response.completed', response: { id: 'resp_x', status: 'completed', model: 'gpt-5.5', store: false } });
  });
});
