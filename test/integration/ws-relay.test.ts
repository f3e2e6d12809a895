// The Responses WebSocket path end to end: real `ws` clients → relay → simulated upstream, all on
// 127.0.0.1 port 0. Issue 4's acceptance list, except the real-client (Codex/SDK) tests.
import { afterEach, describe, expect, it } from 'vitest';
import { startSimUpstream, type SimUpstream, type SimAccountInit } from '../../scripts/sim/upstream.js';
import { eventually, heldInStore } from '../helpers/pool.js';
import { startRelay, type TestRelay } from '../helpers/relay.js';
import { MemoryStore } from '../../src/state/memory-store.js';
import { connect, TestWsClient, userMessage } from '../helpers/ws-client.js';

const KEY = 'sk-sy-test-client';
let sim: SimUpstream | null = null;
let relay: TestRelay | null = null;

afterEach(async () => {
  await relay?.stop();
  await sim?.close();
  relay = null;
  sim = null;
});

async function setup(
  accounts: Array<SimAccountInit & { relay?: Record<string, unknown> }>,
  relayOverrides: Record<string, unknown> = {},
): Promise<{ sim: SimUpstream; relay: TestRelay }> {
  sim = await startSimUpstream({ accounts: accounts.map(({ relay: _r, ...a }) => a) });
  const s = sim;
  relay = await startRelay({
    clients: [{ key: KEY, group: 'default' }],
    accounts: accounts.map((a) => ({
      id: a.name,
      baseUrl: s.baseUrlFor(a.name),
      apiKey: a.key ?? `sk-sim-${a.name}`,
      concurrency: 4,
      ...(a.relay ?? {}),
    })),
    ...relayOverrides,
  });
  return { sim: s, relay };
}

describe('WebSocket relay: turns, chaining and pinning', () => {
  it('forwards a warm-up and a chained turn on one upstream socket, events unchanged and in order', async () => {
    const { sim, relay } = await setup([{ name: 'a' }]);
    const c = await connect(relay.wsUrl, { key: KEY, headers: { 'session-id': 'sess-1', 'thread-id': 'sess-1', originator: 'codex_exec' } });
    const warm = await c.turn({ model: 'gpt-5.5', generate: false, store: false, stream: true, input: userMessage('instructions') });
    expect(warm.events.map((e) => e.type)).toEqual(['response.created', 'response.in_progress', 'response.completed']);
    const t = await c.turn({ model: 'gpt-5.5', store: false, previous_response_id: warm.responseId, input: userMessage('Say hello') });
    expect(t.terminal.type).toBe('response.completed');
    expect(t.text).toContain('Hello from a');
    const seq = t.events.map((e) => e.sequence_number);
    expect(seq).toEqual([...seq].sort((x, y) => Number(x) - Number(y)));
    const upgrades = sim.log.filter((r) => r.kind === 'ws_upgrade' && r.status === 101);
    expect(upgrades).toHaveLength(1);
    expect(upgrades[0].headers['openai-beta']).toBe('responses_websockets=2026-02-06');
    expect(upgrades[0].headers.authorization).toBe('Bearer sk-sim-a');
    expect(upgrades[0].headers['session-id']).toBe('sess-1');
    expect(upgrades[0].headers.originator).toBe('codex_exec');
    const frames = sim.framesBySocket().get(upgrades[0].socketId) ?? [];
    expect(frames).toHaveLength(2);
    expect((frames[0] as Record<string, unknown>).generate).toBe(false);
    expect((frames[1] as Record<string, unknown>).previous_response_id).toBe(warm.responseId);
    c.close();
    await eventually(async () => (await heldInStore(relay)).slots === 0 && sim.account('a').openSockets === 0);
  });

  it('50 concurrent sessions × 5 chained turns over 3 accounts: every turn ends, chains stay on their socket, no slot leaks', async () => {
    const { sim, relay } = await setup([{ name: 'a' }, { name: 'b' }, { name: 'c' }].map((a) => ({ ...a, deltaCount: 5, relay: { concurrency: 20 } })));
    const results = await Promise.all(
      Array.from({ length: 50 }, async (_, i) => {
        const c = await connect(relay.wsUrl, { key: KEY, headers: { 'session-id': `load-${i}` } });
        let prev: string | null = null;
        const ids: string[] = [];
        for (let turn = 0; turn < 5; turn++) {
          const r = await c.turn({ model: 'gpt-5.5', store: false, previous_response_id: prev ?? undefined, input: userMessage(`turn ${turn}`) });
          expect(r.terminal.type).toBe('response.completed');
          prev = r.responseId;
          ids.push(r.responseId!);
        }
        c.close();
        return ids;
      }),
    );
    // Each chain's responses were all produced by one upstream socket.
    for (const ids of results) {
      const sockets = new Set(ids.map((id) => sim.responseOwner(id)?.socketId));
      expect(sockets.size).toBe(1);
    }
    const used = ['a', 'b', 'c'].filter((n) => sim.account(n).turns > 0);
    expect(used.length).toBeGreaterThanOrEqual(2);
    expect(sim.log.some((r) => r.kind === 'ws_frame' && (r.frame as { error?: unknown })?.error)).toBe(false);
    await eventually(async () => (await heldInStore(relay)).slots === 0);
  }, 60_000);

  it('a new socket with the same session-id lands on the same account', async () => {
    const { sim, relay } = await setup([{ name: 'a' }, { name: 'b' }, { name: 'c' }]);
    const first = await connect(relay.wsUrl, { key: KEY, headers: { 'session-id': 'sticky-1' } });
    const r1 = await first.turn({ model: 'm', store: false, input: userMessage('hi') });
    const owner = sim.responseOwner(r1.responseId!)!.account;
    first.close();
    for (let i = 0; i < 3; i++) {
      const again = await connect(relay.wsUrl, { key: KEY, headers: { 'session-id': 'sticky-1' } });
      const r = await again.turn({ model: 'm', store: false, input: userMessage('hi again') });
      expect(sim.responseOwner(r.responseId!)!.account).toBe(owner);
      again.close();
    }
  });

  it('routes a store:true previous_response_id from another socket to the owning account', async () => {
    const { sim, relay } = await setup([{ name: 'a' }, { name: 'b' }, { name: 'c' }]);
    const c1 = await connect(relay.wsUrl, { key: KEY });
    const r1 = await c1.turn({ model: 'm', store: true, input: userMessage('remember me') });
    const owner = sim.responseOwner(r1.responseId!)!.account;
    c1.close();
    for (let i = 0; i < 4; i++) {
      const c2 = await connect(relay.wsUrl, { key: KEY, headers: { 'session-id': `other-${i}` } });
      const r2 = await c2.turn({ model: 'm', store: true, previous_response_id: r1.responseId, input: userMessage('and now?') });
      expect(r2.terminal.type).toBe('response.completed');
      expect(sim.responseOwner(r2.responseId!)!.account).toBe(owner);
      c2.close();
    }
  });

  it('binds a stored response to its account; a store:false one, which lives on its upstream socket alone, is not bound', async () => {
    const { sim, relay } = await setup([{ name: 'a' }, { name: 'b' }]);
    const group = relay.app.config().clients[0].group;
    const c = await connect(relay.wsUrl, { key: KEY });
    const unstored = await c.turn({ model: 'm', store: false, input: userMessage('not kept') });
    const chained = await c.turn({ model: 'm', store: false, previous_response_id: unstored.responseId, input: userMessage('still not kept') });
    const stored = await c.turn({ model: 'm', store: true, input: userMessage('kept') });
    const owner = sim.responseOwner(stored.responseId!)!.account;
    await eventually(async () => (await relay.app.store.getResponseBinding(group, stored.responseId!)) === owner, 2000, 'stored response bound');
    expect(await relay.app.store.getResponseBinding(group, unstored.responseId!)).toBeNull();
    expect(await relay.app.store.getResponseBinding(group, chained.responseId!)).toBeNull();
    c.close();
  });

  it('every log line of a session names it: session_start, each turn and session_end carry one session id', async () => {
    const { relay } = await setup([{ name: 'a' }]);
    const c = await connect(relay.wsUrl, { key: KEY });
    const first = await c.turn({ model: 'm', store: false, input: userMessage('one') });
    await c.turn({ model: 'm', store: false, previous_response_id: first.responseId, input: userMessage('two') });
    c.close();
    const lines = () => relay.logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((r) => ['session_start', 'turn', 'session_end'].includes(String(r.event)));
    await eventually(() => lines().some((r) => r.event === 'session_end'), 2000, 'session_end logged');
    const ids = new Set(lines().map((r) => r.session));
    expect(lines().map((r) => r.event)).toEqual(['session_start', 'turn', 'turn', 'session_end']);
    expect(ids.size).toBe(1);
    expect(typeof [...ids][0]).toBe('string');
  });

  it('never opens a WebSocket to an account with transport: http', async () => {
    const { sim, relay } = await setup([{ name: 'ws1' }, { name: 'httponly', relay: { transport: 'http', priority: 0 } }]);
    for (let i = 0; i < 8; i++) {
      const c = await connect(relay.wsUrl, { key: KEY, headers: { 'session-id': `t-${i}` } });
      await c.turn({ model: 'm', store: false, input: userMessage('x') });
      c.close();
    }
    expect(sim.account('httponly').upgrades).toBe(0);
    expect(sim.account('ws1').turns).toBe(8);
  });

  it('accepts the next response.create the instant response.completed arrives, even when releasing the slot is slow', async () => {
    sim = await startSimUpstream({ accounts: [{ name: 'a' }] });
    // A store whose release takes as long as a slow Redis round trip.
    class SlowReleaseStore extends MemoryStore {
      override async releaseSlot(accountId: string, leaseId: string): Promise<void> {
        await new Promise((r) => setTimeout(r, 50));
        return super.releaseSlot(accountId, leaseId);
      }
    }
    relay = await startRelay(
      { clients: [{ key: KEY }], accounts: [{ id: 'a', baseUrl: sim.baseUrlFor('a'), apiKey: 'sk-sim-a', concurrency: 1 }] },
      { store: new SlowReleaseStore({}) },
    );
    const c = await connect(relay.wsUrl, { key: KEY });
    let prev: string | null = null;
    for (let i = 0; i < 5; i++) {
      const r = await c.turn({ model: 'm', store: false, previous_response_id: prev ?? undefined, input: userMessage(`turn ${i}`) });
      expect(r.terminal.type, JSON.stringify(r.terminal)).toBe('response.completed');
      prev = r.responseId;
    }
    await eventually(async () => (await heldInStore(relay!)).slots === 0);
  });

  it('passes response.cancel through to the upstream socket', async () => {
    const { sim, relay } = await setup([{ name: 'a', deltaCount: 50, deltaIntervalMs: 20 }]);
    const c = await connect(relay.wsUrl, { key: KEY });
    c.send({ type: 'response.create', model: 'm', store: false, input: userMessage('long') });
    expect((await c.next())?.type).toBe('response.created');
    c.send({ type: 'response.cancel' });
    const r = await c.readTurn();
    expect(['response.cancelled', 'response.incomplete', 'response.completed']).toContain(r.terminal.type);
    expect(sim.log.some((x) => x.kind === 'ws_frame' && (x.frame as { type?: string }).type === 'response.cancel')).toBe(true);
    await eventually(async () => (await heldInStore(relay)).slots === 0);
  });

  it('answers response.cancel with nothing in flight itself (response_cancel_not_active), and the session goes on', async () => {
    const { sim, relay } = await setup([{ name: 'a' }]);
    const c = await connect(relay.wsUrl, { key: KEY });
    // Before any turn (no upstream socket yet) and between turns (one open): the same answer.
    c.send({ type: 'response.cancel' });
    expect(await c.next()).toEqual({
      type: 'error',
      status: 400,
      error: { type: 'invalid_request_error', code: 'response_cancel_not_active', message: 'Cancellation failed: no active response found.' },
    });
    const t1 = await c.turn({ model: 'm', store: false, input: userMessage('one') });
    c.send({ type: 'response.cancel' });
    expect((await c.next())?.error).toMatchObject({ code: 'response_cancel_not_active' });
    const t2 = await c.turn({ model: 'm', store: false, previous_response_id: t1.responseId ?? undefined, input: userMessage('two') });
    expect(t2.terminal.type).toBe('response.completed');
    expect(sim.log.filter((x) => x.kind === 'ws_frame' && (x.frame as { type?: string }).type === 'response.cancel')).toEqual([]);
    c.close();
  });

  it('a cancel that comes while the turn waits for a slot follows the turn frame upstream', async () => {
    const { sim, relay } = await setup([{ name: 'a', deltaCount: 40, deltaIntervalMs: 10, relay: { concurrency: 1 } }]);
    const { busy, c } = await queueBehindHeldSlot(relay);
    c.send({ type: 'response.cancel' });
    const held = await busy.readTurn();
    expect(held.terminal.type).toBe('response.completed');
    const r = await c.readTurn();
    expect(r.terminal.type).toBe('response.incomplete');
    expect((r.terminal.response as { status?: string }).status).toBe('cancelled');
    const sockets = sim.framesBySocket();
    const types = [...sockets.values()].map((fs) => fs.map((f) => (f as { type?: string }).type));
    expect(types).toContainEqual(['response.create', 'response.cancel']);
    await eventually(async () => (await heldInStore(relay)).slots === 0);
    busy.close();
    c.close();
  });

  it('a client that goes while its turn waits for a slot leaves the queue at once, not when the slot frees', async () => {
    // The held turn streams for about 6 s; the queue wait would last until then.
    const { relay } = await setup([{ name: 'a', deltaCount: 300, deltaIntervalMs: 20, relay: { concurrency: 1 } }]);
    const { busy, c } = await queueBehindHeldSlot(relay);
    const left = Date.now();
    c.ws.terminate();
    await eventually(async () => (await heldInStore(relay)).waiting === 0, 3000, 'the queued turn leaving the queue');
    expect(Date.now() - left).toBeLessThan(3000);
    expect(await heldInStore(relay)).toEqual({ slots: 1, waiting: 0 });
    expect((await busy.readTurn()).terminal.type).toBe('response.completed');
    await eventually(async () => (await heldInStore(relay)).slots === 0);
    busy.close();
  });
});

/**
 * On a one-slot pool: `busy` holds the slot with a turn in flight (its response.created read), and
 * `c`'s turn waits in the queue behind it.
 */
async function queueBehindHeldSlot(relay: TestRelay): Promise<{ busy: TestWsClient; c: TestWsClient }> {
  const busy = await connect(relay.wsUrl, { key: KEY });
  busy.send({ type: 'response.create', model: 'm', store: false, input: userMessage('hold the slot') });
  expect((await busy.next())?.type).toBe('response.created');
  const c = await connect(relay.wsUrl, { key: KEY });
  c.send({ type: 'response.create', model: 'm', store: false, input: userMessage('queued') });
  await eventually(async () => (await heldInStore(relay)).waiting === 1);
  return { busy, c };
}

describe('WebSocket relay: failover', () => {
  it('A answers the upgrade with 429 → B serves, A cools down, one switch counted', async () => {
    const { sim, relay } = await setup([
      { name: 'a', upgradeStatus: 429, relay: { priority: 0 } },
      { name: 'b', relay: { priority: 5 } },
    ], { scheduler: { topK: 1 } });
    const switches: string[] = [];
    relay.app.bus.on((e) => e.type === 'switch' && switches.push(e.fromAccount));
    const c = await connect(relay.wsUrl, { key: KEY });
    const r = await c.turn({ model: 'm', store: false, input: userMessage('hi') });
    expect(r.terminal.type).toBe('response.completed');
    expect(sim.responseOwner(r.responseId!)!.account).toBe('b');
    expect(switches).toEqual(['a']);
    const flags = await relay.app.store.getFlags('a');
    expect(flags.cooldownReason).toBe('rate_limited');
    expect(flags.cooldownUntilMs).toBeGreaterThan(Date.now() + 3000);
    // While A cools down, new sessions go straight to B.
    const c2 = await connect(relay.wsUrl, { key: KEY });
    await c2.turn({ model: 'm', store: false, input: userMessage('hi') });
    expect(sim.account('a').upgrades).toBe(1);
  });

  it('A answering 426 is marked WS-unsupported and resolves to http', async () => {
    const { relay } = await setup([{ name: 'a', wsSupported: false, relay: { priority: 0 } }, { name: 'b', relay: { priority: 5 } }], { scheduler: { topK: 1 } });
    const c = await connect(relay.wsUrl, { key: KEY });
    const r = await c.turn({ model: 'm', store: false, input: userMessage('hi') });
    expect(r.terminal.type).toBe('response.completed');
    expect((await relay.app.store.getFlags('a')).wsUnsupportedUntilMs).toBeGreaterThan(Date.now());
    expect(await relay.app.scheduler.resolveTransport('a')).toEqual({ transport: 'http', reason: 'ws_unsupported' });
  });

  it('an error event before any output moves an unchained turn; only that turn is resent', async () => {
    const { sim, relay } = await setup([{ name: 'a', rateLimitAfterTurns: 0, relay: { priority: 0 } }, { name: 'b', relay: { priority: 5 } }], { scheduler: { topK: 1 } });
    const c = await connect(relay.wsUrl, { key: KEY });
    const r = await c.turn({ model: 'm', store: false, input: userMessage('only this') });
    expect(r.terminal.type).toBe('response.completed');
    expect(r.events.some((e) => e.type === 'error')).toBe(false);
    const bFrames = [...sim.framesBySocket({ account: 'b' }).values()].flat();
    expect(bFrames).toHaveLength(1);
    // The 429 frame's headers say retry-after 7 s: the cooldown follows them, not the 60 s default.
    const until = (await relay.app.store.getFlags('a')).cooldownUntilMs - Date.now();
    expect(until).toBeGreaterThan(4_000);
    expect(until).toBeLessThanOrEqual(7_500);
  });

  it('a chained turn whose upstream socket died gets previous_response_not_found, then the replay works', async () => {
    const { sim, relay } = await setup([{ name: 'a' }, { name: 'b' }]);
    const c = await connect(relay.wsUrl, { key: KEY, headers: { 'session-id': 'dies' } });
    const r1 = await c.turn({ model: 'm', store: false, input: userMessage('one') });
    const owner = sim.responseOwner(r1.responseId!)!;
    sim.dropSocket(owner.socketId, null);
    await eventually(() => sim.account(owner.account).openSockets === 0);
    const r2 = await c.turn({ model: 'm', store: false, previous_response_id: r1.responseId, input: userMessage('two') });
    expect(r2.terminal).toMatchObject({ type: 'error', status: 400, error: { code: 'previous_response_not_found' } });
    // The client keeps its socket; the full-history replay without previous_response_id is served.
    const r3 = await c.turn({ model: 'm', store: false, input: [...userMessage('one'), ...userMessage('two')] });
    expect(r3.terminal.type).toBe('response.completed');
  });

  it('a store:false id the session never saw is previous_response_not_found, never re-routed', async () => {
    const { sim, relay } = await setup([{ name: 'a' }]);
    const c1 = await connect(relay.wsUrl, { key: KEY });
    const r1 = await c1.turn({ model: 'm', store: false, input: userMessage('one') });
    const c2 = await connect(relay.wsUrl, { key: KEY });
    const before = sim.account('a').turns;
    const r2 = await c2.turn({ model: 'm', store: false, previous_response_id: r1.responseId, input: userMessage('two') });
    expect(r2.terminal).toMatchObject({ type: 'error', error: { code: 'previous_response_not_found' } });
    expect(sim.account('a').turns).toBe(before);
  });

  it('all accounts failing → error frame, then close 1013', async () => {
    const { relay } = await setup([{ name: 'a', upgradeStatus: 500 }, { name: 'b', upgradeStatus: 503 }], { websocket: { httpFallback: false } });
    const c = await connect(relay.wsUrl, { key: KEY });
    const r = await c.turn({ model: 'm', store: false, input: userMessage('hi') });
    expect(r.terminal).toMatchObject({ type: 'error', error: { code: 'upstream_unavailable' } });
    expect((await c.closed).code).toBe(1013);
    expect((await heldInStore(relay)).slots).toBe(0);
  });

  it('an upstream that closes mid-stream ends the turn with an error frame and frees the slot', async () => {
    const { relay } = await setup([{ name: 'a', deltaCount: 10, closeMidStream: 3 }]);
    const c = await connect(relay.wsUrl, { key: KEY });
    const r = await c.turn({ model: 'm', store: false, input: userMessage('hi') });
    expect(r.terminal).toMatchObject({ type: 'error', error: { code: 'upstream_error' } });
    await eventually(async () => (await heldInStore(relay)).slots === 0);
  });
});

describe('WebSocket relay: bad input and limits', () => {
  const cases: Array<[string, (c: TestWsClient) => void, string, number]> = [
    ['invalid JSON', (c) => c.send('{not json'), 'invalid_json', 1008],
    ['a binary frame', (c) => c.ws.send(Buffer.from([1, 2, 3]), { binary: true }), 'binary_frame_not_supported', 1008],
    ['a missing model', (c) => c.send({ type: 'response.create', input: 'hi' }), 'missing_required_parameter', 1008],
    ['a msg_ id as previous_response_id', (c) => c.send({ type: 'response.create', model: 'm', previous_response_id: 'msg_abc' }), 'invalid_previous_response_id', 1008],
    ['a frame over maxMessageBytes', (c) => c.send({ type: 'response.create', model: 'm', input: 'x'.repeat(5000) }), 'message_too_large', 1009],
  ];
  it.each(cases)('%s gets its error frame and close code; other sessions keep working', async (_n, act, code, close) => {
    const { relay } = await setup([{ name: 'a' }], { websocket: { maxMessageBytes: 4096 } });
    const good = await connect(relay.wsUrl, { key: KEY });
    const bad = await connect(relay.wsUrl, { key: KEY });
    act(bad);
    const ev = await bad.next();
    expect(ev).toMatchObject({ type: 'error', status: expect.any(Number), error: { type: 'invalid_request_error', code } });
    expect((await bad.closed).code).toBe(close);
    expect((await good.turn({ model: 'm', store: false, input: 'still fine' })).terminal.type).toBe('response.completed');
  });

  it('a second response.create while one is in flight gets response_already_in_flight, the first completes', async () => {
    const { relay } = await setup([{ name: 'a', deltaCount: 5, deltaIntervalMs: 30 }]);
    const c = await connect(relay.wsUrl, { key: KEY });
    c.send({ type: 'response.create', model: 'm', store: false, input: 'one' });
    c.send({ type: 'response.create', model: 'm', store: false, input: 'two' });
    const events: Record<string, unknown>[] = [];
    while (!events.some((e) => e.type === 'response.completed')) events.push((await c.next())!);
    expect(events.find((e) => e.type === 'error')).toMatchObject({ error: { code: 'response_already_in_flight' } });
  });

  it('no first frame within the deadline → error frame and 1008', async () => {
    const { relay } = await setup([{ name: 'a' }], { websocket: { firstMessageTimeoutMs: 200 } });
    const c = await connect(relay.wsUrl, { key: KEY });
    expect(await c.next()).toMatchObject({ type: 'error', error: { code: 'first_message_timeout' } });
    expect((await c.closed).code).toBe(1008);
  });

  it('idle sessions close with 1000', async () => {
    const { relay } = await setup([{ name: 'a' }], { websocket: { idleTimeoutMs: 300 } });
    const c = await connect(relay.wsUrl, { key: KEY });
    await c.turn({ model: 'm', store: false, input: 'hi' });
    expect((await c.closed).code).toBe(1000);
  });

  it('the idle timeout restarts after every turn, and closes the session that long after the last one', async () => {
    const { relay } = await setup([{ name: 'a' }], { websocket: { idleTimeoutMs: 700 } });
    const c = await connect(relay.wsUrl, { key: KEY });
    let lastEnd = 0;
    for (let i = 0; i < 5; i++) {
      await c.turn({ model: 'm', store: false, input: `turn ${i}` });
      lastEnd = Date.now();
      await new Promise((r) => setTimeout(r, 200));
    }
    // 5 turns 200 ms apart: past one idleTimeoutMs since the first, never idle that long (500 ms
    // of margin for a loaded machine).
    const code = (await c.closed).code;
    expect(code).toBe(1000);
    expect(Date.now() - lastEnd).toBeGreaterThanOrEqual(650);
  });

  it('a wrong or missing key gets 401 before any upgrade; WS disabled gets 426', async () => {
    const first = await setup([{ name: 'a' }]);
    const { sim } = first;
    const r0 = first.relay;
    const bad = new TestWsClient(r0.wsUrl, { key: 'sk-wrong' });
    await expect(bad.opened).rejects.toThrow(/401/);
    const none = new TestWsClient(r0.wsUrl);
    await expect(none.opened).rejects.toThrow(/401/);
    expect(sim.account('a').upgrades).toBe(0);
    const res = await fetch(`${r0.url}/v1/responses`, { method: 'POST', headers: { authorization: 'Bearer sk-wrong', 'content-type': 'application/json' }, body: '{}' });
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ error: { code: 'invalid_api_key' } });
    await r0.stop();
    relay = await startRelay({
      clients: [{ key: KEY }],
      accounts: [{ id: 'a', baseUrl: sim.baseUrlFor('a'), apiKey: 'sk-sim-a' }],
      websocket: { enabled: false },
    });
    const off = new TestWsClient(relay.wsUrl, { key: KEY });
    await expect(off.opened).rejects.toThrow(/426/);
  });

  it('per-key maxConnections refuses the next upgrade with 429 and Retry-After', async () => {
    sim = await startSimUpstream({ accounts: [{ name: 'a' }] });
    relay = await startRelay({ clients: [{ key: KEY, maxConnections: 2 }], accounts: [{ id: 'a', baseUrl: sim.baseUrlFor('a'), apiKey: 'sk-sim-a' }] });
    const c1 = await connect(relay.wsUrl, { key: KEY });
    await connect(relay.wsUrl, { key: KEY });
    const third = new TestWsClient(relay.wsUrl, { key: KEY });
    await expect(third.opened).rejects.toThrow(/429/);
    c1.close();
    await c1.closed;
    await eventually(async () => {
      const c = new TestWsClient(relay!.wsUrl, { key: KEY });
      return c.opened.then(() => true, () => false);
    });
  });

  it('a client that drops TCP mid-turn closes its upstream socket and releases its slot', async () => {
    const { sim, relay } = await setup([{ name: 'a', deltaCount: 100, deltaIntervalMs: 20 }]);
    const c = await connect(relay.wsUrl, { key: KEY });
    c.send({ type: 'response.create', model: 'm', store: false, input: 'long' });
    await c.next();
    expect((await heldInStore(relay)).slots).toBe(1);
    c.ws.terminate();
    await eventually(async () => (await heldInStore(relay)).slots === 0 && sim.account('a').openSockets === 0);
  });

  it('a client that never reads does not grow relay memory without bound: the upstream is paused', async () => {
    const { sim, relay } = await setup([{ name: 'a', deltaCount: 4000, text: 'y'.repeat(4000 * 256) }], { websocket: { maxBufferedBytes: 64 * 1024 } });
    const c = await connect(relay.wsUrl, { key: KEY });
    // Stop reading at the TCP level: the relay's writes to this client back up.
    (c.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket.pause();
    c.send({ type: 'response.create', model: 'm', store: false, input: 'flood' });
    await eventually(() => sim.account('a').backpressureWaits > 0, 10_000);
    const session = [...relay.app.ingress.sessions][0];
    const buffered = (session as unknown as { ws: { bufferedAmount: number } }).ws.bufferedAmount;
    // Bounded by the relay's limit plus what the kernel buffers hold, far below the ~1 MB answer... 
    expect(buffered).toBeLessThan(2 * 1024 * 1024);
    (c.ws as unknown as { _socket: { resume(): void } })._socket.resume();
    const r = await c.readTurn(30_000);
    expect(r.terminal.type).toBe('response.completed');
    expect(r.text.length).toBe(4000 * 256);
  }, 60_000);
});
