// The simulated upstream speaks the Responses protocols the way CLIENTS.md captured them:
// warm-ups, per-socket chaining, store:true memory, SSE, function calls, cancel.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startSimUpstream, type SimUpstream } from '../../scripts/sim/upstream.js';
import { TEXT_TURN_EVENTS } from '../helpers/ws-client.js';
import { BETA, postSse, refusedUpgrade, types, userMessage, WsProbe, type Ev } from './sim-upstream-helpers.js';


let sim: SimUpstream;
const auth = (key: string): Record<string, string> => ({ authorization: `Bearer ${key}`, ...BETA });
const wsUrl = (): string => `${sim.url.replace('http', 'ws')}/v1/responses`;
const open = (key = 'sk-sim-a'): Promise<WsProbe> => WsProbe.open(wsUrl(), auth(key));

beforeEach(async () => {
  sim = await startSimUpstream({ accounts: [{ name: 'a' }, { name: 'b', key: 'key-b' }] });
});
afterEach(async () => {
  await sim.close();
});

describe('Responses WebSocket mode', () => {
  it('answers a generate:false warm-up, then a chained turn on the same socket with the full event sequence', async () => {
    const c = await open();
    const warm = await c.create({ generate: false, input: [{ type: 'message', role: 'developer', content: [] }] });
    expect(types(warm)).toEqual(['response.created', 'response.in_progress', 'response.completed']);
    const warmId = warm[2].response.id as string;
    expect(warmId).toMatch(/^resp_[0-9a-f]+$/);
    expect(warm[2].response.output).toEqual([]);

    const turn = await c.create({ previous_response_id: warmId, input: [userMessage('Say hello')] });
    expect(types(turn)).toEqual(TEXT_TURN_EVENTS);
    expect(turn.map((e) => e.sequence_number)).toEqual(turn.map((_, i) => i));
    const done = turn[turn.length - 1].response;
    expect(done.id).not.toBe(warmId);
    expect(done.previous_response_id).toBe(warmId);
    expect(done.usage.total_tokens).toBe(done.usage.input_tokens + done.usage.output_tokens);
    expect(turn.filter((e) => e.type === 'response.output_text.delta').map((e) => e.delta).join('')).toBe('Hello from a! (turn 1)');
    expect(turn[9].item).toMatchObject({ type: 'message', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text: 'Hello from a! (turn 1)' }] });
    // Every event leads with `type` so a relay may peek at it without parsing.
    expect(c.events.every((e) => Object.keys(e)[0] === 'type')).toBe(true);

    const a = sim.account('a');
    expect([a.upgrades, a.warmups, a.turns, a.inFlight, a.openSockets]).toEqual([1, 1, 1, 0, 1]);
    expect(sim.responseOwner(done.id)).toMatchObject({ account: 'a', transport: 'ws', store: false, status: 'completed' });
    c.close();
  });

  it('sends the pass-through headers on the 101 and logs the upgrade and frames by socket', async () => {
    const c = await WsProbe.open(wsUrl(), { ...auth('sk-sim-a'), 'Session-Id': 'thread-1', 'X-Codex-Window-Id': 'w:0' });
    for (const h of ['x-codex-turn-state', 'x-models-etag', 'openai-model', 'x-reasoning-included', 'x-request-id']) {
      expect(c.upgrade.headers[h], h).toBeTruthy();
    }
    await c.create({ input: 'hi' });
    const up = sim.log.find((r) => r.kind === 'ws_upgrade')!;
    expect(up).toMatchObject({ account: 'a', status: 101, url: '/v1/responses' });
    expect(up.headers['session-id']).toBe('thread-1');
    expect(up.headers['x-codex-window-id']).toBe('w:0');
    expect(up.headers.authorization).toBe('Bearer sk-sim-a');
    const frames = sim.framesBySocket();
    expect([...frames.keys()]).toEqual([up.socketId]);
    expect(frames.get(up.socketId)).toEqual([{ type: 'response.create', model: 'gpt-5.5', store: false, input: 'hi' }]);
    c.close();
  });

  it('with store:false resolves previous_response_id only on the socket that produced it', async () => {
    const c1 = await open();
    const first = await c1.create({ input: 'one' });
    const id = first[first.length - 1].response.id as string;
    const c2 = await open();
    const [err] = await c2.create({ previous_response_id: id, input: 'two' });
    expect(err).toEqual({
      type: 'error',
      status: 400,
      error: {
        type: 'invalid_request_error',
        code: 'previous_response_not_found',
        message: `Previous response with id '${id}' not found.`,
        param: 'previous_response_id',
      },
    });
    expect(types(await c1.create({ previous_response_id: id, input: 'two' })).at(-1)).toBe('response.completed');
    c1.close();
    c2.close();
  });

  it('keeps only the latest store:false response in the socket memory', async () => {
    const c = await open();
    const older = (await c.create({ input: 'one' })).at(-1)!.response.id as string;
    await c.create({ input: 'two' });
    const [err] = await c.create({ previous_response_id: older, input: 'three' });
    expect(err.error.code).toBe('previous_response_not_found');
    c.close();
  });

  it('with store:true remembers the id per account: any socket or HTTP request of that account resolves it', async () => {
    const c1 = await open();
    const id = (await c1.create({ store: true, input: 'one' })).at(-1)!.response.id as string;
    c1.close();
    const c2 = await open();
    expect((await c2.create({ previous_response_id: id, input: 'two' })).at(-1)!.type).toBe('response.completed');
    const http = await postSse(`${sim.url}/v1/responses`, 'sk-sim-a', { model: 'gpt-5.5', previous_response_id: id, input: 'x' });
    expect(http.status).toBe(200);
    const other = await WsProbe.open(wsUrl(), auth('key-b'));
    expect((await other.create({ previous_response_id: id, input: 'two' }))[0].error.code).toBe('previous_response_not_found');
    c2.close();
    other.close();
  });

  it('answers a trigger phrase with a function_call, then acknowledges the function_call_output', async () => {
    const c = await open();
    const call = await c.create({ input: [userMessage('Please use the tool now')] });
    expect(types(call)).toEqual([
      'response.created',
      'response.in_progress',
      'response.output_item.added',
      'response.function_call_arguments.delta',
      'response.function_call_arguments.done',
      'response.output_item.done',
      'response.completed',
    ]);
    const item = call[5].item;
    expect(item).toMatchObject({ type: 'function_call', name: 'get_goal', arguments: '{}', status: 'completed' });
    expect(item.call_id).toMatch(/^call_/);
    expect(item.id).toMatch(/^fc_/);
    const prev = call.at(-1)!.response.id as string;
    const reply = await c.create({
      previous_response_id: prev,
      input: [{ type: 'function_call_output', call_id: item.call_id, output: '{"goal":"ship"}' }],
    });
    expect(reply.find((e) => e.type === 'response.output_text.done')!.text).toBe('Tool said: {"goal":"ship"}');
    c.close();
  });

  it('lets a script decide the answer per request, including errors and failures', async () => {
    sim.account('a').set({
      script: (ctx) => {
        if (ctx.lastUserText === 'fail') return { type: 'failed', code: 'server_error', message: 'boom' };
        if (ctx.lastUserText === 'quota') return { type: 'error', status: 429, code: 'usage_limit_reached', errorType: 'usage_limit_reached' };
        if (ctx.lastUserText === 'call') return { type: 'function_call', name: 'exec_command', arguments: '{"cmd":"ls"}' };
        return undefined;
      },
    });
    const c = await open();
    const failed = await c.create({ input: 'fail' });
    expect(failed.at(-1)).toMatchObject({ type: 'response.failed', response: { status: 'failed', error: { code: 'server_error', message: 'boom' } } });
    expect((await c.create({ input: 'quota' }))[0]).toMatchObject({ type: 'error', status: 429, error: { code: 'usage_limit_reached' } });
    expect((await c.create({ input: 'call' })).find((e) => e.type === 'response.output_item.done')!.item.name).toBe('exec_command');
    expect((await c.create({ input: 'other' })).at(-1)!.type).toBe('response.completed');
    c.close();
  });

  it('cancels the in-flight response with a terminal response.incomplete (status cancelled)', async () => {
    sim.account('a').set({ deltaCount: 50, deltaIntervalMs: 20 });
    const c = await open();
    c.send({ type: 'response.create', model: 'gpt-5.5', input: 'long' });
    await c.next((e) => e.type === 'response.output_text.delta');
    c.send({ type: 'response.cancel' });
    const end = await c.next((e) => e.type === 'response.incomplete' || e.type === 'response.completed');
    expect(end).toMatchObject({ type: 'response.incomplete', response: { status: 'cancelled' } });
    expect(sim.account('a').inFlight).toBe(0);
    c.close();
  });

  it('refuses a second response.create while one is in flight, and finishes the first', async () => {
    sim.account('a').set({ ttftMs: 150 });
    const c = await open();
    c.send({ type: 'response.create', model: 'gpt-5.5', input: 'one' });
    c.send({ type: 'response.create', model: 'gpt-5.5', input: 'two' });
    const err = await c.next((e) => e.type === 'error');
    expect(err).toMatchObject({ status: 400, error: { code: 'response_already_in_flight' } });
    expect((await c.next((e) => e.type === 'response.completed')).response.status).toBe('completed');
    c.close();
  });

  it('answers bad frames with error frames and keeps the socket open', async () => {
    const c = await open();
    c.ws.send('not json');
    expect((await c.next()).error.code).toBe('invalid_json');
    c.send({ type: 'response.create', input: 'no model' });
    expect((await c.next()).error).toMatchObject({ code: 'missing_required_parameter', param: 'model' });
    c.ws.send(Buffer.from([1, 2, 3]));
    expect((await c.next()).error.code).toBe('invalid_frame');
    expect((await c.create({ input: 'still here' })).at(-1)!.type).toBe('response.completed');
    c.close();
  });

  it('adds sim_ts timestamps to events when asked', async () => {
    sim.account('a').set({ timestamps: true });
    const c = await open();
    const evs = await c.create({ input: 'x' });
    const ts = evs.map((e) => e.sim_ts as number);
    expect(ts.every((t) => typeof t === 'number')).toBe(true);
    expect([...ts].sort((x, y) => x - y)).toEqual(ts);
    c.close();
  });
});

describe('accounts and auth', () => {
  it('selects the account by path prefix, and requires that account key there', async () => {
    const base = sim.baseUrlFor('b').replace('http', 'ws');
    expect(base).toBe(`${sim.url.replace('http', 'ws')}/acct/b/v1`);
    const c = await WsProbe.open(`${base}/responses`, auth('key-b'));
    expect((await c.create({ input: 'x' })).find((e) => e.type === 'response.output_text.done')!.text).toBe('Hello from b! (turn 1)');
    c.close();
    const wrong = await refusedUpgrade(`${base}/responses`, auth('sk-sim-a'));
    expect(wrong.status).toBe(401);
    expect(wrong.body.error.code).toBe('invalid_api_key');
    expect(sim.log.at(-1)).toMatchObject({ kind: 'ws_upgrade', account: 'b', status: 401 });
  });

  it('refuses unknown keys with 401 and upgrades without the OpenAI-Beta header with 400', async () => {
    expect((await refusedUpgrade(wsUrl(), auth('nope'))).status).toBe(401);
    const noBeta = await refusedUpgrade(wsUrl(), { authorization: 'Bearer sk-sim-a' });
    expect(noBeta.status).toBe(400);
    sim.account('a').set({ requireBetaHeader: false });
    const c = await WsProbe.open(wsUrl(), { authorization: 'Bearer sk-sim-a' });
    c.close();
  });
});

describe('HTTP Responses', () => {
  it('streams SSE with event lines and the same sequence as WS when body.stream is true', async () => {
    const sse = await postSse(sim.baseUrlFor('a') + '/responses', 'sk-sim-a', { model: 'gpt-5.5', input: [userMessage('hello')] });
    expect(sse.status).toBe(200);
    expect(sse.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expect(sse.headers.get('x-codex-turn-state')).toBe('sim-turn-state-a');
    expect(sse.headers.get('openai-model')).toBe('gpt-5.5');
    expect(sse.blocks.map((b) => b.data.type)).toEqual(TEXT_TURN_EVENTS);
    expect(sse.blocks.every((b) => b.event === b.data.type)).toBe(true);
    const rec = sim.log.find((r) => r.kind === 'http_request')!;
    expect(rec).toMatchObject({ account: 'a', status: 200, url: '/acct/a/v1/responses' });
    expect((rec.body as Ev).input[0].content[0].text).toBe('hello');
  });

  it('returns the response object as JSON when stream is not true (even with accept: text/event-stream absent)', async () => {
    const res = await fetch(`${sim.url}/v1/responses`, {
      method: 'POST',
      headers: { authorization: 'Bearer key-b', 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify({ model: 'gpt-5.5', input: 'hi' }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-request-id')).toMatch(/^req_/);
    const body = (await res.json()) as Ev;
    expect(body).toMatchObject({ object: 'response', status: 'completed', store: true });
    expect(body.output[0].content[0].text).toBe('Hello from b! (turn 1)');
  });

  it('answers an unknown previous_response_id with a 400 JSON error', async () => {
    const res = await fetch(`${sim.url}/v1/responses`, {
      method: 'POST',
      headers: { authorization: 'Bearer sk-sim-a', 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-5.5', input: 'hi', previous_response_id: 'resp_missing', stream: true }),
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as Ev).error).toMatchObject({ code: 'previous_response_not_found', param: 'previous_response_id' });
  });
});
