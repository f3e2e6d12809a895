// The simulated upstream's per-account knobs: refusals, rate limits, drops, pacing, failures,
// concurrency counters, hangs and the socket age cap.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startSimUpstream, type SimUpstream } from '../../scripts/sim/upstream.js';
import { BETA, postSse, refusedUpgrade, types, until, WsProbe } from './sim-upstream-helpers.js';

let sim: SimUpstream;
const wsUrl = (): string => `${sim.url.replace('http', 'ws')}/v1/responses`;
const headers = { authorization: 'Bearer sk-sim-a', ...BETA };
const open = (): Promise<WsProbe> => WsProbe.open(wsUrl(), headers);
const post = (body: Record<string, unknown>): Promise<Response> =>
  fetch(`${sim.url}/v1/responses`, {
    method: 'POST',
    headers: { authorization: 'Bearer sk-sim-a', 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-5.5', input: 'x', ...body }),
  });

beforeEach(async () => {
  sim = await startSimUpstream({ accounts: [{ name: 'a' }] });
});
afterEach(async () => {
  await sim.close();
});

describe('rate limiting', () => {
  it('after N turns answers upgrades, HTTP and open sockets with 429 and reset headers', async () => {
    sim.account('a').set({ rateLimitAfterTurns: 2, retryAfterSeconds: 12 });
    const c = await open();
    await c.create({ generate: false });
    await c.create({ input: 'one' });
    await c.create({ input: 'two' });
    const [err] = await c.create({ input: 'three' });
    expect(err).toMatchObject({ type: 'error', status: 429, error: { type: 'rate_limit_error', code: 'rate_limit_exceeded' } });
    expect(err.headers).toMatchObject({ 'retry-after': '12', 'x-ratelimit-reset-requests': '12s' });

    const up = await refusedUpgrade(wsUrl(), headers);
    expect(up.status).toBe(429);
    expect(up.headers['retry-after']).toBe('12');
    expect(up.headers['x-ratelimit-reset-requests']).toBe('12s');
    expect(up.body.error.code).toBe('rate_limit_exceeded');

    const res = await post({});
    expect(res.status).toBe(429);
    expect(res.headers.get('retry-after')).toBe('12');
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('rate_limit_exceeded');

    sim.account('a').set({ rateLimitAfterTurns: null });
    expect((await c.create({ input: 'four' })).at(-1)!.type).toBe('response.completed');
    c.close();
  });
});

describe('refused upgrades and HTTP statuses', () => {
  it('wsSupported:false answers the upgrade with 426 and an OpenAI-style body, while HTTP still works', async () => {
    sim.account('a').set({ wsSupported: false });
    const r = await refusedUpgrade(wsUrl(), headers);
    expect(r.status).toBe(426);
    expect(r.body.error).toMatchObject({ type: 'invalid_request_error', code: 'websocket_not_supported' });
    expect(r.headers['x-request-id']).toMatch(/^req_/);
    expect((await post({})).status).toBe(200);
    expect(sim.account('a')).toMatchObject({ upgrades: 1, upgradesRefused: 1, openSockets: 0 });
  });

  it.each([404, 401, 500])('upgradeStatus %i refuses the upgrade with that status', async (status) => {
    sim.account('a').set({ upgradeStatus: status });
    const r = await refusedUpgrade(wsUrl(), headers);
    expect(r.status).toBe(status);
    expect(r.body.error.message).toBeTruthy();
    expect(sim.log.at(-1)).toMatchObject({ kind: 'ws_upgrade', status });
  });

  it('httpStatus answers POSTs with that status', async () => {
    sim.account('a').set({ httpStatus: 503 });
    const res = await post({ stream: true });
    expect(res.status).toBe(503);
    expect(((await res.json()) as { error: { type: string } }).error.type).toBe('server_error');
  });

  it('closeAfterUpgrade accepts, then closes with 1011 at once', async () => {
    sim.account('a').set({ closeAfterUpgrade: true });
    const c = await open();
    expect((await c.closed).code).toBe(1011);
  });
});

describe('stream failures', () => {
  it('closeMidStream drops the socket after K deltas (no close frame by default)', async () => {
    sim.account('a').set({ closeMidStream: 2, deltaCount: 5 });
    const c = await open();
    c.send({ type: 'response.create', model: 'gpt-5.5', input: 'x' });
    const { code } = await c.closed;
    expect(code).toBe(1006);
    expect(types(c.events).filter((t) => t === 'response.output_text.delta')).toHaveLength(2);
    expect(types(c.events)).not.toContain('response.completed');
    expect(sim.account('a').inFlight).toBe(0);
  });

  it('closeMidStreamCode closes with that code instead', async () => {
    sim.account('a').set({ closeMidStream: 1, closeMidStreamCode: 1011 });
    const c = await open();
    c.send({ type: 'response.create', model: 'gpt-5.5', input: 'x' });
    expect((await c.closed).code).toBe(1011);
  });

  it('closeMidStream destroys the SSE response after K deltas', async () => {
    sim.account('a').set({ closeMidStream: 1, deltaCount: 4 });
    const sse = await postSse(`${sim.url}/v1/responses`, 'sk-sim-a', { model: 'gpt-5.5', input: 'x' });
    expect(sse.broken).toBe(true);
    const seen = sse.blocks.map((b) => b.data.type);
    expect(seen.filter((t) => t === 'response.output_text.delta')).toHaveLength(1);
    expect(seen).not.toContain('response.completed');
  });

  it('errorRate 1 ends every turn with response.failed server_error; warm-ups still complete', async () => {
    sim.account('a').set({ errorRate: 1 });
    const c = await open();
    expect((await c.create({ generate: false })).at(-1)!.type).toBe('response.completed');
    const evs = await c.create({ input: 'x' });
    expect(types(evs)).toEqual(['response.created', 'response.in_progress', 'response.failed']);
    expect(evs[2].response.error.code).toBe('server_error');
    c.close();
  });

  it('errorRate failures are deterministic for a seed', async () => {
    const pattern = async (): Promise<string[]> => {
      const s = await startSimUpstream({ seed: 42, accounts: [{ name: 'a', errorRate: 0.5 }] });
      const out: string[] = [];
      for (let i = 0; i < 12; i++) {
        const res = await fetch(`${s.url}/v1/responses`, {
          method: 'POST',
          headers: { authorization: 'Bearer sk-sim-a', 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'gpt-5.5', input: 'x' }),
        });
        out.push(String(res.status));
        await res.arrayBuffer();
      }
      await s.close();
      return out;
    };
    const first = await pattern();
    expect(first).toContain('500');
    expect(first).toContain('200');
    expect(await pattern()).toEqual(first);
  });
});

describe('pacing and counters', () => {
  it('ttftMs delays the first output event after response.in_progress', async () => {
    sim.account('a').set({ ttftMs: 120, timestamps: true });
    const c = await open();
    const evs = await c.create({ input: 'x' });
    const inProgress = evs.find((e) => e.type === 'response.in_progress')!.sim_ts as number;
    const firstOutput = evs.find((e) => e.type === 'response.output_item.added')!.sim_ts as number;
    expect(firstOutput - inProgress).toBeGreaterThanOrEqual(110);
    c.close();
  });

  it('deltaCount and text shape the answer; knobs changed mid-test apply to the next turn', async () => {
    const c = await open();
    sim.account('a').set({ deltaCount: 7, text: 'abcdefghijklmn' });
    const evs = await c.create({ input: 'x' });
    const deltas = evs.filter((e) => e.type === 'response.output_text.delta');
    expect(deltas).toHaveLength(7);
    expect(deltas.map((e) => e.delta).join('')).toBe('abcdefghijklmn');
    sim.account('a').set({ text: 'changed', deltaCount: 1 });
    expect((await c.create({ input: 'x' })).find((e) => e.type === 'response.output_text.done')!.text).toBe('changed');
    c.close();
  });

  it('counts concurrent in-flight turns across sockets and HTTP, and the maximum ever seen', async () => {
    sim.account('a').set({ ttftMs: 200 });
    const sockets = await Promise.all([open(), open(), open()]);
    const turns = sockets.map((c) => c.create({ input: 'x' }));
    const http = post({ stream: true }).then((r) => r.text());
    await until(() => sim.account('a').inFlight === 4);
    await Promise.all([...turns, http]);
    const a = sim.account('a');
    expect([a.inFlight, a.maxConcurrent, a.turns, a.openSockets]).toEqual([0, 4, 4, 3]);
    for (const c of sockets) c.close();
    await until(() => sim.account('a').openSockets === 0);
  });

  it('hang accepts and never answers; the turn stays in flight until the socket goes', async () => {
    sim.account('a').set({ hang: true });
    const c = await open();
    c.send({ type: 'response.create', model: 'gpt-5.5', input: 'x' });
    await sim.waitForLog((r) => r.kind === 'ws_frame');
    await new Promise((r) => setTimeout(r, 150));
    expect(c.events).toEqual([]);
    expect(sim.account('a').inFlight).toBe(1);
    c.ws.terminate();
    await sim.waitForLog((r) => r.kind === 'ws_close');
    expect(sim.account('a').inFlight).toBe(0);
  });

  it('maxSocketAgeMs sends websocket_connection_limit_reached, then closes 1000', async () => {
    sim.account('a').set({ maxSocketAgeMs: 100 });
    const c = await open();
    const err = await c.next((e) => e.type === 'error');
    expect(err.error.code).toBe('websocket_connection_limit_reached');
    expect((await c.closed).code).toBe(1000);
  });

  it('dropSocket, inject and close() act on live sockets promptly', async () => {
    const c1 = await open();
    const c2 = await open();
    const [id1, id2] = sim.liveSockets('a');
    sim.inject(id1, { type: 'response.queued', sequence_number: 0 });
    expect((await c1.next()).type).toBe('response.queued');
    sim.dropSocket(id1, 1001);
    expect((await c1.closed).code).toBe(1001);
    await sim.waitForLog((r) => r.kind === 'ws_close' && r.socketId === id1);
    expect(sim.liveSockets()).toEqual([id2]);
    const started = Date.now();
    await sim.close();
    expect((await c2.closed).code).toBe(1006);
    expect(Date.now() - started).toBeLessThan(1000);
    sim = await startSimUpstream({ accounts: [{ name: 'a' }] });
  });
});
