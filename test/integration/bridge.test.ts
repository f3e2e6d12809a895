// The WebSocket → HTTP/SSE fallback bridge (SPEC §4, §6) with real clients: a raw `ws` client,
// the openai SDK's ResponsesWS, and the Codex CLI in WebSocket mode.
import { afterEach, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import { ResponsesWS } from 'openai/resources/responses/ws';
import { startSimUpstream, type SimAccountInit, type SimLogRecord, type SimUpstream } from '../../scripts/sim/upstream.js';
import type { RelayEvent } from '../../src/observability/events.js';
import { eventually, heldInStore } from '../helpers/pool.js';
import { startRelay, type TestRelay } from '../helpers/relay.js';
import { TestWsClient, TEXT_TURN_EVENTS } from '../helpers/ws-client.js';
import { codexAvailable, DEFAULT_CODEX_KEY, runCodex } from '../helpers/codex.js';

const KEY = 'sk-sy-bridge-client';
let sim: SimUpstream | null = null;
let relay: TestRelay | null = null;
let events: RelayEvent[] = [];
const clients: TestWsClient[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.ws.terminate();
  await relay?.stop();
  await sim?.close();
  relay = null;
  sim = null;
});

type AccountSpec = SimAccountInit & { transport?: 'auto' | 'http' };

async function setup(accounts: AccountSpec[], extra: Record<string, unknown> = {}): Promise<{ sim: SimUpstream; relay: TestRelay }> {
  sim = await startSimUpstream({ accounts: accounts.map(({ transport: _t, ...a }) => a) });
  const s = sim;
  relay = await startRelay({
    clients: [{ key: KEY }, { key: DEFAULT_CODEX_KEY }],
    accounts: accounts.map((a, i) => ({ id: a.name, baseUrl: s.baseUrlFor(a.name), apiKey: `sk-sim-${a.name}`, priority: i + 1, transport: a.transport ?? 'http' })),
    ...extra,
  });
  events = [];
  relay.app.bus.on((e) => events.push(e));
  return { sim, relay };
}

function connect(r: TestRelay, headers: Record<string, string> = {}): TestWsClient {
  const c = new TestWsClient(r.wsUrl, { key: KEY, headers });
  clients.push(c);
  return c;
}

const posts = (s: SimUpstream): SimLogRecord[] => s.log.filter((r) => r.kind === 'http_request');
const fallbacks = () => events.filter((e) => e.type === 'transport_fallback').map((e) => (e as { reason: string }).reason);
const selects = () => events.filter((e) => e.type === 'select').map((e) => (e as { result: string }).result);
const userMsg = (text: string) => ({ type: 'message', role: 'user', content: [{ type: 'input_text', text }] });
const developerMsg = { type: 'message', id: 'msg_dev1', role: 'developer', content: [{ type: 'input_text', text: 'You are a test agent.' }] };

/** Runs one SDK ResponsesWS turn: resolves with its events up to the terminal one. */
function sdkTurn(rws: ResponsesWS, frame: Record<string, unknown>): Promise<Array<Record<string, any>>> {
  return new Promise((resolve, reject) => {
    const got: Array<Record<string, any>> = [];
    const onEvent = (e: Record<string, any>) => {
      got.push(e);
      if (['response.completed', 'response.failed', 'response.incomplete', 'error'].includes(e.type)) {
        rws.off('event', onEvent as never);
        resolve(got);
      }
    };
    rws.on('event', onEvent as never);
    setTimeout(() => reject(new Error('SDK turn timed out')), 10_000).unref();
    rws.send(frame as never);
  });
}

describe('bridge with the openai SDK ResponsesWS', () => {
  it('runs two chained store:false turns over HTTP/SSE when every account is transport http', async () => {
    const { sim, relay } = await setup([{ name: 'a' }, { name: 'b' }]);
    const rws = new ResponsesWS(new OpenAI({ apiKey: KEY, baseURL: `${relay.url}/v1` }));
    const errors: unknown[] = [];
    rws.on('error', (e) => errors.push(e));
    const t1 = await sdkTurn(rws, { type: 'response.create', model: 'gpt-5.5', input: 'Say hello', store: false });
    expect(t1.map((e) => e.type)).toEqual(TEXT_TURN_EVENTS);
    const id1 = t1.at(-1)!.response.id as string;
    const answer1 = t1.find((e) => e.type === 'response.output_text.done')!.text as string;
    const t2 = await sdkTurn(rws, { type: 'response.create', model: 'gpt-5.5', previous_response_id: id1, input: [userMsg('Again')], store: false });
    expect(t2.at(-1)!.type).toBe('response.completed');
    rws.close({ code: 1000, reason: 'done' });
    expect(errors).toEqual([]);

    const [p1, p2] = posts(sim);
    expect(sim.log.filter((r) => r.kind === 'ws_upgrade')).toEqual([]);
    expect(p1.body).toMatchObject({ model: 'gpt-5.5', stream: true, store: false, input: [userMsg('Say hello')] });
    expect(p1.body).not.toHaveProperty('type');
    // The chained turn became a full-history request: no previous_response_id, whole transcript.
    const body2 = p2.body as Record<string, any>;
    expect(body2).not.toHaveProperty('previous_response_id');
    expect(body2.stream).toBe(true);
    expect(body2.input).toEqual([
      userMsg('Say hello'),
      { type: 'message', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text: answer1, annotations: [], logprobs: [] }] },
      userMsg('Again'),
    ]);
    expect(fallbacks()).toEqual(['no_ws_account', 'chained_bridge']);
    const metrics = await (await fetch(`${relay.url}/metrics`)).text();
    expect(metrics).toMatch(/switchyard_transport_fallback_total\{reason="no_ws_account"\} 1/);
    expect(metrics).toMatch(/switchyard_transport_fallback_total\{reason="chained_bridge"\} 1/);
    // Each bridged turn is one acquired select: the WebSocket select that found no account is the
    // bridge's cue, not a failed turn, so it counts no select error.
    expect(selects()).toEqual(['acquired', 'acquired']);
    expect(metrics).not.toMatch(/switchyard_scheduler_select_total\{[^}]*result="error"[^}]*\} [1-9]/);
    expect(relay.logs.join('\n')).not.toMatch(/sk-sim-[ab]|sk-sy-bridge-client/);
  });
});

describe('bridge with a raw WebSocket client', () => {
  it('answers a generate:false warm-up itself and replays it in the chained turn', async () => {
    const { sim, relay } = await setup([{ name: 'a', text: 'bridged answer' }]);
    const c = connect(relay, { 'session-id': 'sess-w', 'x-codex-window-id': 'sess-w:0' });
    await c.opened;
    c.send({ type: 'response.create', model: 'gpt-5.5', generate: false, store: false, stream: true, input: [developerMsg], tools: [] });
    const warm = await c.readTurn();
    expect(warm.events.map((e) => e.type)).toEqual(['response.created', 'response.completed']);
    expect(warm.responseId).toMatch(/^resp_[0-9a-f]{48}$/);
    expect(sim.log).toEqual([]);

    c.send({ type: 'response.create', model: 'gpt-5.5', previous_response_id: warm.responseId, store: false, stream: true, input: [userMsg('Say hello')] });
    const turn = await c.readTurn();
    expect(turn.terminal.type).toBe('response.completed');
    expect(turn.text).toBe('bridged answer');
    const [p] = posts(sim);
    const body = p.body as Record<string, any>;
    expect(body).not.toHaveProperty('previous_response_id');
    expect(body).not.toHaveProperty('generate');
    expect(body).not.toHaveProperty('type');
    // Item ids are dropped: nothing was persisted under them (store:false).
    expect(body.input).toEqual([{ type: 'message', role: 'developer', content: developerMsg.content }, userMsg('Say hello')]);
    expect(p.headers['session-id']).toBe('sess-w');
    expect(p.headers['x-codex-window-id']).toBe('sess-w:0');
    expect(p.headers.authorization).toBe('Bearer sk-sim-a');
    expect(fallbacks()).toEqual(['no_ws_account', 'chained_bridge']);
    const turnLog = relay.logs.map((l) => JSON.parse(l)).filter((l) => l.event === 'turn' && l.bridged);
    expect(turnLog.map((l) => [l.local ?? false, l.expanded ?? null])).toEqual([
      [true, null],
      [false, true],
    ]);
  });

  it('passes previous_response_id through to the owning account for store:true', async () => {
    const { sim, relay } = await setup([{ name: 'a' }, { name: 'b' }]);
    const c = connect(relay);
    await c.opened;
    c.send({ type: 'response.create', model: 'gpt-5.5', store: true, input: [userMsg('Remember this')] });
    const t1 = await c.readTurn();
    const owner = sim.responseOwner(t1.responseId!)!.account;
    c.send({ type: 'response.create', model: 'gpt-5.5', store: true, previous_response_id: t1.responseId, input: [userMsg('And now?')] });
    const t2 = await c.readTurn();
    expect(t2.terminal.type).toBe('response.completed');
    const p2 = posts(sim)[1];
    expect(p2.account).toBe(owner);
    expect((p2.body as Record<string, any>).previous_response_id).toBe(t1.responseId);
    expect((p2.body as Record<string, any>).input).toEqual([userMsg('And now?')]);
  });

  it('forgets the oldest responses past maxTranscriptBytes: a chain through them is not found', async () => {
    const { sim, relay } = await setup([{ name: 'a' }], { websocket: { maxTranscriptBytes: 3000 } });
    const c = connect(relay);
    await c.opened;
    c.send({ type: 'response.create', model: 'gpt-5.5', store: false, input: [userMsg('x'.repeat(2000))] });
    const t1 = await c.readTurn();
    c.send({ type: 'response.create', model: 'gpt-5.5', store: false, previous_response_id: t1.responseId, input: [userMsg('y'.repeat(2000))] });
    const t2 = await c.readTurn();
    expect(t2.terminal.type).toBe('response.completed');
    c.send({ type: 'response.create', model: 'gpt-5.5', store: false, previous_response_id: t2.responseId, input: [userMsg('z')] });
    const t3 = await c.readTurn();
    expect(t3.terminal).toMatchObject({ type: 'error', status: 400, error: { code: 'previous_response_not_found' } });
    expect(posts(sim)).toHaveLength(2);
    // The session stays usable: Codex replays the full history without the id.
    c.send({ type: 'response.create', model: 'gpt-5.5', store: false, input: [userMsg('full history')] });
    expect((await c.readTurn()).terminal.type).toBe('response.completed');
  });

  it('decides per turn: once the WebSocket account recovers, unchained turns use it again', async () => {
    const { sim, relay } = await setup([{ name: 'w', transport: 'auto', upgradeStatus: 500 }, { name: 'h' }], {
      scheduler: { cooldown: { serverErrorMs: 300 } },
    });
    const c = connect(relay);
    await c.opened;
    c.send({ type: 'response.create', model: 'gpt-5.5', store: false, input: [userMsg('first')] });
    const t1 = await c.readTurn();
    expect(t1.terminal.type).toBe('response.completed');
    expect(posts(sim).map((p) => p.account)).toEqual(['h']);
    sim.account('w').set({ upgradeStatus: null });
    await new Promise((r) => setTimeout(r, 400));
    c.send({ type: 'response.create', model: 'gpt-5.5', store: false, input: [userMsg('second')] });
    const t2 = await c.readTurn();
    expect(t2.terminal.type).toBe('response.completed');
    expect(sim.responseOwner(t2.responseId!)).toMatchObject({ account: 'w', transport: 'ws' });
    expect(fallbacks()).toEqual(['no_ws_account']);
  });

  it('response.cancel during a bridged turn drops the HTTP request and ends the turn as cancelled; the chain goes on', async () => {
    const { sim, relay } = await setup([{ name: 'a', deltaCount: 100, deltaIntervalMs: 20 }]);
    const c = connect(relay);
    await c.opened;
    c.send({ type: 'response.create', model: 'gpt-5.5', store: false, input: [userMsg('long one')] });
    const created = await c.next();
    expect(created?.type).toBe('response.created');
    const id = (created!.response as { id: string }).id;
    await c.next();
    c.send({ type: 'response.cancel' });
    const r = await c.readTurn();
    expect(r.terminal).toMatchObject({ type: 'response.incomplete', response: { id, status: 'cancelled', model: 'gpt-5.5' } });
    // Far fewer than the 100 deltas: the upstream stream was dropped, not read to its end.
    expect(r.events.filter((e) => e.type === 'response.output_text.delta').length).toBeLessThan(50);
    expect(events.filter((e) => e.type === 'turn').map((e) => (e as { outcome: string }).outcome)).toEqual(['cancelled']);
    await eventually(async () => (await heldInStore(relay)).slots === 0);

    // The cancelled response chains like an incomplete one: the next turn replays it.
    c.send({ type: 'response.create', model: 'gpt-5.5', store: false, previous_response_id: id, input: [userMsg('next')] });
    const t2 = await c.readTurn();
    expect(t2.terminal.type).toBe('response.completed');
    const body2 = posts(sim)[1].body as Record<string, any>;
    expect(body2).not.toHaveProperty('previous_response_id');
    expect(body2.input[0]).toEqual(userMsg('long one'));
    expect(body2.input.at(-1)).toEqual(userMsg('next'));
    // With nothing in flight the relay answers itself; no HTTP request is made.
    c.send({ type: 'response.cancel' });
    expect((await c.next())?.error).toMatchObject({ code: 'response_cancel_not_active' });
    expect(posts(sim)).toHaveLength(2);
  });

  it('with httpFallback: false a turn no WebSocket account can serve gets an error frame and close 1013', async () => {
    const { sim, relay } = await setup([{ name: 'a' }], { websocket: { httpFallback: false } });
    const c = connect(relay);
    await c.opened;
    c.send({ type: 'response.create', model: 'gpt-5.5', store: false, input: [userMsg('hi')] });
    const err = await c.next();
    expect(err).toMatchObject({ type: 'error', error: { code: 'websocket_unavailable' } });
    expect((await c.closed).code).toBe(1013);
    expect(sim.log).toEqual([]);
    expect(fallbacks()).toEqual([]);
    // Without the bridge the refusal is the turn's end: a select error.
    expect(selects()).toEqual(['error']);
  });

  it('with websocket.enabled: false the upgrade is answered 426', async () => {
    const { relay } = await setup([{ name: 'a', transport: 'auto' }], { websocket: { enabled: false } });
    const c = connect(relay);
    await expect(c.opened).rejects.toThrow(/426/);
    expect(c.refusedStatus).toBe(426);
  });

  it('a bridged turn whose accounts all fail gets an error frame and close 1013', async () => {
    const { relay } = await setup([{ name: 'a', httpStatus: 503 }, { name: 'b', httpStatus: 503 }]);
    const c = connect(relay);
    await c.opened;
    c.send({ type: 'response.create', model: 'gpt-5.5', store: false, input: [userMsg('hi')] });
    const err = await c.next();
    expect(err).toMatchObject({ type: 'error', status: 502, error: { code: 'upstream_unavailable' } });
    expect(String((err!.error as { message: string }).message)).toContain('503');
    expect((await c.closed).code).toBe(1013);
    expect(events.filter((e) => e.type === 'switch')).toHaveLength(1);
  });
});

describe.runIf(codexAvailable())('Codex CLI in WebSocket mode', () => {
  const toolAccount = (name: string): AccountSpec => ({
    name,
    toolName: 'exec_command',
    toolArguments: JSON.stringify({ cmd: 'echo relay-tool-ok' }),
  });

  it('works through the bridge when every account is transport http: warm-up local, chained turns expanded', async () => {
    const { sim, relay } = await setup([toolAccount('a')]);
    const run = await runCodex({ port: relay.port, prompt: 'Please use the tool to check the relay.', supportsWebsockets: true });
    expect(run.timedOut).toBe(false);
    expect(run.code, run.stderr.slice(-2000)).toBe(0);
    expect(run.stdout).toContain('Tool said:');
    const p = posts(sim);
    expect(p.length).toBeGreaterThanOrEqual(2);
    for (const rec of p) {
      expect(rec.body).not.toHaveProperty('previous_response_id');
      expect(rec.body).not.toHaveProperty('generate');
    }
    // The follow-up carries the whole history: the warm-up's developer message, the user turn,
    // the function call and its output.
    const last = (p.at(-1)!.body as { input: Array<Record<string, any>> }).input;
    expect(last[0]).toMatchObject({ type: 'message', role: 'developer' });
    expect(last.some((i) => i.type === 'message' && i.role === 'user' && JSON.stringify(i.content).includes('use the tool'))).toBe(true);
    expect(last.some((i) => i.type === 'function_call' && i.name === 'exec_command')).toBe(true);
    expect(last.find((i) => i.type === 'function_call_output')?.output).toContain('relay-tool-ok');
    expect(fallbacks()[0]).toBe('no_ws_account');
    expect(fallbacks()).toContain('chained_bridge');
    const metrics = await (await fetch(`${relay.url}/metrics`)).text();
    expect(metrics).toMatch(/switchyard_transport_fallback_total\{reason="chained_bridge"\} [1-9]/);
    const warmups = relay.logs.map((l) => JSON.parse(l)).filter((l) => l.event === 'turn' && l.bridged && l.local);
    expect(warmups.length).toBeGreaterThanOrEqual(1);
  }, 120_000);

  it('with httpFallback: false gets close 1013 and falls back to HTTP by itself', async () => {
    const { sim, relay } = await setup([{ name: 'a', text: 'answer after fallback' }], { websocket: { httpFallback: false } });
    const run = await runCodex({ port: relay.port, prompt: 'Say hello', supportsWebsockets: true });
    expect(run.timedOut).toBe(false);
    expect(run.code, run.stderr.slice(-2000)).toBe(0);
    expect(run.stdout).toContain('answer after fallback');
    expect(posts(sim).length).toBeGreaterThanOrEqual(1);
    expect(relay.logs.some((l) => l.includes('"reason":"no_compatible_account"'))).toBe(true);
    expect(fallbacks()).toEqual([]);
  }, 120_000);

  it('with websocket.enabled: false gets 426 on the upgrade and switches to HTTP at once', async () => {
    const { sim, relay } = await setup([{ name: 'a', transport: 'auto', text: 'answer over http' }], { websocket: { enabled: false } });
    const run = await runCodex({ port: relay.port, prompt: 'Say hello', supportsWebsockets: true });
    expect(run.code, run.stderr.slice(-2000)).toBe(0);
    expect(run.stdout).toContain('answer over http');
    expect(posts(sim).length).toBeGreaterThanOrEqual(1);
    expect(sim.log.filter((r) => r.kind === 'ws_upgrade')).toEqual([]);
  }, 120_000);
});
