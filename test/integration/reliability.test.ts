// Issue 8, fault harness: each upstream or client fault ends every turn with a terminal event or
// an explicit error frame, gives every slot back, and leaves the relay serving other sessions.
import { afterEach, describe, expect, it } from 'vitest';
import {
  faultTag,
  healUpstream,
  injectUpstreamFault,
  MALFORMED_FRAMES,
  perTurnFaultScript,
  readOutcome,
  stopReading,
  vanish,
  type TurnFault,
} from '../helpers/faults.js';
import { eventually, heldInStore, slotsReleased, startPool, type Pool, type PoolAccount } from '../helpers/pool.js';
import { connect, userMessage } from '../helpers/ws-client.js';

const KEY = 'sk-sy-reliability';
// Long enough that a CPU-starved CI worker does not trip it between two events of a healthy turn.
const IDLE_MS = 1200;
let pool: Pool | null = null;

afterEach(async () => {
  await pool?.stop();
  pool = null;
});

async function setup(accounts: PoolAccount[], relay: Record<string, unknown> = {}): Promise<Pool> {
  pool = await startPool(accounts, {
    clientKey: KEY,
    relay: {
      websocket: { upstreamIdleTimeoutMs: IDLE_MS, upstreamConnectTimeoutMs: 1000, ...((relay.websocket as object) ?? {}) },
      scheduler: { cooldown: { serverErrorMs: 200 }, ...((relay.scheduler as object) ?? {}) },
      ...Object.fromEntries(Object.entries(relay).filter(([k]) => k !== 'websocket' && k !== 'scheduler')),
    },
  });
  return pool;
}

const turn = (text: string) => ({ type: 'response.create', model: 'gpt-5.5', store: false, input: userMessage(text) });

/** A fresh session's turn completes: the relay is still serving. */
async function stillServes(p: Pool, sessionId = `probe-${Math.random()}`): Promise<void> {
  const c = await connect(p.relay.wsUrl, { key: KEY, headers: { 'session-id': sessionId } });
  const r = await c.turn(turn('still there?'));
  expect(r.terminal.type).toBe('response.completed');
  c.close();
}

describe('upstream faults', () => {
  it('a TCP drop mid-stream: the events so far, then an upstream_error frame; the session and slots recover', async () => {
    const p = await setup([{ name: 'a', deltaCount: 6, deltaIntervalMs: 5 }]);
    injectUpstreamFault(p.sim, 'a', { kind: 'close_mid_stream', afterDeltas: 2 });
    const c = await connect(p.relay.wsUrl, { key: KEY });
    c.send(turn('break please'));
    const o = await readOutcome(c, 5000);
    expect(o).toMatchObject({ kind: 'error', code: 'upstream_error', status: 502 });
    expect(o.events).toBeGreaterThan(2);
    await slotsReleased(p.relay);
    healUpstream(p.sim, 'a');
    // The error frame leaves the socket open; the next turn opens a fresh upstream socket.
    expect((await c.turn(turn('again'))).terminal.type).toBe('response.completed');
    c.close();
    await slotsReleased(p.relay);
  });

  it('an upstream that closes right after the upgrade: the turn fails over before the client sees anything', async () => {
    const p = await setup([{ name: 'a' }, { name: 'b' }, { name: 'c' }]);
    injectUpstreamFault(p.sim, 'a', { kind: 'close_after_upgrade' });
    injectUpstreamFault(p.sim, 'b', { kind: 'close_after_upgrade' });
    for (let i = 0; i < 4; i++) {
      const c = await connect(p.relay.wsUrl, { key: KEY, headers: { 'session-id': `cau-${i}` } });
      const r = await c.turn(turn('hello'));
      expect(r.terminal.type).toBe('response.completed');
      expect(r.events[0].type).toBe('response.created');
      c.close();
    }
    expect(p.sim.account('c').turns).toBe(4);
    await slotsReleased(p.relay);
  });

  it('an upstream that hangs before the first token: upstream_timeout after the idle timeout, slot released, socket closed', async () => {
    const p = await setup([{ name: 'a' }]);
    injectUpstreamFault(p.sim, 'a', { kind: 'hang' });
    const c = await connect(p.relay.wsUrl, { key: KEY });
    const started = Date.now();
    c.send(turn('are you there?'));
    await eventually(async () => (await heldInStore(p.relay)).slots === 1, 2000, 'slot taken');
    const o = await readOutcome(c, IDLE_MS + 4000);
    expect(o).toMatchObject({ kind: 'error', code: 'upstream_timeout', status: 504, events: 1 });
    expect(Date.now() - started).toBeGreaterThanOrEqual(IDLE_MS - 50);
    await slotsReleased(p.relay);
    await eventually(() => p.sim.account('a').openSockets === 0 && p.sim.account('a').inFlight === 0, 4000, 'upstream socket closed');
    expect(p.relay.logs.some((l) => l.includes('"outcome":"upstream_timeout"'))).toBe(true);
    healUpstream(p.sim, 'a');
    expect((await c.turn(turn('now?'))).terminal.type).toBe('response.completed');
    c.close();
  });

  it('the idle timeout counts from the last event: a slow but steady stream is never cut', async () => {
    const p = await setup([{ name: 'a', deltaCount: 6, deltaIntervalMs: Math.round(IDLE_MS / 3) }]);
    const c = await connect(p.relay.wsUrl, { key: KEY });
    const r = await c.turn(turn('slowly'), 10_000);
    expect(r.terminal.type).toBe('response.completed');
    c.close();
  });

  it('an upstream that goes quiet mid-stream: upstream_timeout one idle timeout after its last event, not sooner, and within a check slice of it', async () => {
    // The first delta comes at once, the second not before the test ends: silence mid-stream.
    const p = await setup([{ name: 'a', deltaCount: 2, deltaIntervalMs: 30_000 }]);
    const c = await connect(p.relay.wsUrl, { key: KEY });
    c.send(turn('then nothing'));
    const seen: string[] = [];
    let lastEventAt = 0;
    for (;;) {
      const e = await c.next(IDLE_MS * 3);
      if (e === null) throw new Error('socket closed before the timeout');
      seen.push(String(e.type));
      if (e.type === 'error') {
        expect((e.error as { code?: unknown }).code).toBe('upstream_timeout');
        break;
      }
      lastEventAt = Date.now();
    }
    const silence = Date.now() - lastEventAt;
    expect(seen).toContain('response.output_text.delta');
    expect(silence).toBeGreaterThanOrEqual(IDLE_MS - 50);
    // At most one slice (1/8) late, plus a CPU-starved CI worker's slack: well under two timeouts.
    expect(silence).toBeLessThan(IDLE_MS * 1.5);
    await slotsReleased(p.relay);
    c.close();
  });

  it('the upstream idle timer of an earlier turn never cuts a later one, and still guards one after it fired idle', async () => {
    const p = await setup([{ name: 'a', deltaCount: 6, deltaIntervalMs: Math.round(IDLE_MS / 3) }]);
    const c = await connect(p.relay.wsUrl, { key: KEY });
    expect((await c.turn(turn('first'), 10_000)).terminal.type).toBe('response.completed');
    // Starts most of an idle timeout after the first turn's last event, and streams for longer.
    await new Promise((r) => setTimeout(r, Math.round(IDLE_MS * 0.7)));
    expect((await c.turn(turn('second'), 10_000)).terminal.type).toBe('response.completed');
    // Idle past the timeout (the timer fires with no turn in flight), then a turn that hangs.
    await new Promise((r) => setTimeout(r, IDLE_MS + 200));
    injectUpstreamFault(p.sim, 'a', { kind: 'hang' });
    c.send(turn('third'));
    const o = await readOutcome(c, IDLE_MS + 4000);
    expect(o).toMatchObject({ kind: 'error', code: 'upstream_timeout' });
    await slotsReleased(p.relay);
    c.close();
  });

  it('upstreams that never answer the upgrade: connect timeouts, failover, then an explicit upstream_unavailable', async () => {
    // Without HTTP fallback: with it, the bridge serves the turn over HTTP (covered in bridge tests).
    const p = await setup([{ name: 'a' }, { name: 'b' }, { name: 'c' }], { websocket: { httpFallback: false } });
    for (const n of ['a', 'b']) injectUpstreamFault(p.sim, n, { kind: 'hang_upgrade' });
    const c1 = await connect(p.relay.wsUrl, { key: KEY, headers: { 'session-id': 'hu-1' } });
    expect((await c1.turn(turn('one'))).terminal.type).toBe('response.completed');
    injectUpstreamFault(p.sim, 'c', { kind: 'hang_upgrade' });
    const c2 = await connect(p.relay.wsUrl, { key: KEY, headers: { 'session-id': 'hu-2' } });
    c2.send(turn('two'));
    const o = await readOutcome(c2, 5000);
    expect(o).toMatchObject({ kind: 'error', code: 'upstream_unavailable', status: 502 });
    expect((await c2.closed).code).toBe(1013);
    expect(p.relay.logs.some((l) => l.includes('upstream connect timed out'))).toBe(true);
    await slotsReleased(p.relay);
    for (const n of ['a', 'b', 'c']) healUpstream(p.sim, n);
  });

  it('a 429 storm with reset headers: explicit rate-limit error, cooldown until the reset, service back after it', async () => {
    // Without HTTP fallback, so the error is the WS path's own (the bridge would reschedule first).
    const p = await setup([{ name: 'a' }, { name: 'b' }], { websocket: { httpFallback: false } });
    for (const n of ['a', 'b']) injectUpstreamFault(p.sim, n, { kind: 'rate_limit_storm', retryAfterSeconds: 2 });
    const c = await connect(p.relay.wsUrl, { key: KEY });
    c.send(turn('please'));
    const t0 = Date.now();
    expect(await readOutcome(c, 5000)).toMatchObject({ kind: 'error', code: 'rate_limit_exceeded', status: 429 });
    expect((await c.closed).code).toBe(1013);
    const snap = await p.relay.app.store.snapshot([{ id: 'a', max: 4 }, { id: 'b', max: 4 }]);
    for (const s of snap) {
      expect(s.flags.cooldownReason).toBe('rate_limited');
      // Reset from `retry-after: 2`, not the 60 s default.
      expect(s.flags.cooldownUntilMs - t0).toBeGreaterThan(1000);
      expect(s.flags.cooldownUntilMs - t0).toBeLessThan(3500);
    }
    for (const n of ['a', 'b']) healUpstream(p.sim, n);
    // While cooling down: refused explicitly, nothing sent upstream.
    const turnsBefore = p.sim.account('a').turns + p.sim.account('b').turns;
    const early = await connect(p.relay.wsUrl, { key: KEY });
    early.send(turn('too soon'));
    const eo = await readOutcome(early, 5000);
    expect(eo.kind === 'error' || eo.kind === 'closed').toBe(true);
    expect(p.sim.account('a').turns + p.sim.account('b').turns).toBe(turnsBefore);
    await eventually(() => Date.now() - t0 > 2500, 4000);
    await stillServes(p);
    await slotsReleased(p.relay);
  });

  it('with HTTP fallback on, every account cooling down after a 429 still means 429 rate_limit_exceeded (WS and HTTP)', async () => {
    const p = await setup([{ name: 'a' }, { name: 'b' }], { websocket: { httpFallback: true } });
    for (const n of ['a', 'b']) injectUpstreamFault(p.sim, n, { kind: 'rate_limit_storm', retryAfterSeconds: 30 });
    const first = await connect(p.relay.wsUrl, { key: KEY });
    first.send(turn('please'));
    expect(await readOutcome(first, 5000)).toMatchObject({ kind: 'error', code: 'rate_limit_exceeded', status: 429 });
    // Both accounts now cool down for a rate limit: the bridge finds none either, and says why.
    const turnsBefore = p.sim.account('a').turns + p.sim.account('b').turns;
    const later = await connect(p.relay.wsUrl, { key: KEY });
    later.send(turn('still?'));
    expect(await readOutcome(later, 5000)).toMatchObject({ kind: 'error', code: 'rate_limit_exceeded', status: 429 });
    expect((await later.closed).code).toBe(1013);
    const res = await fetch(`http://127.0.0.1:${p.relay.port}/v1/responses`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-5.1', input: 'over http', stream: true }),
    });
    expect(res.status).toBe(429);
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(20);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('rate_limit_exceeded');
    expect(p.sim.account('a').turns + p.sim.account('b').turns).toBe(turnsBefore);
    await slotsReleased(p.relay);
  });

  it('5xx on some accounts fails over; 5xx on all ends with upstream_unavailable and close 1013', async () => {
    const p = await setup([{ name: 'a' }, { name: 'b' }, { name: 'c' }]);
    injectUpstreamFault(p.sim, 'a', { kind: 'server_error', status: 503 });
    injectUpstreamFault(p.sim, 'b', { kind: 'server_error', status: 500 });
    for (let i = 0; i < 3; i++) await stillServes(p, `fx-${i}`);
    injectUpstreamFault(p.sim, 'c', { kind: 'server_error', status: 502 });
    const c = await connect(p.relay.wsUrl, { key: KEY, headers: { 'session-id': 'all-5xx' } });
    c.send(turn('anyone?'));
    const o = await readOutcome(c, 5000);
    expect(o.kind === 'error' || o.kind === 'closed').toBe(true);
    if (o.kind === 'error') expect(['upstream_unavailable', 'no_available_account']).toContain(o.code);
    expect((await c.closed).code).toBe(1013);
    await slotsReleased(p.relay);
  });

  it('response.failed and 5xx error events mid-session: the terminal or error reaches the client, the next turn works', async () => {
    const p = await setup([{ name: 'a' }]);
    p.sim.account('a').set({ script: perTurnFaultScript(p.sim, { dropAfterMs: 0 }) });
    const c = await connect(p.relay.wsUrl, { key: KEY });
    const failed = await c.turn(turn(`x ${faultTag('failed', 't1')}`));
    expect(failed.terminal.type).toBe('response.failed');
    // Only account: the 500 error event cannot fail over, so the client gets an explicit error.
    c.send(turn(`y ${faultTag('server_error', 't2')}`));
    const o = await readOutcome(c, 5000);
    expect(o.kind === 'error' || o.kind === 'closed').toBe(true);
    await slotsReleased(p.relay);
  });
});

// A chained store:false turn is served on the socket that holds its chain, with no promise of its
// own when its slot is free at once (ResponsesSession.startPinnedNow): every way it can end.
describe('faults on a chained turn (served on the socket that holds its chain)', () => {
  /** A session with one completed turn: the next turn chains on it. */
  async function chained(p: Pool, sessionId: string): Promise<{ c: Awaited<ReturnType<typeof connect>>; chain: (text: string) => Record<string, unknown> }> {
    const c = await connect(p.relay.wsUrl, { key: KEY, headers: { 'session-id': sessionId } });
    const first = await c.turn(turn('first'));
    expect(first.terminal.type).toBe('response.completed');
    return { c, chain: (text) => ({ ...turn(text), previous_response_id: first.responseId }) };
  }
  const turnLogs = (p: Pool) => p.relay.logs.filter((l) => l.includes('"event":"turn"')).map((l) => JSON.parse(l) as Record<string, unknown>);

  it('the upstream hangs: upstream_timeout, slot released, socket closed, and the session serves a new chain', async () => {
    const p = await setup([{ name: 'a' }]);
    const { c, chain } = await chained(p, 'pin-hang');
    injectUpstreamFault(p.sim, 'a', { kind: 'hang' });
    c.send(chain('are you there?'));
    expect(await readOutcome(c, IDLE_MS + 4000)).toMatchObject({ kind: 'error', code: 'upstream_timeout', status: 504 });
    await slotsReleased(p.relay);
    await eventually(() => p.sim.account('a').openSockets === 0, 4000, 'upstream socket closed');
    expect(turnLogs(p).at(-1)).toMatchObject({ outcome: 'upstream_timeout', layer: 'previous_response_id', turn: 2 });
    healUpstream(p.sim, 'a');
    expect((await c.turn(turn('new chain'))).terminal.type).toBe('response.completed');
    c.close();
  });

  it('a rate-limit error before any output: previous_response_not_found (the chain cannot move), socket dropped, account cooled down', async () => {
    const p = await setup([{ name: 'a' }, { name: 'b' }], { scheduler: { stickySessionTtlSeconds: 1 } });
    const { c, chain } = await chained(p, 'pin-429');
    const served = p.sim.account('a').turns === 1 ? 'a' : 'b';
    injectUpstreamFault(p.sim, served, { kind: 'rate_limit_storm', retryAfterSeconds: 30 });
    c.send(chain('again'));
    expect(await readOutcome(c, 4000)).toMatchObject({ kind: 'error', code: 'previous_response_not_found', events: 1 });
    await slotsReleased(p.relay);
    await eventually(() => p.sim.account(served).openSockets === 0, 4000, 'upstream socket dropped');
    expect(turnLogs(p).at(-1)).toMatchObject({ outcome: 'upstream_failed', layer: 'previous_response_id', account: served });
    // The client replays its history unchained: the cooled-down account is passed over.
    const other = served === 'a' ? 'b' : 'a';
    expect((await c.turn(turn('replayed'))).terminal.type).toBe('response.completed');
    expect(turnLogs(p).at(-1)).toMatchObject({ outcome: 'completed', account: other });
    c.close();
  });

  it('the upstream drops mid-stream: the events so far, then upstream_error; the slot is released', async () => {
    const p = await setup([{ name: 'a', deltaCount: 6, deltaIntervalMs: 5 }]);
    const { c, chain } = await chained(p, 'pin-drop');
    injectUpstreamFault(p.sim, 'a', { kind: 'close_mid_stream', afterDeltas: 2 });
    c.send(chain('break please'));
    const o = await readOutcome(c, 5000);
    expect(o).toMatchObject({ kind: 'error', code: 'upstream_error', status: 502 });
    expect(o.events).toBeGreaterThan(2);
    await slotsReleased(p.relay);
    expect(turnLogs(p).at(-1)).toMatchObject({ outcome: 'upstream_broken', layer: 'previous_response_id' });
    c.close();
  });

  it('the client vanishes mid-stream: slot released, upstream socket closed, turn logged client_gone', async () => {
    const p = await setup([{ name: 'a', deltaCount: 40, deltaIntervalMs: 20 }]);
    const { c, chain } = await chained(p, 'pin-vanish');
    c.send(chain('long answer'));
    expect((await c.next(4000))?.type).toBe('response.created');
    vanish(c);
    await slotsReleased(p.relay);
    await eventually(() => p.sim.account('a').openSockets === 0, 4000, 'upstream socket closed');
    await eventually(() => turnLogs(p).at(-1)?.outcome === 'client_gone', 4000, 'client_gone logged');
    await stillServes(p);
  });

  it('a response.failed (server error) is forwarded and logged, and the chain goes on from its last completed response', async () => {
    const p = await setup([{ name: 'a' }]);
    const { c, chain } = await chained(p, 'pin-failed');
    injectUpstreamFault(p.sim, 'a', { kind: 'failed_responses', rate: 1 });
    const failed = await c.turn(chain('fail please'));
    expect(failed.terminal.type).toBe('response.failed');
    await eventually(() => turnLogs(p).at(-1)?.outcome === 'failed', 4000, 'failed logged');
    await slotsReleased(p.relay);
    healUpstream(p.sim, 'a');
    // A failed response is not kept on the socket: the chain goes on from the last completed one.
    expect((await c.turn(chain('after the failure'))).terminal.type).toBe('response.completed');
    c.close();
  });
});

describe('client faults', () => {
  it('a client that stops reading: the upstream is paused (bounded buffer), others are served, the idle timeout frees the slot', async () => {
    const big = 'x'.repeat(1024);
    const p = await setup([{ name: 'a', text: big.repeat(4096), deltaCount: 2048, relay: { concurrency: 8 } }], {
      websocket: { maxBufferedBytes: 64 * 1024, upstreamIdleTimeoutMs: 2000 },
    });
    const slow = await connect(p.relay.wsUrl, { key: KEY, headers: { 'session-id': 'slow' } });
    const resume = stopReading(slow);
    slow.send(turn('a lot please'));
    await eventually(() => p.sim.account('a').backpressureWaits > 0, 10_000, 'upstream paused by backpressure');
    p.sim.account('a').set({ text: null });
    await stillServes(p, 'meanwhile');
    await slotsReleased(p.relay, 2000 + 5000);
    resume();
    // Everything buffered arrives in order, then the explicit timeout error.
    const o = await readOutcome(slow, 20_000);
    expect(o).toMatchObject({ kind: 'error', code: 'upstream_timeout' });
    expect(o.events).toBeGreaterThan(3);
    slow.close();
  }, 40_000);

  for (const reset of [false, true]) {
    it(`a client that vanishes mid-turn (${reset ? 'RST' : 'FIN'}, no close frame): upstream closed, slot released`, async () => {
      const p = await setup([{ name: 'a', deltaCount: 100, deltaIntervalMs: 10 }]);
      const c = await connect(p.relay.wsUrl, { key: KEY });
      c.send(turn('long one'));
      for (let i = 0; i < 4; i++) await c.next(5000);
      vanish(c, { reset });
      await slotsReleased(p.relay);
      await eventually(() => p.sim.account('a').openSockets === 0 && p.sim.account('a').inFlight === 0, 5000, 'upstream socket closed');
      expect(p.relay.logs.some((l) => l.includes('"outcome":"client_gone"'))).toBe(true);
      p.sim.account('a').set({ deltaIntervalMs: 0 });
      await stillServes(p);
    });
  }

  it('malformed frames get an error frame and the documented close; nothing reaches the upstream', async () => {
    const p = await setup([{ name: 'a' }], { websocket: { maxMessageBytes: 64 * 1024 } });
    const cases = [...MALFORMED_FRAMES, { name: 'oversize', data: JSON.stringify({ model: 'm', input: 'x'.repeat(100_000) }), code: 'message_too_large', close: 1009 }];
    for (const m of cases) {
      const c = await connect(p.relay.wsUrl, { key: KEY });
      c.send(m.data);
      const o = await readOutcome(c, 5000);
      expect(o, m.name).toMatchObject({ kind: 'error', code: m.code, status: m.code === 'message_too_large' ? 413 : 400 });
      if (m.close !== null) expect((await c.closed).code, m.name).toBe(m.close);
      else c.close();
    }
    expect(p.sim.account('a').upgrades).toBe(0);
    await slotsReleased(p.relay);
  });

  it('garbage in the middle of a turn: error frame, close 1008, the in-flight turn and its slot are cleaned up', async () => {
    const p = await setup([{ name: 'a', deltaCount: 100, deltaIntervalMs: 10 }]);
    const c = await connect(p.relay.wsUrl, { key: KEY });
    c.send(turn('long one'));
    await c.next(5000);
    c.send('{not json');
    let o = await readOutcome(c, 5000);
    // Turn events may precede the error frame; skip to it.
    while (o.kind === 'terminal') o = await readOutcome(c, 5000);
    expect(o).toMatchObject({ kind: 'error', code: 'invalid_json' });
    expect((await c.closed).code).toBe(1008);
    await slotsReleased(p.relay);
    await eventually(() => p.sim.account('a').openSockets === 0, 5000, 'upstream socket closed');
  });
});

describe('mixed faults under load', () => {
  it('30 sessions × 4 turns with random upstream and client faults: every turn ends explicitly, no slot is held', async () => {
    const p = await setup(
      ['a', 'b', 'c'].map((name) => ({ name, deltaCount: 4, deltaIntervalMs: 15, relay: { concurrency: 6 } })),
      { scheduler: { cooldown: { serverErrorMs: 50, rateLimitMs: 100 } } },
    );
    // One script for the pool: a tagged fault fires once, on whichever account gets the turn first,
    // as a fault of that account would. (One script per account fired it again on every account
    // the turn failed over to, cooling them all down: up to half the clean turns were then
    // refused and the count below missed by chance, 57–78 over runs.)
    const script = perTurnFaultScript(p.sim, { dropAfterMs: 25 });
    for (const n of ['a', 'b', 'c']) p.sim.account(n).set({ script });
    // One turn in four is faulted: every upstream fault also cools its account down, so a denser
    // mix would leave no account to serve anything and test only refusals.
    const kinds: Array<TurnFault | 'vanish' | 'garbage' | null> = ['server_error', 'failed', 'rate_limited', 'close_mid_stream', 'vanish', 'garbage', ...Array<null>(18).fill(null)];
    let seed = 0x2545f491;
    const rand = (n: number) => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) % n;
    };
    const tally: Record<string, number> = {};
    await Promise.all(
      Array.from({ length: 30 }, async (_, s) => {
        let c = await connect(p.relay.wsUrl, { key: KEY, headers: { 'session-id': `mix-${s}` } });
        for (let t = 0; t < 4; t++) {
          const fault = kinds[rand(kinds.length)];
          const id = `${s}-${t}`;
          if (fault === 'vanish') {
            c.send(turn(`bye ${id}`));
            await c.next(5000);
            vanish(c);
            tally.vanished = (tally.vanished ?? 0) + 1;
          } else {
            c.send(fault === 'garbage' ? '\u0000garbage' : turn(fault ? `hi ${faultTag(fault, id)}` : `hi ${id}`));
            const o = await readOutcome(c, 8000);
            tally[o.kind] = (tally[o.kind] ?? 0) + 1;
            expect(o.kind, `session ${s} turn ${t} (${fault ?? 'clean'})`).not.toBe('lost');
          }
          // Think time, as real clients have: turns spread over the cooldowns the faults cause.
          await new Promise((r) => setTimeout(r, 50 + rand(200)));
          if (c.ws.readyState !== c.ws.OPEN) c = await connect(p.relay.wsUrl, { key: KEY, headers: { 'session-id': `mix-${s}` } });
        }
        c.close();
      }),
    );
    expect(tally.lost ?? 0).toBe(0);
    expect(tally.terminal).toBeGreaterThan(60);
    await slotsReleased(p.relay, 5000);
    await eventually(async () => p.relay.app.ingress.sessions.size === 0, 5000, 'sessions closed');
    // The last faults may have left accounts cooling down for a few ms: the probe is about the
    // relay still serving, not about cooldowns.
    const refs = ['a', 'b', 'c'].map((id) => ({ id, max: 6 }));
    await eventually(async () => (await p.relay.app.store.snapshot(refs)).every((s) => s.flags.cooldownUntilMs <= Date.now()), 3000, 'cooldowns over');
    await stillServes(p);
  }, 60_000);
});
