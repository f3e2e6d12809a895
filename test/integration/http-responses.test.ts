// POST /v1/responses through the relay to the simulated upstream over HTTP/SSE (SPEC §3–5), with
// real clients: the openai SDK, plain fetch, and the Codex CLI in HTTP-only mode.
import { afterEach, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import { startSimUpstream, type SimAccountInit, type SimUpstream } from '../../scripts/sim/upstream.js';
import type { RelayEvent } from '../../src/observability/events.js';
import { TEXT_TURN_EVENTS } from '../helpers/ws-client.js';
import { startRelay, type TestRelay } from '../helpers/relay.js';
import { eventually } from '../helpers/pool.js';
import { codexAvailable, DEFAULT_CODEX_KEY, runCodex } from '../helpers/codex.js';

const KEY = 'sk-sy-http-client';
const ANSWER = 'The relay answered over HTTP.';
let sim: SimUpstream | null = null;
let relay: TestRelay | null = null;
let events: RelayEvent[] = [];

afterEach(async () => {
  await relay?.stop();
  await sim?.close();
  relay = null;
  sim = null;
});

/** A sim with the given accounts and a relay whose accounts are those, in order of priority. */
async function setup(
  accounts: SimAccountInit[],
  extra: Record<string, unknown> = {},
  accountFields: Record<string, unknown> = {},
): Promise<{ sim: SimUpstream; relay: TestRelay }> {
  sim = await startSimUpstream({ accounts });
  const s = sim;
  relay = await startRelay({
    clients: [{ key: KEY }, { key: DEFAULT_CODEX_KEY }],
    accounts: accounts.map((a, i) => ({
      id: a.name,
      baseUrl: s.baseUrlFor(a.name),
      apiKey: `sk-sim-${a.name}`,
      priority: i + 1,
      transport: 'http',
      ...accountFields,
    })),
    ...extra,
  });
  events = [];
  relay.app.bus.on((e) => events.push(e));
  return { sim, relay };
}

const sdk = (r: TestRelay) => new OpenAI({ apiKey: KEY, baseURL: `${r.url}/v1`, maxRetries: 0 });

function post(r: TestRelay, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${r.url}/v1/responses`, {
    method: 'POST',
    headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

/** Parses an SSE body into comments and JSON data payloads. */
function parseSse(text: string): { comments: number; data: Record<string, any>[] } {
  let comments = 0;
  const data: Record<string, any>[] = [];
  for (const block of text.split('\n\n')) {
    const lines = block.split('\n').filter((l) => l !== '');
    if (lines.length > 0 && lines.every((l) => l.startsWith(':'))) comments++;
    const payload = lines.filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n');
    if (payload) data.push(JSON.parse(payload));
  }
  return { comments, data };
}

const httpRequests = (s: SimUpstream) => s.log.filter((r) => r.kind === 'http_request');

describe('HTTP Responses with the openai SDK', () => {
  it('non-streaming responses.create returns the simulated answer as output_text', async () => {
    const { sim, relay } = await setup([{ name: 'a', text: ANSWER, responseHeaders: { 'x-ratelimit-remaining-requests': '42' } }]);
    const { data: response, response: raw } = await sdk(relay)
      .responses.create({ model: 'gpt-5.5', input: 'Say hello' }, { headers: { 'session-id': 'sess-1', 'x-codex-window-id': 'w-1' } })
      .withResponse();
    expect(response.output_text).toBe(ANSWER);
    expect(response.id).toMatch(/^resp_/);
    expect(raw.headers.get('x-codex-turn-state')).toBe('sim-turn-state-a');
    expect(raw.headers.get('x-models-etag')).toBe('sim-models-etag-a');
    expect(raw.headers.get('openai-model')).toBe('gpt-5.5');
    expect(raw.headers.get('x-request-id')).toMatch(/^req_/);
    expect(raw.headers.get('x-ratelimit-remaining-requests')).toBe('42');
    expect(raw.headers.get('openai-processing-ms')).toBeNull();
    const [rec] = httpRequests(sim);
    expect(rec.headers.authorization).toBe('Bearer sk-sim-a');
    expect(rec.headers['session-id']).toBe('sess-1');
    expect(rec.headers['x-codex-window-id']).toBe('w-1');
    expect(JSON.stringify(rec.headers)).not.toContain(KEY);
    expect(events).toContainEqual(expect.objectContaining({ type: 'turn', account: 'a', transport: 'http', outcome: 'completed' }));
    const turnLog = relay.logs.map((l) => JSON.parse(l)).find((l) => l.event === 'turn');
    expect(turnLog).toMatchObject({ transport: 'http', account: 'a', outcome: 'completed', switches: 0, responseId: response.id });
    expect(relay.logs.join('\n')).not.toMatch(/sk-sim-a|sk-sy-http-client/);
  });

  it('streaming responses.create yields every event through response.completed', async () => {
    const { sim, relay } = await setup([{ name: 'a', text: ANSWER, deltaCount: 3 }]);
    const stream = await sdk(relay).responses.create({ model: 'gpt-5.5', input: 'Say hello', stream: true });
    const types: string[] = [];
    let text = '';
    for await (const ev of stream) {
      types.push(ev.type);
      if (ev.type === 'response.output_text.delta') text += ev.delta;
    }
    expect(types).toEqual(TEXT_TURN_EVENTS);
    expect(text).toBe(ANSWER);
    // The SDK asks for JSON even when streaming: the relay streamed because of body.stream.
    expect(httpRequests(sim)[0].headers.accept).toBe('text/event-stream');
    const turn = events.find((e) => e.type === 'turn');
    expect(turn).toMatchObject({ account: 'a', transport: 'http', outcome: 'completed' });
    expect((turn as { ttftMs: number | null }).ttftMs).not.toBeNull();
  });
});

describe('HTTP response bindings', () => {
  it('a stored response is bound to its account and chained there; a store:false one, which nothing can chain from, is not bound', async () => {
    const { sim, relay } = await setup([{ name: 'a' }, { name: 'b' }]);
    const group = relay.app.config().clients[0].group;
    const unstored = (await (await post(relay, { model: 'gpt-5.5', store: false, stream: false, input: 'x' })).json()) as { id: string };
    const stored = await (await post(relay, { model: 'gpt-5.5', stream: true, input: 'y' })).text();
    const storedId = parseSse(stored).data.find((e) => e.type === 'response.completed')!.response.id as string;
    const owner = sim.responseOwner(storedId)!.account;
    await eventually(async () => (await relay.app.store.getResponseBinding(group, storedId)) === owner, 2000, 'stored response bound');
    expect(await relay.app.store.getResponseBinding(group, unstored.id)).toBeNull();
    const chained = (await (await post(relay, { model: 'gpt-5.5', stream: false, previous_response_id: storedId, input: 'z' })).json()) as { id: string };
    expect(sim.responseOwner(chained.id)!.account).toBe(owner);
  });
});

describe('HTTP failover', () => {
  it('account A answering 503 moves the request to B: one switch, A cooled down', async () => {
    const { sim, relay } = await setup([{ name: 'a', httpStatus: 503 }, { name: 'b', text: ANSWER }], { scheduler: { topK: 1 } });
    const response = await sdk(relay).responses.create({ model: 'gpt-5.5', input: 'Say hello' });
    expect(response.output_text).toBe(ANSWER);
    expect(httpRequests(sim).map((r) => [r.account, r.status])).toEqual([
      ['a', 503],
      ['b', 200],
    ]);
    expect(events.filter((e) => e.type === 'switch')).toEqual([{ type: 'switch', fromAccount: 'a' }]);
    expect(events).toContainEqual(expect.objectContaining({ type: 'cooldown', account: 'a', active: true }));
    // A is cooling down: the next request goes straight to B.
    await sdk(relay).responses.create({ model: 'gpt-5.5', input: 'Again' });
    expect(httpRequests(sim).map((r) => r.account)).toEqual(['a', 'b', 'b']);
    const log = relay.logs.map((l) => JSON.parse(l)).find((l) => l.event === 'turn');
    expect(log).toMatchObject({ account: 'b', switches: 1, failedAccounts: ['a'], outcome: 'completed' });
    const metrics = await (await fetch(`${relay.url}/metrics`)).text();
    expect(metrics).toMatch(/^switchyard_scheduler_account_switch_total 1$/m);
    expect(metrics).toMatch(/^switchyard_account_cooldown\{account="a",reason="[a-z_]+"\} 1$/m);
  });

  it('every account failing gives a 502 JSON error carrying the sanitised upstream reason', async () => {
    const leaky = () => ({ type: 'error' as const, status: 500, code: 'server_error', message: 'backend exploded while using key sk-sim-a' });
    const { sim, relay } = await setup([{ name: 'a', script: leaky }, { name: 'b', httpStatus: 503 }], { scheduler: { topK: 1 } });
    const res = await post(relay, { model: 'gpt-5.5', input: 'Say hello' });
    expect(res.status).toBe(502);
    const body = (await res.json()) as { error: { type: string; code: string; message: string } };
    expect(body.error).toMatchObject({ type: 'server_error', code: 'upstream_unavailable' });
    expect(body.error.message).toContain('upstream server error (503)');
    expect(httpRequests(sim).map((r) => r.account)).toEqual(['a', 'b']);
    // Now the last upstream message carries a credential: it must come back scrubbed.
    await relay.app.scheduler.setAccountEnabled('a', true);
    await relay.app.scheduler.setAccountEnabled('b', true);
    sim.account('b').set({ httpStatus: null, script: () => ({ type: 'error', status: 503, code: 'server_error', message: 'overloaded, auth Bearer sk-sim-b' }) });
    const res2 = await post(relay, { model: 'gpt-5.5', input: 'Again' });
    expect(res2.status).toBe(502);
    const text = await res2.text();
    expect(text).not.toMatch(/sk-sim-[ab]/);
    expect(text).toContain('[redacted]');
    expect(relay.logs.join('\n')).not.toMatch(/sk-sim-[ab]/);
  });

  it('every account rate limited gives 429 with Retry-After', async () => {
    const { relay } = await setup([{ name: 'a', httpStatus: 429 }, { name: 'b', httpStatus: 429 }]);
    const res = await post(relay, { model: 'gpt-5.5', input: 'Say hello' });
    expect(res.status).toBe(429);
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('rate_limit_exceeded');
  });

  it('an upstream 400 is the request’s fault: passed back sanitised, no failover, no cooldown', async () => {
    const bad = () => ({ type: 'error' as const, status: 400, code: 'invalid_value', errorType: 'invalid_request_error', message: 'bad tool schema', param: 'tools' });
    const { sim, relay } = await setup([{ name: 'a', script: bad }, { name: 'b' }], { scheduler: { topK: 1 } });
    const res = await post(relay, { model: 'gpt-5.5', input: 'Say hello' });
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ error: { type: 'invalid_request_error', code: 'invalid_value', message: 'bad tool schema', param: 'tools' } });
    expect(httpRequests(sim).map((r) => r.account)).toEqual(['a']);
    expect(events.filter((e) => e.type === 'switch' || e.type === 'cooldown')).toEqual([]);
  });
});

describe('HTTP bad input never reaches the upstream', () => {
  it('rejects non-JSON, missing model, bad previous_response_id, oversize body and wrong content type', async () => {
    const { sim, relay } = await setup([{ name: 'a' }], { http: { maxBodyBytes: 1024 } });
    const cases: Array<[Promise<Response>, number, string]> = [
      [post(relay, '{"model": "gpt-5.5",'), 400, 'invalid_json'],
      [post(relay, '[1,2]'), 400, 'invalid_request'],
      [post(relay, { input: 'hi' }), 400, 'missing_required_parameter'],
      [post(relay, { model: 'gpt-5.5', previous_response_id: 'msg_123' }), 400, 'invalid_previous_response_id'],
      [post(relay, { model: 'gpt-5.5', input: 'x'.repeat(4096) }), 413, 'message_too_large'],
      [post(relay, 'model=gpt-5.5', { 'content-type': 'text/plain' }), 415, 'unsupported_media_type'],
    ];
    for (const [p, status, code] of cases) {
      const res = await p;
      expect(res.status).toBe(status);
      const body = (await res.json()) as { error: { type: string; code: string; message: string } };
      expect(body.error).toMatchObject({ type: 'invalid_request_error', code });
      expect(body.error.message.length).toBeGreaterThan(0);
    }
    expect(sim.log).toEqual([]);
    // The connection stays usable after a rejected oversize body.
    expect((await post(relay, { model: 'gpt-5.5', input: 'ok' })).status).toBe(200);
  });
});

describe('HTTP capacity, waiting and slots', () => {
  it('no capacity and a full queue gives 429 with Retry-After and an OpenAI-style body', async () => {
    const { sim, relay } = await setup(
      [{ name: 'a', ttftMs: 1500 }],
      { scheduler: { fallbackWait: { maxWaiting: 0 }, stickyWait: { maxWaiting: 0 } } },
      { concurrency: 1 },
    );
    const first = post(relay, { model: 'gpt-5.5', input: 'slow one' });
    await expect.poll(() => sim.account('a').inFlight).toBe(1);
    const res = await post(relay, { model: 'gpt-5.5', input: 'second' });
    expect(res.status).toBe(429);
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(await res.json()).toMatchObject({ error: { type: 'rate_limit_error', code: 'no_capacity' } });
    expect((await first).status).toBe(200);
  });

  it('a streaming request that waits for a slot gets SSE keep-alive comments, then its events', async () => {
    const { sim, relay } = await setup([{ name: 'a', ttftMs: 700 }], { http: { keepAliveIntervalMs: 100 } }, { concurrency: 1 });
    const first = post(relay, { model: 'gpt-5.5', input: 'slow one' });
    await expect.poll(() => sim.account('a').inFlight).toBe(1);
    const res = await post(relay, { model: 'gpt-5.5', input: 'waits', stream: true });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    const { comments, data } = parseSse(await res.text());
    expect(comments).toBeGreaterThanOrEqual(2);
    expect(data.at(-1)?.type).toBe('response.completed');
    expect((await first).status).toBe(200);
    const log = relay.logs.map((l) => JSON.parse(l)).filter((l) => l.event === 'turn' && l.stream === true)[0];
    expect(log.waitedMs).toBeGreaterThan(0);
  });

  it('a client that goes away mid-stream releases its slot', async () => {
    const { sim, relay } = await setup([{ name: 'a', ttftMs: 300, deltaCount: 5, deltaIntervalMs: 300 }]);
    const ac = new AbortController();
    const res = await fetch(`${relay.url}/v1/responses`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-5.5', input: 'long', stream: true }),
      signal: ac.signal,
    });
    const reader = res.body!.getReader();
    await reader.read();
    ac.abort();
    await expect.poll(() => sim.account('a').inFlight, { timeout: 5000 }).toBe(0);
    await expect.poll(async () => (await relay.app.store.snapshot([{ id: 'a', max: 4 }]))[0].inflight, { timeout: 5000 }).toBe(0);
    await expect.poll(() => relay.logs.some((l) => l.includes('"outcome":"client_gone"')), { timeout: 5000 }).toBe(true);
  });

  it('an upstream that never answers times out on its headers and the request moves on', async () => {
    const { relay } = await setup([{ name: 'a', hang: true }, { name: 'b', text: ANSWER }], { http: { upstreamHeadersTimeoutMs: 300 }, scheduler: { topK: 1 } });
    const res = await post(relay, { model: 'gpt-5.5', input: 'Say hello', stream: true });
    expect(res.status).toBe(200);
    const { data } = parseSse(await res.text());
    expect(data.at(-1)).toMatchObject({ type: 'response.completed' });
    expect(events).toContainEqual(expect.objectContaining({ type: 'turn', account: 'a', outcome: 'upstream_error' }));
    expect(events).toContainEqual(expect.objectContaining({ type: 'switch', fromAccount: 'a' }));
    await expect.poll(async () => (await relay.app.store.snapshot([{ id: 'a', max: 4 }]))[0].inflight, { timeout: 5000 }).toBe(0);
  });

  it('a client reading slowly gets every event of a long stream, in order', async () => {
    const text = 'x'.repeat(2_000);
    const { relay } = await setup([{ name: 'a', deltaCount: 400, text }]);
    const res = await post(relay, { model: 'gpt-5.5', input: 'long', stream: true });
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let body = '';
    for (let n = 0; ; n++) {
      const { done, value } = await reader.read();
      if (done) break;
      body += decoder.decode(value, { stream: true });
      // Slow at first, so the relay's buffers fill and it pauses the upstream.
      if (n < 20) await new Promise((r) => setTimeout(r, 20));
    }
    const { data } = parseSse(body);
    const deltas = data.filter((e) => e.type === 'response.output_text.delta');
    expect(deltas.length).toBeGreaterThan(1);
    expect(deltas.map((e) => e.delta).join('')).toBe(text);
    expect(data.map((e) => e.sequence_number)).toEqual(data.map((_, i) => data[0].sequence_number + i));
    expect(data.at(-1)).toMatchObject({ type: 'response.completed' });
  });

  it('a stream cut after the first events ends with an error event for the client', async () => {
    const { relay } = await setup([{ name: 'a', closeMidStream: 1 }]);
    const res = await post(relay, { model: 'gpt-5.5', input: 'Say hello', stream: true });
    expect(res.status).toBe(200);
    const { data } = parseSse(await res.text());
    expect(data.some((e) => e.type === 'response.created')).toBe(true);
    expect(data.at(-1)).toMatchObject({ type: 'error', error: { code: 'upstream_error' } });
    expect(events).toContainEqual(expect.objectContaining({ type: 'turn', account: 'a', outcome: 'upstream_error' }));
  });
});

describe.runIf(codexAvailable())('Codex CLI over HTTP only (supports_websockets = false)', () => {
  it('completes a tool-call round trip through the relay', async () => {
    const { sim, relay } = await setup([
      { name: 'a', toolTrigger: 'use the tool', toolName: 'exec_command', toolArguments: JSON.stringify({ cmd: 'echo relay-tool-ok' }) },
    ]);
    const run = await runCodex({ port: relay.port, prompt: 'Please use the tool to check the relay.', supportsWebsockets: false });
    expect(run.timedOut).toBe(false);
    expect(run.code, run.stderr.slice(-2000)).toBe(0);
    const posts = httpRequests(sim);
    expect(sim.log.filter((r) => r.kind === 'ws_upgrade')).toEqual([]);
    expect(posts.length).toBeGreaterThanOrEqual(2);
    const followUp = posts.at(-1)!.body as { input: Array<Record<string, unknown>>; previous_response_id?: string };
    const output = followUp.input.find((i) => i.type === 'function_call_output');
    expect(output).toBeDefined();
    expect(String(output!.output)).toContain('relay-tool-ok');
    expect(followUp.input.some((i) => i.type === 'function_call' && i.name === 'exec_command')).toBe(true);
    expect(run.stdout).toContain('Tool said:');
    expect(run.stdout).toContain('relay-tool-ok');
  }, 120_000);
});
